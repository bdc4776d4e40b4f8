"""A sweep directory: the state of every run of a sweep, shared by every backend.

    DIR/sweep.json          the plan (lmjax.sweeps.Sweep) and its fingerprint
    DIR/runs/<name>/        each run's launch.train workdir (a lmjax.core.rundir.RunDir)
    DIR/logs/<name>.log     each run's output, appended across attempts
    DIR/status/<name>.json  the last attempt: state, exit code, tail of the log, attempts
    DIR/jax_cache/          JAX's persistent compilation cache, shared by runs of one shape
    DIR/slurm/              the SLURM backend's sbatch scripts and job ids (jobs.json)
    DIR/.lock               held by the one launcher working on the directory

SweepDir is the one owner of this layout: every other module asks it for a path (and a run's
RunDir for the paths inside a run). A run is done when it has finished (launch.train writes its
summary last, atomically), so the state survives any crash of the launcher; status files only
add why a run is not done. Every file is written atomically (lmjax.core.atomic).

DIR may be on object storage (`gs://bucket/sweep`, lmjax/core/storage.py): sweep.json, the
status files and the runs live there (each run a gs:// run directory); what belongs to the
launcher's machine, the lock, the compilation cache and the logs as they are written, is kept
in a local directory named for the URL (`local`, under ~/.cache/lmjax/sweeps), each log
uploaded to DIR/logs/ when its run ends. Such a sweep runs with the local backend (SLURM tasks
write their logs and status with the shell, on a shared file system).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from lmjax.core import atomic, storage
from lmjax.core.errors import EXIT_NONFINITE, EXIT_PREEMPTED, LmjaxError
from lmjax.core.rundir import RunDir, read_json
from lmjax.sweeps.configs import PlanError, load_config, repo_path, resolve_overrides
from lmjax.sweeps.runs import flags
from lmjax.sweeps.sweepfile import Sweep


class SweepDirError(LmjaxError, ValueError):
  """A sweep directory that cannot be used for this sweep; one line."""


def write_json(path, obj):
  """The sweep directory's JSON files: atomic (or one upload), indent=1."""
  if storage.is_remote(path):
    return storage.write_text(path, json.dumps(obj, indent=1))
  return atomic.write_json(path, obj, indent=1)


def log_tail(path, lines=20):
  try:
    with open(path, 'rb') as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 8192))
      text = f.read().decode(errors='replace')
  except OSError:
    return ''
  # A live terminal line is redrawn with \r: keep its last state.
  return '\n'.join(l.split('\r')[-1] for l in text.splitlines()[-lines:])


def run_dir(sweep_path, name):
  """DIR/runs/NAME: a run's launch.train workdir (also for plan-time checks of branches)."""
  return storage.join(sweep_path, 'runs', name)


def local_dir(path) -> str:
  """Where the launcher keeps what is its machine's: DIR itself, or for a sweep on object
  storage $XDG_CACHE_HOME/lmjax/sweeps/<digest of the URL> (~/.cache by default)."""
  if not storage.is_remote(path):
    return path
  key = hashlib.sha256(path.rstrip('/').encode()).hexdigest()[:16]
  cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(cache, 'lmjax', 'sweeps', key)


