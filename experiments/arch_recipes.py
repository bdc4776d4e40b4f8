"""The arch-recipes study in one command (experiments/README.md):

  python -m experiments.arch_recipes [--workdir=runs/arch_recipes] [--scale=full]

1. the lr sweep (experiments/sweeps/arch_recipes.py, lr_sweep) in WORKDIR/lr;
2. each preset's learning rate: the lr multiplier with the lowest final loss;
3. the study sweep at those learning rates in WORKDIR/study;
4. the analysis (experiments/arch_recipes_report.py): tables, fits and figures in
   WORKDIR/results, the table printed.

Run again, it does only what is missing (experiments/study.py, which the MoE study shares).
"""
from absl import flags

from lmjax.core.cli import run

_WORKDIR = flags.DEFINE_string('workdir', 'runs/arch_recipes', 'The study\'s directory: lr/, '
                               'study/ and results/.')
_SCALE = flags.DEFINE_enum('scale', 'full', ['full', 'mini'], 'full: the study; mini: a few '
                           'tiny runs per preset through the same code (its test).')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 1, 'Pin each run to this many CPU cores (0: no '
                             'pinning).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates of each fit (0: '
                                  'none).')


def main():
  from experiments.study import run_study
  from experiments.sweeps import arch_recipes as plan
  run_study(plan, plan.ARCH, plan.scale_of(_SCALE.value), _WORKDIR.value, _PARALLEL.value,
            _CPUS.value, _BOOTSTRAP.value)


if __name__ == '__main__':
  run(main)
