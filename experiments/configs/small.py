"""A few minutes on a 2-core CPU: LLaMA-style, byte-level, on the Python standard library."""
from lmjax.config import default_config


def get_config():
  c = default_config()
  c.model.preset = 'llama'
  c.model.d_model = 256
  c.model.n_layers = 4
  c.model.n_heads = 4
  c.model.max_seq_len = 256
  c.data.seq_len = 256
  c.data.batch_size = 16
  c.data.eval_batches = 16
  c.optim.lr = 2e-3
  c.optim.warmup_steps = 30
  c.train.steps = 300
  c.train.log_every = 10
  c.train.eval_every = 100
  return c
