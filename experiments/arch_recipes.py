"""The arch-recipes study in one command (experiments/README.md):

  python -m experiments.arch_recipes [--workdir=runs/arch_recipes] [--scale=full]

1. the lr sweep (experiments/sweeps/arch_recipes.py, lr_sweep) in WORKDIR/lr;
2. each preset's learning rate: the lr multiplier with the lowest final loss;
3. the study sweep at those learning rates in WORKDIR/study;
4. the analysis (experiments/arch_recipes_report.py): tables, fits and figures in
   WORKDIR/results, the table printed.

Run again, it does only what is missing (finished runs are skipped, interrupted ones resume),
like launch.sweep. Exit status: 0 done; 1 a run failed (named, with its log) or the analysis
could not fit; 2 a bad flag or directory; 75 stopped by SIGTERM/SIGINT with every run saved.
A diverged lr-sweep run is a result (that lr is too high), not a failure.
"""
import os
import sys

from absl import flags

from lmjax.core.cli import fail, run
from lmjax.core.errors import EXIT_FAILED, EXIT_OK

_WORKDIR = flags.DEFINE_string('workdir', 'runs/arch_recipes', 'The study\'s directory: lr/, '
                               'study/ and results/.')
_SCALE = flags.DEFINE_enum('scale', 'full', ['full', 'mini'], 'full: the study; mini: a few '
                           'tiny runs per preset through the same code (its test).')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 1, 'Pin each run to this many CPU cores (0: no '
                             'pinning).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates of each fit (0: '
                                  'none).')


def _sweep_phase(sweep, workdir, allow_diverged=False):
  from lmjax.sweeps.local import run_local
  from lmjax.sweeps.sweepdir import SweepDir
  code = run_local(sweep, workdir, _PARALLEL.value, _CPUS.value)
  if code == EXIT_OK:
    return
  states = {n: SweepDir.open(workdir, sweep, create=False).state(n) for n in
            (r.name for r in sweep.runs)}
  if allow_diverged and all(s in ('done', 'diverged') for s in states.values()):
    return
  print(f'{sweep.name}: not every run finished (exit {code}); the same command continues it',
        file=sys.stderr)
  sys.exit(code)


def main():
  cores = len(os.sched_getaffinity(0))
  if _PARALLEL.value < 1:
    fail(f'--parallel={_PARALLEL.value}: must be >= 1')
  if not 0 <= _CPUS.value <= cores:
    fail(f'--cpus_per_run={_CPUS.value}: must be in [0, {cores}] (the cores here)')
  if _BOOTSTRAP.value < 0 or _BOOTSTRAP.value == 1:
    fail(f'--bootstrap={_BOOTSTRAP.value}: 0 (none) or at least 2')
  from experiments.sweeps import arch_recipes as plan
  from lmjax.sweeps import PlanError
  scale = plan.scale_of(_SCALE.value)
  lr_dir = os.path.join(_WORKDIR.value, 'lr')
  study_dir = os.path.join(_WORKDIR.value, 'study')
  try:
    lr_sweep = plan.lr_sweep(scale)
  except PlanError as e:
    fail(str(e))
  _sweep_phase(lr_sweep, lr_dir, allow_diverged=True)
  try:
    rows = plan.lr_results(lr_dir, lr_sweep)
    mults = plan.choose_multipliers(rows)
    study = plan.study_sweep(scale, mults)
  except PlanError as e:
    fail(str(e), EXIT_FAILED)
  print('learning rates: ' + ', '.join(
      f'{p} {m:g}×LR(N) ({next(r["lr"] for r in rows if r["preset"] == p and r["mult"] == m):.3g}'
      f' at N={scale.lr_target:g})' for p, m in mults.items()))
  _sweep_phase(study, study_dir)
  from experiments import arch_recipes_report as report
  try:
    results = report.analyse(_WORKDIR.value, scale, lr_rows=rows, bootstrap=_BOOTSTRAP.value)
  except report.ReportError as e:
    fail(str(e), EXIT_FAILED)
  print(results['markdown'])
  print(f'results: {os.path.join(_WORKDIR.value, "results")}')


if __name__ == '__main__':
  run(main)
