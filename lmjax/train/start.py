"""How a run starts: its pieces built for the mesh, and its train state, which is fresh, resumed
from the run's own newest checkpoint, or branched from another run's checkpoint (a cooldown
branch, Hägele et al. 2024).

A resume or a branch continues another run, so its config is first checked against that run's
(the policies of lmjax/config.py: RESUME_MAY_DIFFER, BRANCH_MAY_DIFFER, IMPORT_MAY_DIFFER); a
refused resume reads the workdir and writes nothing to it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from lmjax.config import (BRANCH_MAY_DIFFER, IMPORT_MAY_DIFFER, RESUME_MAY_DIFFER, ConfigError,
                          differences, to_dict)
from lmjax.core.rundir import RunDirError
from lmjax.data import loader
from lmjax.model import lora
from lmjax.train import sharding
from lmjax.train.checkpoint import (READ_ONLY, CheckpointError, Checkpoints, base_reference,
                                   saved_config)
from lmjax.train.steps import TrainStep, build_train_step


class ResumeError(ConfigError):
  """A workdir holding a run whose config differs in a field a resume may not change."""


def check_resume(workdir, config) -> dict:
  """Raises ResumeError when `workdir` holds a run whose config differs from `config` in a field
  a resume may not change; returns the allowed changes, {field: (saved, new)}."""
  try:
    saved = saved_config(workdir)
  except RunDirError as e:
    raise ResumeError(f'{e}: the run there cannot be checked against this config; use a new '
                      'workdir') from None
  if saved is None:
    return {}
  diff = differences(saved, to_dict(config), RESUME_MAY_DIFFER)
  if diff.refused:
    raise ResumeError(f'--workdir={workdir} holds a run with a different config: '
                      f'{diff.describe()}; use a new --workdir')
  return diff.allowed


class Setup(NamedTuple):
  """What every step of a run uses: the train step on its mesh, and the data."""
  train_step: TrainStep
  batch_sharding: Any
  dataset: loader.Data
  eval_set: list                # the evaluation batches, already on the devices
  new_iterator: Callable        # () -> this process's training batches from the start

  @property
  def model(self):
    return self.train_step.model

  @property
  def mesh(self):
    return self.train_step.mesh

  @property
  def shardings(self):
    """Of the whole train state."""
    return self.train_step.shardings

  def put_batch(self, batch):
    """This process's rows of a batch -> global arrays on the mesh."""
    return sharding.put_batch(batch, self.batch_sharding)


def set_up(config) -> Setup:
  """The mesh (MeshError), the train step for its devices (ConfigError for a kernel they cannot
  run), and the data (DataError): everything a run needs before its state."""
  train_step = build_train_step(config, sharding.make_mesh(config))
  batch_sharding = sharding.batch_sharding(train_step.mesh)
  process = (jax.process_index(), jax.process_count())
  if process[1] > 1:  # process 0 prepares the dataset and tokenizer; the others then read them
    from jax.experimental import multihost_utils
    if process[0] == 0:
      loader.load(config)
    multihost_utils.sync_global_devices('lmjax: data prepared')
  dataset = loader.load(config)
  if config.train.objective == 'dpo':  # the reference model's log-probabilities, once
    from lmjax.train import preference
    preference.set_reference((dataset.train, dataset.eval), train_step.model,
                             initial_params(config, train_step), config.data.batch_size // 2,
                             sharding.replicated(train_step.mesh))
  eval_set = [sharding.put_batch(b, batch_sharding)
              for b in loader.eval_batches(dataset, config, *process)]
  return Setup(train_step, batch_sharding, dataset, eval_set,
               lambda: loader.train_iterator(dataset, config, *process))


class Start(NamedTuple):
  """Where a run starts: its train state, data iterator and step, how, and what to report."""
  state: Any
  data_iterator: Any
  step: int
  how: str                      # 'fresh', 'resumed' or 'branched'
  messages: tuple
  loss_window: tuple = (0.0, 0)  # (Σ train loss, steps) of the log window the checkpoint cut
  base: dict | None = None      # a LoRA run's frozen base (checkpoint.base_reference)


def start_state(config, setup: Setup, ckpt: Checkpoints | None, restore_step=None) -> Start:
  """Resumes from `ckpt`'s newest good checkpoint (or `restore_step`), else branches from
  `train.init_from`, else starts fresh from the seed."""
  abstract = setup.train_step.abstract_state()
  messages = []
  restored = ckpt and ckpt.restore_latest(abstract, setup.new_iterator, restore_step,
                                          log=messages.append)
  if restored:
    messages.append(f'resumed from the checkpoint at step {restored.step}')
    return Start(restored.state, restored.data_iterator, restored.step, 'resumed',
                 tuple(messages), tuple(restored.meta.get('loss_window', (0.0, 0))),
                 restored.meta.get('base'))
  if config.train.init_from:
    state, iterator, step, what, base = _branch(config, setup, abstract)
    messages.append(f'started from {config.train.init_from} at its step {step} ({what})')
    return Start(state, iterator, 0 if config.train.init_params else step, 'branched',
                 tuple(messages), base=base)
  return Start(setup.train_step.init_state(), setup.new_iterator(), 0, 'fresh', tuple(messages))


