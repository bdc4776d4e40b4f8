"""Checkpoints on orbax's CheckpointManager: train state, data iterator and run metadata together.

A checkpoint `workdir/checkpoints/<step>/` holds three items, saved and restored as one:
- `state`: params, optimizer state and step (sharded arrays; each host writes its own shards),
- `meta` (JSON): the step, the resolved config, and the grain iterator's state, taken when `save`
  is called (not later, when an asynchronous write gets to it), so the batches after a restore
  are the batches of an uninterrupted run. Every process runs the same global pipeline
  (lmjax/data/pipeline.py), so one state serves all processes.
Orbax writes into a temporary directory and renames it when every item is complete (with
asynchronous saves, after training goes on), so a killed save leaves no checkpoint a restore would
pick. A checkpoint damaged afterwards is caught when read: `meta` holds a digest of every array
of the state (lmjax/train/digests.py) and of itself, checked by every restore (the whole state,
the params alone, the metadata alone), so changed bytes are found even where the file still
parses. A damaged checkpoint is named and the caller falls back to the previous one
(`restore_latest` for training; lmjax/train/trained.py for eval, sample and convert).
Checkpoints saved before digests existed are read unchecked.

A LoRA run (lmjax/model/lora.py) saves its adapters alone: its frozen base is referenced in
`meta['base']` by path, step and a fingerprint of the base checkpoint's params digests, and read
from there on every restore (CheckpointError, naming it, when it is gone or changed).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import time
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from absl import logging
from ml_collections import ConfigDict
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from lmjax.core import storage
from lmjax.core.errors import LmjaxError, one_line
from lmjax.core.rundir import RunDir
from lmjax.model import lora
from lmjax.train import digests


class CheckpointError(LmjaxError, RuntimeError):
  """No checkpoint could be restored; the message says what was tried."""


class BaseMissing(CheckpointError):
  """A LoRA checkpoint's base model is gone or changed: its checkpoints are not damaged, and
  nothing is set aside or tried instead."""


def abstract_like(tree, shardings=None):
  """ShapeDtypeStructs of a pytree, placed by `shardings`: the target of a restore. Restoring
  onto other shardings than those saved (another mesh or device count) is how a run moves."""
  if shardings is None:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _preservation(c):
  """Keep the newest `max_to_keep` (0: all), every multiple of `keep_every`, and `keep_steps`
  (the branch points of cooldown runs, lmjax/sweeps/designs.py)."""
  if not c.max_to_keep:
    return pp.PreserveAll()
  policies = [pp.LatestN(c.max_to_keep)]
  if c.keep_every:
    policies.append(pp.EveryNSteps(c.keep_every))
  if c.get('keep_steps'):
    policies.append(pp.CustomSteps(tuple(c.keep_steps)))
  return pp.AnyPreservationPolicy(policies)


class Restored(NamedTuple):
  """A restored checkpoint: the train state, its metadata, the data iterator set to its saved
  position, and its step."""
  state: Any
  meta: dict
  data_iterator: Any
  step: int


class Checkpoints:
  """Saves and restores a run's checkpoints under `workdir/checkpoints`."""

  def __init__(self, workdir, checkpoint_config, read_only=False):
    c = checkpoint_config
    self.run = RunDir(workdir)
    self.directory = (self.run.checkpoints if self.run.remote
                      else os.path.abspath(self.run.checkpoints))
    if read_only and not storage.isdir(self.directory):
      raise CheckpointError(f'{workdir} has no checkpoints directory')
    level = logging.get_verbosity()
    if read_only:  # orbax warns that a read-only manager saves nothing, on every one made
      logging.set_verbosity(logging.ERROR)
    try:
      options = ocp.CheckpointManagerOptions(
          preservation_policy=_preservation(c), read_only=read_only,
          enable_async_checkpointing=c.async_save, create=not read_only)
      self.manager = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=('state', 'meta'))
    finally:
      logging.set_verbosity(level)
    self.base = None  # a LoRA run's frozen base (`base_reference`): saves hold adapters alone

  def steps(self):
    return sorted(self.manager.all_steps())

  def path(self, step) -> str:
    """The directory of the checkpoint of `step`, for messages."""
    return storage.join(self.directory, str(step))

  def save(self, step, state, data_iterator, meta, force=False) -> bool:
    if self.base is not None:  # the adapters alone; the base is referenced
      state = state.replace(params=lora.split(state.params)[0])
      meta = dict(meta, base=self.base)
    # repr/literal_eval, not JSON lists: grain's state holds tuples and compares them as such.
    meta = dict(meta, data=repr(data_iterator.get_state()) if data_iterator is not None else None,
                digests=digests.digests(state))
    meta = json.loads(json.dumps(meta))  # as it will read back (tuples become lists)
    meta['meta_digest'] = _meta_digest(meta)
    items = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def wait(self):
    self.manager.wait_until_finished()

  def restore(self, step, abstract_state, data_iterator):
    """(state, meta) of `step`; the data iterator is set to its saved position."""
    base = self.meta(step).get('base')
    adapters, frozen = lora.split(abstract_state.params) if base else (None, None)
    if base:
      abstract_state = abstract_state.replace(params=adapters)
    items = {'state': ocp.args.StandardRestore(abstract_state), 'meta': ocp.args.JsonRestore()}
    out = self.manager.restore(step, args=ocp.args.Composite(**items))
    _verify_meta(out['meta'])
    state = out['state']
    digests.verify(state, out['meta'].get('digests', {}))
    if base:
      state = state.replace(params=lora.join(state.params, load_base(base, frozen)))
    if data_iterator is not None:
      data_iterator.set_state(ast.literal_eval(out['meta']['data']))
    return state, out['meta']

  def restore_params(self, step, abstract_params):
    """The params alone of `step`'s train state, onto `abstract_params`' shardings (the
    optimizer state is not read); a LoRA run's base joined to its adapters."""
    base = self.meta(step).get('base')
    frozen = None
    if base:
      abstract_params, frozen = lora.split(abstract_params)
    restore_args = jax.tree_util.tree_map(
        lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype),
        abstract_params)
    args = ocp.args.PyTreeRestore(item={'params': abstract_params},
                                  restore_args={'params': restore_args}, partial_restore=True)
    out = self.manager.restore(step, args=ocp.args.Composite(state=args,
                                                             meta=ocp.args.JsonRestore()))
    _verify_meta(out['meta'])
    params = out['state']['params']
    digests.verify(params, out['meta'].get('digests', {}), prefix='params/')
    return lora.join(params, load_base(base, frozen)) if base else params

  def meta(self, step) -> dict:
    """The metadata of `step` alone (its config, data position), without the state."""
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    _verify_meta(meta)
    return meta

  def restore_latest(self, abstract_state, make_data_iterator, step=None, log=print):
    """Restores the newest checkpoint that restores cleanly (or exactly `step`).

    Returns a `Restored`, or None when there is no checkpoint at all.
    A damaged checkpoint is reported and skipped in favour of the one before it.
    """
    candidates = self.steps()
    if step is not None:
      if step not in candidates:
        raise CheckpointError(f'--restore_step={step}: no such checkpoint (have {candidates})')
      later = [s for s in candidates if s > step]
      if later:
        raise CheckpointError(f'--restore_step={step}: checkpoints after it exist ({later}) '
                              'and would be overwritten; move them out of '
                              f'{self.directory} first')
      candidates = [step]
    if not candidates:
      return None
    errors, damaged = [], []
    for s in reversed(candidates):
      data_iterator = make_data_iterator()
      try:
        state, meta = self.restore(s, abstract_state, data_iterator)
      except BaseMissing:
        raise
      except Exception as e:  # orbax, tensorstore and grain raise many types for damaged files
        errors.append(f'step {s}: {one_line(e, 200)}')
        log(f'the checkpoint {self.path(s)} is damaged ({one_line(e, 200)}); '
            + ('trying the previous one' if s != candidates[0] else 'no earlier one'))
        damaged.append(s)
        continue
      self._set_aside(damaged, log)
      return Restored(state, meta, data_iterator, s)
    raise CheckpointError('no checkpoint could be restored: ' + '; '.join(errors))

  def _set_aside(self, steps, log):
    """Moves damaged checkpoints to `<workdir>/damaged_checkpoints/` (kept, never deleted), so
    the resumed run can save those steps again."""
    if not steps or jax.process_index() != 0:
      return
    target = self.run.damaged_checkpoints
    for s in steps:
      dest = storage.join(target, f'{s}-{int(time.time())}')
      storage.move_tree(self.path(s), dest)
      log(f'moved the damaged checkpoint of step {s} to {dest}')
    self.manager.reload()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _params_fingerprint(meta) -> str:
  saved = {k: v for k, v in meta.get('digests', {}).items() if k.startswith('params/')}
  return hashlib.sha256(json.dumps(saved, sort_keys=True).encode()).hexdigest()[:16]


