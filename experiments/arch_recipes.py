"""The arch-recipes study in one command (experiments/README.md):

  python -m experiments.arch_recipes [--workdir=runs/arch_recipes] [--scale=full]

1. the lr sweep (experiments/sweeps/arch_recipes.py, lr_sweep) in WORKDIR/lr;
2. each preset's learning rate: the lr multiplier with the lowest final loss;
3. the study sweep at those learning rates in WORKDIR/study;
4. the analysis (experiments/arch_recipes_report.py): tables, fits and figures in
   WORKDIR/results, the table printed.

Run again, it does only what is missing (experiments/study.py, which the MoE study shares).
"""
from experiments import study
from lmjax.core.cli import run

FLAGS = study.define_flags('runs/arch_recipes', 'preset')


def main():
  from experiments.sweeps import arch_recipes as plan
  study.main(plan, plan.ARCH, FLAGS)


if __name__ == '__main__':
  run(main)
