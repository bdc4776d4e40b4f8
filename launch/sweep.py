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
after every run saved a checkpoint.
"""
import os
import sys

from absl import app, flags

from launch.flags_util import fail, parse_flags
from lmjax.core.exitcodes import EXIT_FAILED, EXIT_OK

_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file (experiments/sweeps/NAME.py) whose '
                             'get_sweep() returns an lmjax.sweeps.Sweep.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: sweep.json, runs/, logs/, '
                               'status/.')
_BACKEND = flags.DEFINE_enum('backend', 'local', ['local', 'slurm'], 'Where runs execute.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'local: runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 0, 'local: pin each run to this many CPU cores '
                             '(0: no pinning).')
_STATUS = flags.DEFINE_bool('status', False, 'Print every run\'s state and exit.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print what would run (local: the commands; '
                             'slurm: the sbatch scripts) and exit.')
_TRAIN_FLAGS = flags.DEFINE_list('train_flags', [], 'Extra launch.train flags for every run, '
                                 'e.g. --train_flags=--config.train.log_every=50 (not part of '
                                 'the plan: only fields resuming may change).')
_S_PARTITION = flags.DEFINE_string('slurm_partition', None, 'slurm: --partition.')
_S_TIME = flags.DEFINE_string('slurm_time', None, 'slurm: --time per run, e.g. 04:00:00.')
_S_ACCOUNT = flags.DEFINE_string('slurm_account', None, 'slurm: --account.')
_S_NODES = flags.DEFINE_integer('slurm_nodes', 1, 'slurm: nodes per run (>1: jax.distributed '
                                'over srun, one process per node).')
_S_GPUS = flags.DEFINE_string('slurm_gpus_per_node', None, 'slurm: --gpus-per-node.')
_S_CPUS = flags.DEFINE_integer('slurm_cpus_per_task', None, 'slurm: --cpus-per-task.')
_S_MAX = flags.DEFINE_integer('slurm_max_concurrent', None, 'slurm: array tasks running at '
                              'once (%N).')
_S_SETUP = flags.DEFINE_list('slurm_setup', [], 'slurm: shell lines run before each task, e.g. '
                             '"source .venv/bin/activate".')
_S_EXTRA = flags.DEFINE_list('slurm_sbatch', [], 'slurm: extra #SBATCH options, e.g. '
                             '--qos=high.')
_S_PYTHON = flags.DEFINE_string('slurm_python', 'python', 'slurm: the Python on the nodes.')
flags.mark_flags_as_required(['sweep', 'workdir'])


def _check_flags():
  if _PARALLEL.value < 1:
    fail(f'--parallel={_PARALLEL.value}: must be >= 1')
  cores = len(os.sched_getaffinity(0))
  if not 0 <= _CPUS.value <= cores:
    fail(f'--cpus_per_run={_CPUS.value}: must be in [0, {cores}] (the cores here)')
  if _CPUS.value * _PARALLEL.value > cores:
    print(f'warning: --parallel={_PARALLEL.value} runs of --cpus_per_run={_CPUS.value} share '
          f'{cores} cores', file=sys.stderr)
  if _S_NODES.value < 1:
    fail(f'--slurm_nodes={_S_NODES.value}: must be >= 1')
  for f in _TRAIN_FLAGS.value:
    if not f.startswith('--config.') or '=' not in f:
      fail(f'--train_flags={f}: each must look like --config.a.b=value')


def _fmt_loss(summary):
  return f'{summary["eval_loss"]:.4f}' if summary and summary.get('eval_loss') else '—'


def print_status(sweep_dir, jobs):
  from lmjax.sweeps.sweepdir import log_tail
  states = {}
  print(f'sweep {sweep_dir.sweep.name} in {sweep_dir.path}: {len(sweep_dir.runs)} runs')
  print(f'  {"run":<44}{"design":<9}{"state":<12}{"eval loss":>10}  detail')
  for name, run in sweep_dir.runs.items():
    state = states[name] = sweep_dir.state(name)
    detail = ''
    if state in ('failed', 'diverged'):
      s = sweep_dir.status(name)
      tail = (s.get('log_tail') or log_tail(sweep_dir.log_path(name))).strip().splitlines()
      detail = f'exit {s.get("exit_code")}: {tail[-1][:100] if tail else ""}'
    elif state == 'pending' and run.branch_of and not sweep_dir.ready(run):
      detail = f'waits for {run.branch_of} step {run.branch_step}'
    if name in jobs:
      detail = f'job {jobs[name]} {detail}'
    loss = _fmt_loss(sweep_dir.summary(name))
    print(f'  {name:<44}{run.design:<9}{state:<12}{loss:>10}  {detail}')
  counts = {s: list(states.values()).count(s) for s in dict.fromkeys(states.values())}
  print('  ' + ', '.join(f'{v} {k}' for k, v in counts.items()))
  return EXIT_OK if counts.get('done', 0) == len(states) else EXIT_FAILED


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  _check_flags()
  from lmjax import sweeps
  from lmjax.sweeps.sweepdir import SweepDir, SweepDirError
  try:
    sweep = sweeps.load_sweep(_SWEEP.value)
  except sweeps.PlanError as e:
    fail(str(e))
  read_only = _STATUS.value or _DRY_RUN.value
  try:
    sweep_dir = SweepDir.open(_WORKDIR.value, sweep, create=not read_only)
  except SweepDirError as e:
    fail(str(e))
  from launch import sweep_slurm
  if _STATUS.value:
    sys.exit(print_status(sweep_dir, sweep_slurm.job_ids(sweep_dir)))
  from launch.sweep_local import announce, run_locked
  invalid = announce(sweep, sweep_dir, read_only)
  if _BACKEND.value == 'slurm':
    opts = dict(partition=_S_PARTITION.value, time=_S_TIME.value, account=_S_ACCOUNT.value,
                nodes=_S_NODES.value, gpus_per_node=_S_GPUS.value, cpus_per_task=_S_CPUS.value,
                max_concurrent=_S_MAX.value, setup=_S_SETUP.value, extra=_S_EXTRA.value,
                python=_S_PYTHON.value)
    try:
      sys.exit(sweep_slurm.submit(sweep_dir, opts, _DRY_RUN.value, sys.stdout, skip=invalid))
    except sweep_slurm.SlurmError as e:
      fail(str(e))
  if _DRY_RUN.value:
    import shlex
    for run in sweep_dir.runs.values():
      if not sweep_dir.is_done(run.name) and run.name not in invalid:
        print(' '.join(shlex.quote(a) for a in sweep_dir.command(run, extra=_TRAIN_FLAGS.value)))
    return
  sys.exit(run_locked(sweep_dir, invalid, _PARALLEL.value, _CPUS.value, _TRAIN_FLAGS.value))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
