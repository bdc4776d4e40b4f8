"""How a run starts: its pieces built for the mesh, and its train state, which is fresh, resumed
from the run's own newest checkpoint, or branched from another run's checkpoint (a cooldown
branch, Hägele et al. 2024).

A resume or a branch continues another run, so its config is first checked against that run's
(the policies `RESUME_MAY_DIFFER` and `BRANCH_MAY_DIFFER` of lmjax/config.py); a refused resume
reads the workdir and writes nothing to it.
"""
from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from lmjax.core.rundir import RunDirError
from lmjax.data import loader
from lmjax.train import sharding
from lmjax.train.checkpoint import CheckpointError, Checkpoints, abstract_like, saved_config
from lmjax.config import (BRANCH_MAY_DIFFER, RESUME_MAY_DIFFER, ConfigError, differences,
                          to_dict)
from lmjax.train.steps import build_model_and_optimizer, init_state, state_shardings


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
  """What every step of a run uses: model, optimizer, mesh, shardings and data."""
  model: Any
  tx: Any
  mesh: Any
  shardings: Any                # of the whole train state
  batch_sharding: Any
  dataset: loader.Data
  eval_set: list                # the evaluation batches, already on the devices
  new_iterator: Callable        # () -> this process's training batches from the start

  def put_batch(self, batch):
    """This process's rows of a batch -> global arrays on the mesh."""
    return sharding.put_batch(batch, self.batch_sharding)


def set_up(config) -> Setup:
  mesh = sharding.make_mesh(config)
  model, tx = build_model_and_optimizer(config, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  process = (jax.process_index(), jax.process_count())
  if process[1] > 1:  # process 0 prepares the dataset and tokenizer; the others then read them
    from jax.experimental import multihost_utils
    if process[0] == 0:
      loader.load(config)
    multihost_utils.sync_global_devices('lmjax: data prepared')
  dataset = loader.load(config)
  eval_set = [sharding.put_batch(b, batch_sharding)
              for b in loader.eval_batches(dataset, config, *process)]
  return Setup(model, tx, mesh, state_shardings(model, tx, config, mesh), batch_sharding,
               dataset, eval_set, lambda: loader.train_iterator(dataset, config, *process))


class Start(NamedTuple):
  """Where a run starts: its train state, data iterator and step, how, and what to report."""
  state: Any
  data_iterator: Any
  step: int
  how: str                      # 'fresh', 'resumed' or 'branched'
  messages: tuple


def start_state(config, setup: Setup, ckpt: Checkpoints | None, restore_step=None) -> Start:
  """Resumes from `ckpt`'s newest good checkpoint (or `restore_step`), else branches from
  `train.init_from`, else starts fresh from the seed."""
  abstract = abstract_like(
      jax.eval_shape(lambda: init_state(setup.model, setup.tx, config)), setup.shardings)
  messages = []
  restored = ckpt and ckpt.restore_latest(abstract, setup.new_iterator, restore_step,
                                          log=messages.append)
  if restored:
    messages.append(f'resumed from the checkpoint at step {restored.step}')
    return Start(restored.state, restored.data_iterator, restored.step, 'resumed',
                 tuple(messages))
  if config.train.init_from:
    state, iterator, what = _branch(config, setup, abstract)
    messages.append(f'started from {config.train.init_from} at step {config.train.init_step} '
                    f'({what})')
    return Start(state, iterator, config.train.init_step, 'branched', tuple(messages))
  state = init_state(setup.model, setup.tx, config, setup.shardings)
  return Start(state, setup.new_iterator(), 0, 'fresh', tuple(messages))


def _branch(config, setup: Setup, abstract):
  """State and data iterator of `train.init_from`'s checkpoint at `train.init_step`, and what
  it is: the branch continues that run's batches with its own schedule; an imported model's
  checkpoint (launch.convert) gives its params to a fresh run."""
  parent, step = config.train.init_from, config.train.init_step
  source = Checkpoints(parent, config.checkpoint, read_only=True)
  if step not in source.steps():
    raise CheckpointError(f'config.train.init_from={parent}: no checkpoint at step {step} '
                          f'(has {source.steps()})')
  meta = source.meta(step)
  if meta.get('imported'):
    return (*_from_imported(config, setup, source, step, meta, abstract),
            f'params imported from {meta["imported"]}, a fresh optimizer')
  state, meta = source.restore(step, abstract, None)
  diff = differences(meta['config'], to_dict(config), BRANCH_MAY_DIFFER)
  if diff.refused:
    raise CheckpointError(f'config.train.init_from={parent}: that run differs in '
                          f'{", ".join(list(diff.refused)[:6])}; a branch may change only its '
                          'schedule')
  iterator = setup.new_iterator()
  iterator.set_state(ast.literal_eval(meta['data']))
  source.close()
  return state, iterator, 'a cooldown branch'


# An imported checkpoint (launch.convert --from_hf) may be trained on anything, any way: only the
# model must be the one imported (how its arithmetic runs may change).
IMPORT_MAY_DIFFER = ('seed', 'data.', 'optim.', 'train.', 'checkpoint.', 'mesh.',
                     'model.attention_impl', 'model.attention_block', 'model.remat',
                     'model.dropout', 'model.dtype', 'model.init_std', 'model.preset')


def _from_imported(config, setup: Setup, source, step, meta, abstract):
  """A fresh run (optimizer state, data from step 0) whose params are an imported model's."""
  diff = differences(meta['config'], to_dict(config), IMPORT_MAY_DIFFER)
  if diff.refused:
    raise CheckpointError(f'config.train.init_from={config.train.init_from}: the imported model '
                          f'differs in {diff.describe()}; its model fields must stay as '
                          'imported (its lmjax_config.py has them)')
  params = source.restore_params(step, abstract.params)
  source.close()
  state = init_state(setup.model, setup.tx, config, setup.shardings)
  return state.replace(params=params), setup.new_iterator()
