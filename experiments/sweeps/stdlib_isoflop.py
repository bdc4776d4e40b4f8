"""The README's main job: an IsoFLOP sweep on the Python standard library, 10 to 20 minutes on
a 2-core CPU (python -m launch.sweep --sweep=stdlib_isoflop --parallel=2 --cpus_per_run=1).

Five LLaMA-style byte-level models from 16k to 630k non-embedding parameters (sweeps.ladder,
d_model ≈ 32·n_layers, head_dim 16), each trained at three compute budgets C a factor 3 apart,
D = C / (exact FLOPs per token): 15 (N, D) points, 5 per IsoFLOP curve, with tokens per
parameter from 0.25 to 2000, chosen to put each curve's minimum inside the sizes sampled. Since
the token store's per-epoch shuffle (2026-12-03) the smallest budget's minimum sits at the
smallest size, so the isoflop fit uses 2 budgets and is skipped (README).

Each model's three budgets are cooldown branches of one constant-lr run (Hägele et al. 2024):
the three points cost about 1.09 times the largest alone instead of 1.44 times (sweeps.compute).
Learning rate: Kaplan et al. 2020, Eq. D.1, LR(N) = 0.003239 - 0.0001395 log N.
"""
import math

from lmjax import sweeps

BASE = 'experiments/configs/scaling_cpu.py'
TARGETS = (4e3, 1.5e4, 4e4, 1e5, 2.5e5)      # non-embedding N
BUDGETS = (7.5e11, 2.25e12, 6.75e12)         # training FLOPs


def kaplan_lr(n):
  return 0.003239 - 0.0001395 * math.log(n)


def get_sweep():
  recipe = sweeps.Recipe(batch_size=16, seq_len=128, lr=kaplan_lr, warmup_steps=100,
                         warmup_fraction=0.1, checkpoints=4)
  shapes = sweeps.ladder(TARGETS, BASE, aspect=32, head_dim=16, seq_len=recipe.seq_len)
  runs = sweeps.isoflop(shapes, BUDGETS, recipe=recipe, base_config=BASE, cooldown=0.2)
  return sweeps.Sweep(name='stdlib_isoflop', base_config=BASE, runs=tuple(runs),
                      budgets=BUDGETS,
                      notes='5 sizes x 3 IsoFLOP budgets, cooldown branches of one run per size')
