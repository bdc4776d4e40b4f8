"""GPT-2 small's shape (124M with a 50,304 vocabulary; Radford et al. 2019), for accelerators."""
from lmjax.config import default_config


def get_config():
  c = default_config()
  c.model.preset = 'gpt2'
  c.model.vocab_size = 50304  # GPT-2's 50,257 rounded up to a multiple of 64 (as nanoGPT)
  c.model.d_model, c.model.n_layers, c.model.n_heads = 768, 12, 12
  c.model.max_seq_len = 1024
  c.model.dtype = 'bfloat16'
  c.data.seq_len = 1024
  c.data.batch_size = 512
  c.data.eval_batches = 20
  c.optim.lr = 6e-4
  c.optim.warmup_steps = 700
  c.train.steps = 20000
  c.train.log_every = 50
  c.train.eval_every = 1000
  return c
