"""Base config of the CPU scaling sweep (experiments/sweeps/stdlib_isoflop.py): LLaMA-style,
byte-level, the Python standard library; the sweep sets shapes, steps and learning rates."""
from lmjax.config import default_config


def get_config():
  c = default_config()
  c.model.preset = 'llama'
  c.model.max_seq_len = 128
  c.data.seq_len = 128
  c.data.batch_size = 16
  c.data.eval_batches = 32              # 65,536 eval tokens: the final loss of every run
  c.train.log_every = 200
  c.train.eval_every = 1_000_000        # evaluate at the end only
  c.optim.min_lr_ratio = 0.0            # cooldowns end at lr 0 (Hägele et al. 2024)
  c.checkpoint.max_to_keep = 1
  return c
