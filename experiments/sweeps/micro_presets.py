"""Two recipes in one micro sweep, for the notebooks' CI run and quick demos: the `llama` and
`gpt2` presets of the tiny model, each at 2 sizes × 2 data sizes (8 independent runs of seconds
each on a CPU). The runs table tells the recipes apart by its `model.preset` column, which is
what `lmjax.analysis.compute_multiplier` compares. Smoke-test scale: no finding.
"""
from lmjax import sweeps

BASE = 'experiments/configs/tiny.py'
PRESETS = ('llama', 'gpt2')


def get_sweep():
  recipe = sweeps.Recipe(batch_size=8, seq_len=32, lr=3e-3, warmup_steps=5,
                         warmup_fraction=0.1, checkpoints=1)
  runs = []
  for preset in PRESETS:
    base = sweeps.load_config(BASE)
    base.model.preset = preset
    shapes = sweeps.ladder([4e3, 1.5e4], base, aspect=24, head_dim=8, seq_len=recipe.seq_len)
    shapes = [{**s.overrides(), 'model.preset': preset} for s in shapes]
    runs += sweeps.grid(shapes, [1e4, 2e4], recipe=recipe, base_config=BASE)
  return sweeps.Sweep(name='micro_presets', base_config=BASE, runs=tuple(runs),
                      notes='llama and gpt2 presets of the tiny model, 2 sizes x 2 data sizes')