def branch_source(config) -> tuple[Checkpoints, int]:
  """The checkpoints of `train.init_from`, read-only, and the step to start from
  (`train.init_step`, -1: the newest); CheckpointError naming the field when they do not hold
  it (checked before a run writes anything)."""
  parent, step = config.train.init_from, config.train.init_step
  try:
    source = Checkpoints(parent, READ_ONLY, read_only=True)
  except CheckpointError:
    raise CheckpointError(f'config.train.init_from={parent}: no run with checkpoints there') \
        from None
  if step == -1 and source.steps():
    step = max(source.steps())
  if step not in source.steps():
    raise CheckpointError(f'config.train.init_from={parent}: no checkpoint at step {step} '
                          f'(has {source.steps()})')
  return source, step


def check_branch_source(config):
  """Raises CheckpointError when `train.init_from` (if set) cannot be started from."""
  if config.train.init_from:
    branch_source(config)[0].close()


def _branch(config, setup: Setup, abstract):
  """State and data iterator of `train.init_from`'s checkpoint at `train.init_step`, the step,
  and what it is: the branch continues that run's batches with its own schedule; an imported
  model's checkpoint (launch.convert), or any run's with `train.init_params`, gives its params
  to a fresh run (fine-tuning)."""
  source, step = branch_source(config)
  parent = config.train.init_from
  meta = source.meta(step)
  if meta.get('imported') or config.train.init_params:
    what = (f'params imported from {meta["imported"]}' if meta.get('imported') else
            'its params')
    base = base_reference(parent, step, meta) if lora.has_adapters(config.model) else None
    return (*_from_imported(config, setup, source, step, meta), step,
            f'{what}, a fresh optimizer, data from step 0'
            + ('; checkpoints hold the adapters alone' if base else ''), base)
  iterator = setup.new_iterator()
  state, meta = source.restore(step, abstract, iterator)
  source.close()
  diff = differences(meta['config'], to_dict(config), BRANCH_MAY_DIFFER)
  if diff.refused:
    raise CheckpointError(f'config.train.init_from={parent}: that run differs in '
                          f'{", ".join(list(diff.refused)[:6])}; a branch may change only its '
                          'schedule')
  return state, iterator, step, 'a cooldown branch', None


def _from_imported(config, setup: Setup, source, step, meta):
  """A fresh run (optimizer state, data from step 0) whose params are an imported model's or
  another run's: the model must be that one, read by the same tokenizer."""
  try:
    state = _params_start(config, setup.train_step, source, step, meta)
  finally:
    source.close()
  return state, setup.new_iterator()


def initial_params(config, train_step):
  """The params a params-only start (train.init_params) begins from, on their shardings: DPO's
  frozen reference model."""
  source, step = branch_source(config)
  try:
    return _params_start(config, train_step, source, step, source.meta(step)).params
  finally:
    source.close()


def _params_start(config, train_step, source, step, meta):
  """A fresh state with `source`'s params at `step` (and fresh adapters), checked (module doc)."""
  diff = differences(meta['config'], to_dict(config), IMPORT_MAY_DIFFER)
  parent = config.train.init_from
  if diff.refused:
    what = 'the imported model' if meta.get('imported') else 'that run\'s model'
    raise CheckpointError(f'config.train.init_from={parent}: {what} differs in '
                          f'{diff.describe()}; its model fields must stay as they are (its '
                          'config.json or lmjax_config.py has them)')
  saved = meta['config'].get('data', {}).get('tokenizer', 'byte')
  if saved != config.data.tokenizer:
    raise CheckpointError(f'config.data.tokenizer={config.data.tokenizer}: the model of '
                          f'train.init_from={parent} reads tokenizer {saved}')
  if lora.has_adapters(meta['config'].get('model', {})):
    raise CheckpointError(f'config.train.init_from={parent}: that run has adapters; start from '
                          'its merged params (LoRA: launch.convert --merge_lora=OUT --workdir=RUN)')
  # A model's adapters start fresh (as the base model: LoRA's B = 0, a bottleneck's up = 0); the
  # rest is restored.
  _, base = lora.split(train_step.abstract_state().params)
  fresh = train_step.init_state()
  params = lora.join(lora.split(fresh.params)[0], source.restore_params(step, base))
  return fresh.replace(params=params)
