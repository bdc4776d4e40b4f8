"""Run a scaling sweep: python -m launch.sweep --sweep=experiments/sweeps/NAME.py --workdir=DIR.

The sweep file's get_sweep() returns the runs (an lmjax.sweeps.Sweep); DIR holds their state
(lmjax/sweeps/sweepdir.py). The same command run again does only what is missing: finished runs
are skipped, interrupted ones resume from their checkpoints, failed ones are tried again.

  --backend=local   a pool of --parallel launch.train subprocesses on this machine
  --backend=slurm   sbatch job arrays (--dry_run prints them); run it again to submit what is
                    missing
  --status          every run's state, loss and log; touches nothing

Exit status: 0 every run done (or submitted); 1 some run failed or could not start (each is
named, with its log); 2 a bad flag, sweep file or sweep directory; 75 stopped by SIGTERM/SIGINT
after every run saved a checkpoint. The work is lmjax/sweeps/launcher.py.
"""
from absl import flags

from lmjax.core.cli import run
from lmjax.sweeps.launcher import BACKENDS, SweepOptions, run_sweep

_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file (experiments/sweeps/NAME.py) whose '
                             'get_sweep() returns an lmjax.sweeps.Sweep.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: sweep.json, runs/, logs/, '
                               'status/.')
_BACKEND = flags.DEFINE_enum('backend', 'local', BACKENDS, 'Where runs execute.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'local: runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 0, 'local: pin each run to this many CPU cores '
                             '(0: no pinning).')
_STATUS = flags.DEFINE_bool('status', False, 'Print every run\'s state and exit.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print what would run (local: the commands; '
                             'slurm: the sbatch scripts) and exit.')
_TRAIN_FLAGS = flags.DEFINE_list('train_flags', [], 'Extra launch.train flags for every run, '
                                 'e.g. --train_flags=--config.train.log_every=50 (not part of '
                                 'the plan: only fields resuming may change).')
_SLURM = {
    'partition': flags.DEFINE_string('slurm_partition', None, 'slurm: --partition.'),
    'time': flags.DEFINE_string('slurm_time', None, 'slurm: --time per run, e.g. 04:00:00.'),
    'account': flags.DEFINE_string('slurm_account', None, 'slurm: --account.'),
    'nodes': flags.DEFINE_integer('slurm_nodes', 1, 'slurm: nodes per run (>1: jax.distributed '
                                  'over srun, one process per node).'),
    'gpus_per_node': flags.DEFINE_string('slurm_gpus_per_node', None, 'slurm: --gpus-per-node.'),
    'cpus_per_task': flags.DEFINE_integer('slurm_cpus_per_task', None, 'slurm: --cpus-per-task.'),
    'max_concurrent': flags.DEFINE_integer('slurm_max_concurrent', None, 'slurm: array tasks '
                                           'running at once (%N).'),
    'setup': flags.DEFINE_list('slurm_setup', [], 'slurm: shell lines run before each task, '
                               'e.g. "source .venv/bin/activate".'),
    'extra': flags.DEFINE_list('slurm_sbatch', [], 'slurm: extra #SBATCH options, e.g. '
                               '--qos=high.'),
    'python': flags.DEFINE_string('slurm_python', None, 'slurm: the Python that runs each task '
                                  '(default: the one running launch.sweep, sys.executable).'),
}
flags.mark_flags_as_required(['sweep', 'workdir'])


def main():
  options = SweepOptions(
      backend=_BACKEND.value, parallel=_PARALLEL.value, cpus_per_run=_CPUS.value,
      status=_STATUS.value, dry_run=_DRY_RUN.value, train_flags=tuple(_TRAIN_FLAGS.value),
      slurm={name: flag.value for name, flag in _SLURM.items()})
  return run_sweep(_SWEEP.value, _WORKDIR.value, options)


if __name__ == '__main__':
  run(main)
