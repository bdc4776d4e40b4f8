"""The README's main job: an IsoFLOP sweep on the Python standard library, about 20 minutes on
a 2-core CPU (python -m launch.sweep --sweep=stdlib_isoflop --parallel=2 --cpus_per_run=1).

Five LLaMA-style byte-level models from 4k to 262k non-embedding parameters (sweeps.ladder,
d_model ≈ 32·n_layers, head_dim 16; below 16k the ladder's only shape is 1 layer of d_model 16),
at three compute budgets C a factor 3 apart, D = C / (exact FLOPs per token), leaving out the
points past 2,000 tokens per parameter, embeddings counted (the 4k model trains at the smallest
budget only): 13 (N, D) points, 5 on the smallest budget's IsoFLOP curve and 4 on the others,
from 1 to 1,000 tokens per parameter, chosen to put each curve's minimum inside the sizes
sampled.

Each model's budgets are cooldown branches of one constant-lr run (Hägele et al. 2024), so its
points cost about what its largest budget costs alone (sweeps.compute).
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
  runs = sweeps.isoflop(shapes, BUDGETS, recipe=recipe, base_config=BASE, cooldown=0.2,
                        max_tokens_per_param=2000)
  return sweeps.Sweep(name='stdlib_isoflop', base_config=BASE, runs=tuple(runs),
                      budgets=BUDGETS,
                      notes='5 sizes x 3 IsoFLOP budgets up to 2,000 tokens per parameter, '
                            'cooldown branches of one run per size')
