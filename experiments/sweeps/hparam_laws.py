"""Study 2, part 2 (experiments/README.md): the best learning rate and batch size against
compute, η_opt(C) and B_opt(C) (DeepSeek-AI 2024, Sec. 3.1), under μP.

One model, d_model 64 under μP with the 32-wide base of part 1 (2 layers, head_dim 16), at three
budgets C a factor 2.5 apart (2.4e11 to 1.5e12); at each, seven peak learning rates half an
octave apart (2^-9.5 to 2^-6.5) and five batch sizes (1 to 16 sequences of 64 bytes). The batch
size is in the IsoFLOP accounting: every run trains D = C / FLOPs per token, in D / (B · 64)
steps. 105 runs, one seed. (Earlier grids at 4e10 to 4.8e11 found the best batch size at the
grid's lower edge, one sequence, at the smaller budgets: smaller batches, more steps, win there.)

  python -m launch.sweep --sweep=hparam_laws --workdir=runs/lr_transfer/laws --parallel=2
  python -m launch.fit --sweep_dir=runs/lr_transfer/laws --law=hparams
"""
from experiments.sweeps import lr_transfer
from lmjax import sweeps

BUDGETS = (2.4e11, 6e11, 1.5e12)
LRS = tuple(2.0 ** (k / 2) for k in range(-19, -12))
BATCH_SIZES = (1, 2, 4, 8, 16)
WIDTH = 64


def get_sweep(budgets=BUDGETS, lrs=LRS, batch_sizes=BATCH_SIZES, name='hparam_laws'):
  recipe = sweeps.Recipe(batch_size=8, seq_len=lr_transfer.SEQ, lr=lrs[0], warmup_steps=30,
                         warmup_fraction=0.1, checkpoints=1)
  runs = sweeps.hparams(lr_transfer.shape(WIDTH, 'mup'), budgets, lrs, batch_sizes,
                        recipe=recipe, base_config=lr_transfer.BASE)
  return sweeps.Sweep(name=name, base_config=lr_transfer.BASE, runs=tuple(runs),
                      budgets=tuple(budgets),
                      notes=f'{len(budgets)} budgets x {len(lrs)} lrs x '
                            f'{len(batch_sizes)} batch sizes, mup')