class SweepDir:
  """The directory of one sweep; `open` checks that it belongs to this sweep, `read` opens an
  existing one from its sweep.json."""

  def __init__(self, path, sweep: Sweep):
    self.path = path
    self.remote = storage.is_remote(path)
    self.local = local_dir(path)
    self.sweep = sweep
    self.runs = {r.name: r for r in sweep.runs}

  @classmethod
  def open(cls, path, sweep, create=True):
    """Opens (or, with `create`, creates) `path` for `sweep`; refuses a directory of another
    sweep, or one whose runs this sweep would change. A sweep that only adds runs is accepted.
    Without `create` nothing is written (a dry run, a status query)."""
    try:
      storage.check_usable(path) if create else storage.check_scheme(path)
    except storage.StorageError as e:
      raise SweepDirError(str(e)) from None
    sweep_dir = cls(path if storage.is_remote(path) else os.path.abspath(path), sweep)
    if not sweep_dir.remote and os.path.exists(path) and not os.path.isdir(path):
      raise SweepDirError(f'--workdir={path} is a file, not a directory')
    saved_path = sweep_dir.sweep_json_path()
    saved = read_json(saved_path)
    if storage.exists(saved_path) and saved is None:
      raise SweepDirError(f'--workdir={path}: sweep.json is unreadable')
    if saved is None:
      if storage.listdir(path):
        raise SweepDirError(f'--workdir={path} is not empty and holds no sweep.json; use a new '
                            'or empty directory')
    else:
      sweep_dir._check_same(saved)
    if create:
      for sub in ('runs', 'logs', 'status', 'jax_cache'):
        if not sweep_dir.remote or sub in ('logs', 'jax_cache'):
          os.makedirs(os.path.join(sweep_dir.local, sub), exist_ok=True)
      if saved is None or saved.get('fingerprint') != sweep.fingerprint():
        write_json(saved_path, {**sweep.to_json(), 'fingerprint': sweep.fingerprint()})
    return sweep_dir

  @classmethod
  def read(cls, path):
    """The sweep directory at `path` (as given, relative or not) with the sweep its sweep.json
    holds; writes nothing (collecting, reporting). Raises SweepDirError."""
    saved_path = storage.join(path, 'sweep.json')
    if not storage.isfile(saved_path):
      raise SweepDirError(f'{path}: no sweep.json (not a sweep directory?)')
    doc = read_json(saved_path)
    if doc is None:
      raise SweepDirError(f'{saved_path}: unreadable or not valid JSON')
    try:
      return cls(path, Sweep.from_json(doc))
    except PlanError as e:
      raise SweepDirError(f'{saved_path}: {e}') from None

  def _check_same(self, saved):
    where = f'--workdir={self.path}'
    if saved.get('name') != self.sweep.name:
      raise SweepDirError(f'{where} holds sweep {saved.get("name")!r}, not '
                          f'{self.sweep.name!r}; use a new --workdir')
    if saved.get('base_config') != self.sweep.base_config:
      raise SweepDirError(f'{where} was planned on base config {saved.get("base_config")!r}, '
                          f'not {self.sweep.base_config!r}; use a new --workdir')
    old = {r['name']: r for r in saved.get('runs', [])}
    mine = {n: r.to_json() for n, r in self.runs.items()}
    changed = [n for n in old if n in mine and old[n].get('overrides') != mine[n]['overrides']]
    dropped = [n for n in old if n not in mine]
    if changed or dropped:
      what = (f'changes run(s) {", ".join(changed[:3])}' if changed
              else f'drops run(s) {", ".join(dropped[:3])}')
      raise SweepDirError(f'{where}: this sweep file {what} of the sweep planned there; use a '
                          'new --workdir (a sweep may only add runs)')

  # Paths.
  def sweep_json_path(self):
    return storage.join(self.path, 'sweep.json')

  def run_dir(self, name):
    return run_dir(self.path, name)

  def run(self, name) -> RunDir:
    """The run directory of run `name`."""
    return RunDir(self.run_dir(name))

  def log_path(self, name):
    """The log a run's output is appended to (on this machine: `local`)."""
    return os.path.join(self.local, 'logs', f'{name}.log')

  def upload_log(self, name):
    """For a sweep on object storage: the run's log copied to DIR/logs/ (whole)."""
    if self.remote and os.path.exists(self.log_path(name)):
      with open(self.log_path(name), 'rb') as f:
        storage.write_bytes(storage.join(self.path, 'logs', f'{name}.log'), f.read())

  def read_log(self, name) -> str:
    """The end of a run's log: on this machine, else (a sweep on object storage, read from
    elsewhere) the copy uploaded to DIR/logs/; '' when there is none."""
    if os.path.exists(self.log_path(name)) or not self.remote:
      return log_tail(self.log_path(name), lines=200)
    try:
      with storage.open_file(storage.join(self.path, 'logs', f'{name}.log'), 'rb') as f:
        return f.read()[-8192:].decode(errors='replace')
    except OSError:
      return ''

  def status_path(self, name):
    return storage.join(self.path, 'status', f'{name}.json')

  def jax_cache(self):
    return os.path.join(self.local, 'jax_cache')

  def lock_path(self):
    return os.path.join(self.local, '.lock')

  def slurm_dir(self):
    return os.path.join(self.path, 'slurm')

  def sbatch_path(self, phase):
    """slurm/<phase>.sbatch: the script of one job array ('runs' or 'branches')."""
    return os.path.join(self.slurm_dir(), f'{phase}.sbatch')

  def slurm_output(self):
    """sbatch --output for the tasks of an array (%A the array's job id, %a the task)."""
    return os.path.join(self.path, 'logs', 'slurm-%A_%a.out')

  def jobs_path(self):
    """slurm/jobs.json: {run name: SLURM array task id} of the runs submitted."""
    return os.path.join(self.slurm_dir(), 'jobs.json')

  def run_names_on_disk(self):
    """The names under runs/ (planned or not)."""
    return set(storage.listdir(storage.join(self.path, 'runs')))

  # State.
  def status(self, name):
    return read_json(self.status_path(name)) or {}

  def recorded_status(self, name):
    """The status file's object, or None when there is none (no launcher started the run)."""
    status = read_json(self.status_path(name))
    return status if isinstance(status, dict) else None

  def set_status(self, name, **fields):
    write_json(self.status_path(name), {**self.status(name), **fields, 'time': time.time()})

  def summary(self, name):
    return self.run(name).read_summary()

  def is_done(self, name):
    return self.run(name).is_finished()

  def ready(self, run):
    """Whether `run` can start: a cooldown branch needs its stable run's checkpoint."""
    return run.branch_of is None or self.run(run.branch_of).has_checkpoint(run.branch_step)

  def state(self, name, queued=None):
    """done | failed | diverged | interrupted | running | pending (never started). A SLURM
    task is running while squeue lists it (`queued`, when given); a local run while its
    process lives."""
    if self.is_done(name):
      return 'done'
    s = self.status(name)
    if s.get('state') == 'running':
      if s.get('backend') == 'slurm' and queued is not None:
        return 'running' if s.get('job') in queued else 'interrupted'
      return 'running' if _alive(s.get('pid'), s.get('host'), name) else 'interrupted'
    if s.get('exit_code') == EXIT_NONFINITE:
      return 'diverged'
    if s.get('exit_code') == EXIT_PREEMPTED:
      return 'interrupted'
    return s.get('state') or 'pending'

  def overrides(self, run) -> dict:
    """The run's overrides of the base config; a branch starts from its stable run's
    directory here."""
    parent = self.run_dir(run.branch_of) if run.branch_of else None
    return {**run.overrides, **run.branch_overrides(parent)}

  def command(self, run, python=None, extra=()):
    """The launch.train command line of `run`."""
    return [python or sys.executable, '-m', 'launch.train',
            f'--config={repo_path(self.sweep.base_config)}', *flags(self.overrides(run)),
            *extra, f'--workdir={self.run_dir(run.name)}']

  def invalid_runs(self) -> dict:
    """{run name: one-line reason} for the runs whose config does not resolve on the base, each
    checked as it will run, so that one bad run does not stop the others."""
    base = load_config(self.sweep.base_config)
    bad = {}
    for run in self.sweep.runs:
      try:
        resolve_overrides(base, self.overrides(run), f'run {run.name}: ')
      except PlanError as e:
        bad[run.name] = str(e)
    return bad

  def spent(self, run):
    """FLOPs this run costs in the sweep (a branch only from its branch step)."""
    start = run.branch_step or 0
    steps = run.overrides.get('train.steps')
    return run.C * (1 - start / steps) if steps else run.C


def _alive(pid, host, name):
  """Whether the launch.train process of a running status still lives (on another host:
  assumed so). On Linux /proc also rules out a zombie and a pid reused by another program."""
  if host and host != os.uname().nodename:
    return True
  if not pid:
    return False
  try:
    with open(f'/proc/{pid}/stat') as f:
      state = f.read().rsplit(')', 1)[1].split()[0]
    with open(f'/proc/{pid}/cmdline', 'rb') as f:
      cmdline = f.read().decode(errors='replace')
    return state != 'Z' and name in cmdline
  except FileNotFoundError:
    return False
  except OSError:
    pass  # no /proc: ask the kernel
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True
