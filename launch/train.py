"""Train a model: python -m launch.train --config=experiments/configs/small.py --workdir=DIR.

Overrides: --config.model.preset=llama --config.train.steps=500 ... The config is resolved and
validated before anything is written; a bad value exits with status 2 and the workdir untouched.

Running the same command on an existing workdir resumes from its newest complete checkpoint
(or `--restore_step`); a finished run (summary.json) is left alone. A config that differs from
the saved one in a field that changes the model, optimizer or data is refused with the fields
named, touching nothing; changes to steps, logging, evaluation and checkpointing are allowed.

Several hosts: under `srun --ntasks=N` nothing more (each process finds its peers in SLURM's
environment); elsewhere `--distributed` (JAX detects TPU pods and other clusters) or
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`; see WORKSPACE.md.

Exit status (lmjax/core/errors.py): 0 done; 2 bad flag, config or data, or a refused resume; 3
the loss went non-finite; 75 preempted by SIGTERM/SIGINT after saving a checkpoint: run the same
command again to continue. The work is lmjax/train/run.py, called through
lmjax/eval/training_tasks.py, which adds config.eval's downstream tasks to its evaluations.
"""
from absl import flags, logging
from ml_collections import config_flags

from lmjax.config import resolve
from lmjax.core.cli import config_value, run
from lmjax.train import platform_flags
from lmjax.eval.training_tasks import run as train_run

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
    'XLA_FLAGS (GPU) or LIBTPU_INIT_ARGS (TPU) where unset (lmjax/train/platform_flags.py): '
    'auto detects the platform, gpu or tpu names it, none adds nothing.')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  logging.set_verbosity(logging.WARNING)
  distributed = dict(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                     process_id=_PROCESS_ID.value)
  train_run(resolve(config_value(_CONFIG)), _WORKDIR.value, restore_step=_RESTORE_STEP.value,
            xla_defaults=_XLA_DEFAULTS.value,
            distributed=distributed if _DISTRIBUTED.value or _COORDINATOR.value else None)


if __name__ == '__main__':
  run(main)
