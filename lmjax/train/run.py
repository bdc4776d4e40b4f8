"""`launch.train` as one call: a resolved config and a run directory in, a finished (or resumed,
or preempted) run out.

`run(config, workdir, ...)`, in order:
1. the platform's compiler flags (lmjax/train/platform_flags.py), before JAX starts a backend;
   then `jax.distributed.initialize` when asked (its arguments, or none: JAX reads SLURM's or a
   TPU pod's environment), or unasked inside a SLURM job step of more than one task (`srun
   --ntasks=2 python -m launch.train ...`: JAX reads SLURM_STEP_NODELIST, SLURM_PROCID...). A
   batch script outside srun is one process, whatever its --ntasks, and is left alone;
2. checks that read only: the workdir is a directory or nothing; a finished run is left alone; a
   resume may change only what RESUME_MAY_DIFFER allows (once, here); the mesh fits the devices
   and the attention kernel the platform; a branch's `train.init_from` has its checkpoint;
3. the run directory made and locked, the compilation cache enabled, and the loop
   (lmjax/train/loop.py).
A bad input raises an LmjaxError (launch.train: one line, exit 2) before anything is written,
or, found while the run starts (a dataset that cannot be prepared), with the directories this
call made removed again: nothing is left behind but a run that started.
"""
from __future__ import annotations

import contextlib
import os
import shutil

from lmjax.core.errors import LmjaxError, one_line
from lmjax.core.rundir import RunDir, remove_created
from lmjax.train import platform_flags


class DistributedError(LmjaxError, RuntimeError):
  """jax.distributed.initialize failed; one line."""


class CacheError(LmjaxError, ValueError):
  """A compilation cache directory that cannot be made; one line naming the field."""


def slurm_step_tasks() -> int:
  """The tasks of the SLURM job step this process is one of (1 outside a step)."""
  try:
    return int(os.environ.get('SLURM_STEP_NUM_TASKS', '1'))
  except ValueError:
    return 1


def initialize_distributed(arguments: dict | None):
  """jax.distributed.initialize(**arguments); None: only inside a SLURM step of several tasks
  (with no arguments: JAX reads SLURM's environment), else not a multi-process run."""
  if arguments is None:
    if slurm_step_tasks() <= 1:
      return
    arguments = {}
  import jax
  try:
    jax.distributed.initialize(**arguments)
  except (ValueError, RuntimeError) as e:
    raise DistributedError(f'--distributed: jax.distributed.initialize failed: '
                           f'{one_line(e)}') from None


def run(config, workdir: str, *, restore_step=None, xla_defaults='auto',
        distributed: dict | None = None, log=print, on_eval=None):
  """Trains `config` (resolved) in `workdir` (module doc); returns the summary, or None when
  the run had already finished. `on_eval(step, params, setup)`, if given, is called at each
  evaluation and returns more numbers for its metrics row (lmjax/eval/training_tasks.py)."""
  flags_line = platform_flags.describe(*platform_flags.apply(xla_defaults))
  initialize_distributed(distributed)
  run_dir = RunDir(workdir)
  run_dir.check_writable_path()
  if run_dir.is_finished():
    log(f'{workdir} holds a finished run (summary.json); nothing to do.')
    return None
  # JAX is imported only now that the platform flags are set.
  import jax

  from lmjax.model.transformer import model_config
  from lmjax.train import compile_cache, loop, sharding, start
  changed = start.check_resume(workdir, config)
  model_config(config, sharding.platform(sharding.make_mesh(config)))
  if not run_dir.has_checkpoints():
    start.check_branch_source(config)
  made, cache_made = run_dir.create(), []
  try:  # process 0 alone holds the lock: every process of a multi-host run shares the directory
    with run_dir.lock() if jax.process_index() == 0 else contextlib.nullcontext():
      notes = [flags_line]
      cache = compile_cache.directory(config.train.compile_cache, workdir)
      if cache:
        try:
          cache_made = compile_cache.enable(cache)
        except OSError as e:
          raise CacheError(f'config.train.compile_cache={config.train.compile_cache}: cannot use '
                           f'{cache} ({e.strerror or e}); set another directory or none') from None
        notes.append(f'compilation cache: {cache}')
      summary, _ = loop.train(config, workdir, restore_step=restore_step, notes=notes,
                              resume_changes=changed, on_eval=on_eval)
      return summary
  except BaseException:
    if not run_dir.is_run():
      _remove_unstarted(run_dir, made, cache_made)
    raise


def _remove_unstarted(run_dir: RunDir, made, cache_made):
  """A run that failed before it wrote anything: a compilation cache this call made (whatever
  it compiled so far), and, where this call made the run directory, its lock, empty folders and
  the directory itself with the parents it made."""
  if cache_made:
    shutil.rmtree(cache_made[0], ignore_errors=True)
  if made:
    with contextlib.suppress(OSError):
      os.remove(run_dir.lock_path)
    for sub in (run_dir.checkpoints, run_dir.tensorboard):
      with contextlib.suppress(OSError):
        os.rmdir(sub)
  remove_created(made + cache_made)