def base_reference(path, step, meta) -> dict:
  """What a LoRA run's checkpoints say of the base they adapt: where, which step, and a
  fingerprint of that checkpoint's params digests (`meta`: its metadata)."""
  where = path if storage.is_remote(path) else os.path.abspath(path)
  return {'path': where, 'step': int(step), 'fingerprint': _params_fingerprint(meta)}


def load_base(base: dict, abstract_params):
  """The frozen base params a LoRA checkpoint references, checked against its fingerprint."""
  what = f'its base model, step {base["step"]} of {base["path"]} (train.init_from)'
  try:
    source = Checkpoints(base['path'], READ_ONLY, read_only=True)
    try:
      changed = _params_fingerprint(source.meta(base['step'])) != base['fingerprint']
      params = None if changed else source.restore_params(base['step'], abstract_params)
    finally:
      source.close()
  except Exception as e:  # noqa: BLE001  (orbax: a missing step or directory, damaged files)
    raise BaseMissing(f'the LoRA adapters need {what}, which cannot be read '
                      f'({one_line(e, 120)})') from None
  if changed:
    raise BaseMissing(f'the LoRA adapters were trained on {what}, which has changed since '
                          '(another checkpoint is there now)')
  return params


def _meta_digest(meta) -> str:
  rest = {k: v for k, v in meta.items() if k != 'meta_digest'}
  return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:16]


