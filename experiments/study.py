"""What the studies' commands share (experiments/arch_recipes.py, experiments/moe_vs_dense.py):
the lr sweep, each group's learning rate from it, the study sweep at those rates, the analysis
(experiments/arch_recipes_report.py). Run again, a study does only what is missing (finished runs
are skipped, interrupted ones resume), like launch.sweep. Exit status: 0 done; 1 a run failed
(named, with its log) or the analysis could not fit; 2 a bad flag or directory; 75 stopped by
SIGTERM/SIGINT with every run saved. A diverged lr-sweep run is a result (that lr is too high),
not a failure."""
import os
import sys
from typing import NamedTuple

from absl import flags

from lmjax.core.cli import fail
from lmjax.core.errors import EXIT_FAILED, EXIT_OK


class Flags(NamedTuple):
  workdir: flags.FlagHolder
  scale: flags.FlagHolder
  parallel: flags.FlagHolder
  cpus_per_run: flags.FlagHolder
  bootstrap: flags.FlagHolder


def define_flags(workdir: str, groups: str) -> Flags:
  """A study command's flags (call once, at its module's import); `groups` names what it
  compares, for the help text."""
  return Flags(
      flags.DEFINE_string('workdir', workdir, 'The study\'s directory: lr/, study/ and '
                          'results/.'),
      flags.DEFINE_enum('scale', 'full', ['full', 'mini'], 'full: the study; mini: a few tiny '
                        f'runs per {groups} through the same code (its test).'),
      flags.DEFINE_integer('parallel', 2, 'Runs at once.'),
      flags.DEFINE_integer('cpus_per_run', 1, 'Pin each run to this many CPU cores (0: no '
                           'pinning).'),
      flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates of each fit (0: none).'))


def main(plan, groups, f: Flags):
  """A study command's main: `run_study` with its flags' values."""
  run_study(plan, groups, plan.scale_of(f.scale.value), f.workdir.value, f.parallel.value,
            f.cpus_per_run.value, f.bootstrap.value)


def check_flags(parallel, cpus_per_run, bootstrap):
  cores = len(os.sched_getaffinity(0))
  if parallel < 1:
    fail(f'--parallel={parallel}: must be >= 1')
  if not 0 <= cpus_per_run <= cores:
    fail(f'--cpus_per_run={cpus_per_run}: must be in [0, {cores}] (the cores here)')
  if bootstrap < 0 or bootstrap == 1:
    fail(f'--bootstrap={bootstrap}: 0 (none) or at least 2')


def _sweep_phase(sweep, workdir, parallel, cpus_per_run, allow_diverged=False):
  from lmjax.sweeps.local import run_local
  from lmjax.sweeps.sweepdir import SweepDir
  code = run_local(sweep, workdir, parallel, cpus_per_run)
  if code == EXIT_OK:
    return
  states = {n: SweepDir.open(workdir, sweep, create=False).state(n) for n in
            (r.name for r in sweep.runs)}
  if allow_diverged and all(s in ('done', 'diverged') for s in states.values()):
    return
  print(f'{sweep.name}: not every run finished (exit {code}); the same command continues it',
        file=sys.stderr)
  sys.exit(code)


def run_study(plan, groups, scale, workdir, parallel, cpus_per_run, bootstrap):
  """The lr sweep in WORKDIR/lr, the study in WORKDIR/study at each group's chosen lr
  multiplier, the analysis in WORKDIR/results (its table printed). `plan` is the study's sweep
  module (lr_sweep(scale), study_sweep(scale, mults)); `groups` its Groups."""
  from experiments.sweeps.arch_recipes import choose_multipliers, lr_results
  from lmjax.sweeps import PlanError
  check_flags(parallel, cpus_per_run, bootstrap)
  lr_dir, study_dir = os.path.join(workdir, 'lr'), os.path.join(workdir, 'study')
  try:
    lr_sweep = plan.lr_sweep(scale)
  except PlanError as e:
    fail(str(e))
  _sweep_phase(lr_sweep, lr_dir, parallel, cpus_per_run, allow_diverged=True)
  try:
    rows = lr_results(lr_dir, lr_sweep, groups)
    mults = choose_multipliers(rows, groups)
    study = plan.study_sweep(scale, mults)
  except PlanError as e:
    fail(str(e), EXIT_FAILED)
  print('learning rates: ' + ', '.join(
      f'{p} {m:g}×LR(N) ({next(r["lr"] for r in rows if r["preset"] == p and r["mult"] == m):.3g}'
      f' at N={scale.lr_target:g})' for p, m in mults.items()))
  _sweep_phase(study, study_dir, parallel, cpus_per_run)
  from experiments import arch_recipes_report as report
  try:
    results = report.analyse(workdir, scale, lr_rows=rows, bootstrap=bootstrap, groups=groups)
  except report.ReportError as e:
    fail(str(e), EXIT_FAILED)
  print(results['markdown'])
  print(f'results: {os.path.join(workdir, "results")}')
