"""A LLaMA-style 125M model (GPT-3 Small's width and depth; Brown et al. 2020), accelerators."""
from lmjax.config import default_config


def get_config(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, lr=6e-4):
  c = default_config()
  c.model.preset = 'llama'
  c.model.vocab_size = 32000  # LLaMA's vocabulary size
  c.model.d_model, c.model.n_layers = d_model, n_layers
  c.model.n_heads, c.model.n_kv_heads = n_heads, n_kv_heads
  c.model.max_seq_len = 2048
  c.model.dtype = 'bfloat16'
  c.data.seq_len = 2048
  c.data.batch_size = 256
  c.data.eval_batches = 20
  c.optim.lr = lr
  c.optim.warmup_steps = 1000
  c.train.steps = 20000
  c.train.log_every = 50
  c.train.eval_every = 1000
  return c
