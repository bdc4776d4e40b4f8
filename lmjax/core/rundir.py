"""A run directory: what a training run writes, and where. The one owner of its layout; every
other module asks a `RunDir` for a path.

    RUN/config.json           the resolved config, written when the run starts
    RUN/metrics.jsonl         one JSON object per logged step, each with `step`
    RUN/summary.json          written last, atomically: its presence means the run finished
    RUN/checkpoints/<step>/   orbax checkpoints (lmjax/train/checkpoint.py)
    RUN/damaged_checkpoints/  checkpoints that failed to restore, set aside, never deleted
    RUN/tb/                   TensorBoard events and profiler traces
    RUN/eval/, RUN/samples/   what launch.eval and launch.sample write
    RUN/harness/<step>.json   what launch.harness writes (downstream tasks)
    RUN/.lock                 held by the one launch.train writing the run
    RUN/tokenizer.json, RUN/lmjax_config.py   an imported Hugging Face model's (launch.convert)
    RUN/../jax_cache/         the compilation cache that runs kept together share

Rows of metrics.jsonl are appended with one `write` each (lmjax/train/metrics.py), so a crash
leaves whole lines only; `read_metrics` also skips a torn last line. The path may be on object
storage (`gs://bucket/run`, lmjax/core/storage.py): files are then read and written whole
through fsspec, nothing is locked, and nothing needs making. Jax-free: sweeps and notebooks read
runs without JAX.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os

from lmjax.core import storage
from lmjax.core.atomic import write_json
from lmjax.core.errors import LmjaxError

CONFIG, METRICS, SUMMARY = 'config.json', 'metrics.jsonl', 'summary.json'
# summary.json keys of runs written before the parameter counts were named N and N_no_emb.
LEGACY_SUMMARY_KEYS = {'params': 'N', 'params_non_embedding': 'N_no_emb'}


class RunDirError(LmjaxError, ValueError):
  """A run directory that cannot be created, read or locked; one line naming it."""


def read_json(path):
  """The JSON in `path`, or None when it is missing or not valid JSON."""
  try:
    with storage.open_file(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_metrics(path) -> list[dict]:
  """All whole rows of a metrics.jsonl (a torn final line, if any, is skipped)."""
  rows = []
  with storage.open_file(path, 'rb') as f:
    for line in f:
      if line.endswith(b'\n'):
        rows.append(json.loads(line))
  return rows


class RunDir:
  """The run directory at `path` (as given: relative paths stay relative) and the paths in it."""

  def __init__(self, path):
    self.path = os.fspath(path)
    self.remote = storage.is_remote(self.path)
    join = lambda name: storage.join(self.path, name)
    self.config_path, self.metrics_path = join(CONFIG), join(METRICS)
    self.summary_path, self.lock_path = join(SUMMARY), join('.lock')
    self.checkpoints, self.damaged_checkpoints = join('checkpoints'), join('damaged_checkpoints')
    self.tensorboard = join('tb')
    # An imported Hugging Face model's tokenizer, and the config file to train on from it.
    self.tokenizer_json, self.config_file = join('tokenizer.json'), join('lmjax_config.py')

  def __repr__(self):
    return f'RunDir({self.path!r})'

  def eval_stem(self, split_name, step_name):
    """eval/<split>-<step>: launch.eval adds .json, -reliability.png, ... to it."""
    return storage.join(self.path, 'eval', f'{split_name}-{step_name}')

  def samples_path(self, step_name, seed):
    return storage.join(self.path, 'samples', f'{step_name}-seed{seed}.jsonl')

  def checkpoint(self, step):
    return storage.join(self.checkpoints, str(step))

  def harness_path(self, step):
    return storage.join(self.path, 'harness', f'{step}.json')

  def write_harness(self, step, results: dict, path=None) -> str:
    """launch.harness's results for `step` (or to `path`), whole or not at all."""
    path = path or self.harness_path(step)
    if not storage.is_remote(path):
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._write_json(path, results)
    return path

  def task_metrics(self) -> dict:
    """{'tasks/<task>/<metric>': value} of the finished run: its last evaluation's
    (config.eval.tasks), else what launch.harness wrote for its last step; {} if neither."""
    summary = self.read_summary() or {}
    found = {k: v for k, v in summary.items()
             if k.startswith('tasks/') and isinstance(v, (int, float))}
    if found or 'steps' not in summary:
      return found
    saved = read_json(self.harness_path(summary['steps']))
    tasks = saved.get('tasks') if isinstance(saved, dict) else None
    if not isinstance(tasks, dict):
      return {}
    return {f'tasks/{task}/{metric}': float(value) for task, row in tasks.items()
            for metric, value in row.items() if isinstance(value, (int, float))}

  @property
  def shared_cache(self):
    """jax_cache/ beside the run: the compilation cache of the runs kept together there (none
    for a run on object storage: JAX's cache is a local directory)."""
    if self.remote:
      return None
    return os.path.join(os.path.dirname(os.path.abspath(self.path)), 'jax_cache')

  # State.
  def exists(self) -> bool:
    return storage.isdir(self.path)

  def is_run(self) -> bool:
    """Whether a run was ever started here (config.json, metrics.jsonl or summary.json)."""
    return any(storage.exists(p) for p in (self.config_path, self.metrics_path,
                                          self.summary_path))

  def is_finished(self) -> bool:
    return storage.exists(self.summary_path)

  def has_checkpoints(self) -> bool:
    """Whether the run has a checkpoints/ folder (launching it again resumes)."""
    return storage.isdir(self.checkpoints)

  def has_checkpoint(self, step) -> bool:
    """Whether orbax finished writing the checkpoint of `step` (its commit marker is there)."""
    ckpt = self.checkpoint(step)
    if self.remote:  # orbax marks a complete checkpoint on object storage with this file
      return storage.exists(storage.join(ckpt, 'commit_success.txt'))
    return os.path.exists(os.path.join(ckpt, 'commit_success.txt')) or (
        os.path.isdir(ckpt) and os.path.exists(os.path.join(ckpt, '_CHECKPOINT_METADATA')))

  # Files.
  def read_config(self) -> dict | None:
    """config.json, or None when the run has none; RunDirError when it is unreadable."""
    if not storage.exists(self.config_path):
      return None
    config = read_json(self.config_path)
    if not isinstance(config, dict):
      raise RunDirError(f'{self.config_path} is unreadable or not a JSON object')
    return config

  def write_config(self, config: dict):
    self._write_json(self.config_path, config)

  def _write_json(self, path, obj):
    if self.remote:
      storage.write_text(path, json.dumps(obj, indent=2, sort_keys=True))
    else:
      write_json(path, obj, indent=2, sort_keys=True)

  def read_summary(self) -> dict | None:
    """summary.json (None when missing or unreadable), its parameter counts under the names of
    today (`N`, `N_no_emb`) whatever lmjax wrote it."""
    summary = read_json(self.summary_path)
    if not isinstance(summary, dict):
      return None
    for old, new in LEGACY_SUMMARY_KEYS.items():
      if old in summary and new not in summary:
        summary[new] = summary.pop(old)
    return summary

  def write_summary(self, summary: dict):
    self._write_json(self.summary_path, summary)

  def read_metrics(self) -> list[dict]:
    """metrics.jsonl's whole rows ([] when there is none yet)."""
    return read_metrics(self.metrics_path) if storage.isfile(self.metrics_path) else []

  def truncate_metrics(self, max_step) -> int:
    """Keeps the whole rows with step <= max_step (atomically); returns how many were dropped."""
    if not storage.exists(self.metrics_path):
      return 0
    rows = read_metrics(self.metrics_path)
    keep = [r for r in rows if r['step'] <= max_step]
    if len(keep) < len(rows) or not self.remote:  # (locally, a torn last line goes too)
      storage.write_text(self.metrics_path, ''.join(json.dumps(r) + '\n' for r in keep))
    return len(rows) - len(keep)

  # Creating and locking.
  def check_writable_path(self):
    """RunDirError, naming the flag, when the path is a file or cannot be a directory, or
    object storage that cannot be written (no such bucket, no credentials)."""
    if self.remote:
      try:
        storage.check_usable(self.path)
      except storage.StorageError as e:
        raise RunDirError(str(e)) from None
      return
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise RunDirError(f'--workdir={self.path} is a file, not a directory')

  def create(self) -> list[str]:
    """Makes the directory (and missing parents); returns the directories it made, deepest
    last, for `remove_created`. RunDirError in one line when it cannot be made."""
    self.check_writable_path()
    if self.remote:
      return []  # object storage has no directories to make
    try:
      return make_dirs(self.path)
    except OSError as e:
      raise RunDirError(f'--workdir={self.path} cannot be created ({e.strerror or e})') from None

  def lock(self):
    """An exclusive lock on the run (`.lock`, held while the returned file stays open): a
    second writer stops at once instead of writing over the first. Object storage has no
    locks: one writer per run there is the user's to keep."""
    if self.remote:
      return contextlib.nullcontext()
    handle = open(self.lock_path, 'w')  # noqa: SIM115  (kept open while the run goes on)
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      handle.close()
      raise RunDirError(f'--workdir={self.path}: another launch.train is running on it') from None
    return handle


def make_dirs(path) -> list[str]:
  """os.makedirs(path), returning the directories it made, outermost first (for
  `remove_created`); on failure it leaves none of them behind."""
  made, parent = [], os.path.abspath(path)
  while not os.path.exists(parent):
    made.insert(0, parent)
    parent = os.path.dirname(parent)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    remove_created(made)
    raise
  return made


def remove_created(made):
  """Removes directories that `make_dirs` made, deepest first, where they hold nothing else: a
  run that stopped before starting leaves nothing behind."""
  for path in sorted(made, key=len, reverse=True):
    try:
      os.rmdir(path)
    except OSError:
      continue
