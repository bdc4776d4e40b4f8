"""Train a model: python -m launch.train --config=experiments/configs/small.py --workdir=DIR.

Overrides: --config.model.preset=llama --config.train.steps=500 ... The config is resolved and
validated before anything is written; a bad value exits with status 2 and the workdir untouched.

Running the same command on an existing workdir resumes from its newest complete checkpoint
(or `--restore_step`); a finished run (summary.json) is left alone. A config that differs from
the saved one in a field that changes the model, optimizer or data is refused with the fields
named, touching nothing; changes to steps, logging, evaluation and checkpointing are allowed.

Several hosts: `--distributed` (JAX detects SLURM and TPU pod environments) or
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`; see WORKSPACE.md.

Exit status (lmjax/core/errors.py): 0 done; 2 bad flag, config or data, or a refused resume; 3 the
loss went non-finite; 75 preempted by SIGTERM/SIGINT after saving a checkpoint: run the same
command again to continue.
"""
import fcntl
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags
from lmjax.config import ConfigError, resolve
from lmjax.train import platform_flags
from lmjax.core.errors import EXIT_NONFINITE, EXIT_PREEMPTED

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: config.json, metrics.jsonl, '
                               'tb/, checkpoints/, summary.json.')
_RESTORE_STEP = flags.DEFINE_integer('restore_step', None, 'Resume from this checkpoint step '
                                     'instead of the newest.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() before anything else; with no '
    'other flag, JAX reads the cluster environment itself (SLURM, TPU pods, ...).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 '
                                   '(implies --distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')
_XLA_DEFAULTS = flags.DEFINE_enum(
    'xla_defaults', 'auto', platform_flags.CHOICES, 'Compiler flags for the platform added to '
    'XLA_FLAGS (GPU) or LIBTPU_INIT_ARGS (TPU) where unset (lmjax/train/platform_flags.py): auto '
    'detects the platform, gpu or tpu names it, none adds nothing.')
flags.mark_flags_as_required(['config', 'workdir'])


def initialize_distributed():
  """jax.distributed.initialize from flags, or from the cluster's environment."""
  if not (_DISTRIBUTED.value or _COORDINATOR.value):
    return
  import jax
  try:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  except (ValueError, RuntimeError) as e:
    fail(f'--distributed: jax.distributed.initialize failed: {str(e).splitlines()[0]}')


def _lock_workdir(workdir):
  """An exclusive lock on the run directory (process 0 only): a second launch.train on the same
  workdir stops at once instead of writing over the first."""
  import jax
  if jax.process_index() != 0:
    return None
  lock = open(os.path.join(workdir, '.lock'), 'w')  # noqa: SIM115  (kept open while training)
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    fail(f'--workdir={workdir}: another launch.train is running on it')
  return lock


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}: use --config.a.b=value for overrides')
  logging.set_verbosity(logging.WARNING)
  load_config_file(flags.FLAGS['config'].config_filename)  # a missing or broken file exits here
  try:
    config = resolve(_CONFIG.value)
  except ConfigError as e:
    fail(str(e))
  workdir = _WORKDIR.value
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    fail(f'--workdir={workdir} is a file, not a directory')
  if os.path.exists(os.path.join(workdir, 'summary.json')):
    print(f'{workdir} holds a finished run (summary.json); nothing to do.')
    return
  # Before any backend starts: XLA and libtpu read their flags once.
  flags_line = platform_flags.describe(*platform_flags.apply(_XLA_DEFAULTS.value))
  initialize_distributed()
  # jax is imported only once the config is known to be good.
  from lmjax.train import compile_cache, loop, sharding, start
  from lmjax.train.checkpoint import CheckpointError
  from lmjax.data.datasets import DataError
  from lmjax.model.transformer import model_config
  from lmjax.train.log import NonFinite
  try:
    if os.path.isdir(workdir):
      start.check_resume(workdir, config)  # refused before the workdir is locked or written
    # A mesh that does not fit the devices or model, or a kernel the devices cannot run, stops
    # here.
    model_config(config, sharding.platform(sharding.make_mesh(config)))
  except (ConfigError, sharding.MeshError) as e:
    fail(str(e))
  os.makedirs(workdir, exist_ok=True)
  lock = _lock_workdir(workdir)  # noqa: F841  (held until exit)
  notes = [flags_line]
  cache = compile_cache.directory(config.train.compile_cache, workdir)
  if cache:
    try:
      compile_cache.enable(cache)
    except OSError as e:
      fail(f'config.train.compile_cache={config.train.compile_cache}: cannot use {cache} '
           f'({e.strerror or e}); set another directory or none')
    notes.append(f'compilation cache: {cache}')
  try:
    loop.train(config, workdir, restore_step=_RESTORE_STEP.value, notes=notes)
  except (ConfigError, DataError, CheckpointError) as e:
    fail(str(e))
  except NonFinite as e:
    fail(str(e), EXIT_NONFINITE)
  except loop.Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
