"""The MoE-vs-dense study in one command (experiments/README.md, study 3):

  python -m experiments.moe_vs_dense [--workdir=runs/moe_vs_dense] [--scale=full]

1. the lr sweep (experiments/sweeps/moe_vs_dense.py, lr_sweep) in WORKDIR/lr: dense, 4 and 8
   experts (top-2) at one size and budget, at multipliers of Kaplan's LR(N);
2. each model's learning rate: the multiplier with the lowest final loss;
3. the study sweep at those learning rates in WORKDIR/study;
4. the analysis (experiments/arch_recipes_report.py over the groups dense, moe4, moe8): tables,
   compute multipliers M = C_dense(L) / C_moe(L) with bootstrap intervals, figures, in
   WORKDIR/results, the table printed.

Run again, it does only what is missing (experiments/study.py).
"""
from absl import flags

from lmjax.core.cli import run

_WORKDIR = flags.DEFINE_string('workdir', 'runs/moe_vs_dense', 'The study\'s directory: lr/, '
                               'study/ and results/.')
_SCALE = flags.DEFINE_enum('scale', 'full', ['full', 'mini'], 'full: the study; mini: a few '
                           'tiny runs per model through the same code (its test).')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 1, 'Pin each run to this many CPU cores (0: no '
                             'pinning).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates of each fit (0: '
                                  'none).')


def main():
  from experiments.study import run_study
  from experiments.sweeps import moe_vs_dense as plan
  run_study(plan, plan.GROUPS, plan.scale_of(_SCALE.value), _WORKDIR.value, _PARALLEL.value,
            _CPUS.value, _BOOTSTRAP.value)


if __name__ == '__main__':
  run(main)
