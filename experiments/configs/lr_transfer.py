"""Base config of the lr-transfer study (experiments/README.md, study 2): the main job's
(experiments/configs/scaling_cpu.py) with a 32,768-token final evaluation for 64-byte
sequences; the sweeps set shapes, parametrization, steps, batch sizes and learning rates."""
from experiments.configs import scaling_cpu


def get_config():
  c = scaling_cpu.get_config()
  c.data.seq_len = 64
  c.data.eval_batches = 64              # 64 × 8 × 64 = 32,768 eval tokens
  c.optim.min_lr_ratio = 0.1
  return c
