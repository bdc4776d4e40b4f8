"""A micro sweep for CPU smoke tests: 3 sizes × 2 data sizes of the tiny model, as branches.

Each size trains one constant-lr stable run (62 steps) and two wsd branches from it (39 and 78
steps, the last 20% decaying; Hägele et al. 2024): 9 runs of seconds each on a CPU. The fits it
allows are smoke tests of the pipeline, not scaling laws.
"""
from lmjax import sweeps

BASE = 'experiments/configs/tiny.py'


def get_sweep():
  recipe = sweeps.Recipe(batch_size=8, seq_len=32, lr=3e-3, warmup_steps=5,
                         warmup_fraction=0.1, checkpoints=1)
  # d_model 16, 32, 48 with 1, 1, 2 layers (head_dim 8): N ≈ 4e3, 1.6e4, 5.6e4.
  shapes = sweeps.ladder([4e3, 1.5e4, 5e4], BASE, aspect=24, head_dim=8, seq_len=recipe.seq_len)
  runs = sweeps.grid(shapes, [1e4, 2e4], recipe=recipe, base_config=BASE, cooldown=0.2)
  return sweeps.Sweep(name='micro', base_config=BASE, runs=tuple(runs),
                      notes='3 tiny sizes x 2 data sizes, cooldown branches of one stable run each')
