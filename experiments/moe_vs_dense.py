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
from experiments import study
from lmjax.core.cli import run

FLAGS = study.define_flags('runs/moe_vs_dense', 'model')


def main():
  from experiments.sweeps import moe_vs_dense as plan
  study.main(plan, plan.GROUPS, FLAGS)


if __name__ == '__main__':
  run(main)