def _verify_meta(meta):
  """Raises DigestMismatch when a checkpoint's metadata is not what was saved."""
  if 'meta_digest' in meta and meta['meta_digest'] != _meta_digest(meta):
    raise digests.DigestMismatch('checksum mismatch in its metadata (meta/)')


# What a read-only manager needs of config.checkpoint (it keeps and deletes nothing).
READ_ONLY = ConfigDict({'max_to_keep': 0, 'keep_every': 0, 'async_save': False})


def saved_config(workdir) -> dict | None:
  """The resolved config of the run in `workdir`: its config.json (written when it started),
  else its newest readable checkpoint's; None when no run was ever started there. RunDirError
  when config.json is unreadable."""
  run = RunDir(workdir)
  config = run.read_config()
  if config is not None or not run.has_checkpoints():
    return config
  source = Checkpoints(workdir, READ_ONLY, read_only=True)
  for step in reversed(source.steps()):
    try:
      return source.meta(step)['config']
    except Exception:  # noqa: BLE001  (a damaged checkpoint: restore_latest reports it later)
      continue
  return None


def export_params(path, params):
  """Writes params alone (no optimizer state), for evaluation and sampling."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), params)
  checkpointer.wait_until_finished()


def load_params(path, abstract_params):
  """Reads params written by `export_params` (or the `state` of a train checkpoint's params)."""
  return ocp.StandardCheckpointer().restore(os.path.abspath(path), abstract_params)
