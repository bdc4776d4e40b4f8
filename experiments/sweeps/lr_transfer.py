"""Study 2, part 1 (experiments/README.md): does the best learning rate move with width?

Three widths, d_model 32, 64 and 128 (2 layers, head_dim 16, so 2, 4 and 8 heads; d_ff by the
llama rule), each at seven peak learning rates an octave apart (2^-11 to 2^-5), under the standard
parametrization (sp) and under μP with the 32-wide model as its base (mup; Yang et al. 2022,
lmjax/model/spec.py), three seeds each: 126 runs of 300 steps of 8 × 64 bytes (153,600 tokens),
cosine to 0.1·lr after 30 warmup steps. μP at d_model 32 is sp exactly, so the two
parametrizations share their narrowest curve by construction.

  python -m launch.sweep --sweep=lr_transfer --workdir=runs/lr_transfer/transfer --parallel=2
"""
from lmjax import sweeps

BASE = 'experiments/configs/lr_transfer.py'
WIDTHS = (32, 64, 128)
HEAD_DIM, LAYERS, BASE_WIDTH = 16, 2, 32
LRS = tuple(2.0 ** k for k in range(-11, -4))
SEEDS = (0, 1, 2)
STEPS, BATCH, SEQ = 300, 8, 64


def shape(width, parametrization):
  model = {'d_model': width, 'n_heads': width // HEAD_DIM, 'n_layers': LAYERS,
           'parametrization': parametrization}
  if parametrization == 'mup':
    model.update(mup_base_d_model=BASE_WIDTH, mup_base_head_dim=HEAD_DIM)
  return model


def get_sweep(widths=WIDTHS, lrs=LRS, seeds=SEEDS, steps=STEPS, name='lr_transfer'):
  runs = []
  for parametrization in ('sp', 'mup'):
    for lr in lrs:
      recipe = sweeps.Recipe(batch_size=BATCH, seq_len=SEQ, lr=lr, warmup_steps=30,
                             warmup_fraction=0.1, checkpoints=1)
      runs += sweeps.l_of_n([shape(w, parametrization) for w in widths], steps * BATCH * SEQ,
                            recipe=recipe, base_config=BASE, seeds=seeds,
                            tag=f'{parametrization}_lr{lr:.3g}')
  return sweeps.Sweep(name=name, base_config=BASE, runs=tuple(runs),
                      notes=f'{len(widths)} widths x {len(lrs)} lrs x sp/mup x '
                            f'{len(seeds)} seeds')
