"""nanoGPT-shaped benchmark config S (shared/bench): 4 layers, 4 heads, d_model 256, T 256.

fp32, batch 16, vocab 256, no dropout, no bias, tied embeddings, GELU, pre-LayerNorm, learned
positions, AdamW(lr 6e-4, betas 0.9/0.95, wd 0.1), no clipping: nanoGPT's own set-up.
"""
from lmjax.config import default_config


def get_config(n_layers=4, n_heads=4, d_model=256):
  c = default_config()
  c.model.preset = 'gpt2'
  c.model.use_bias = False
  c.model.vocab_size = 256
  c.model.n_layers, c.model.n_heads, c.model.d_model = n_layers, n_heads, d_model
  c.model.max_seq_len = 256
  c.data.dataset = 'random'
  c.data.seq_len = 256
  c.data.batch_size = 16
  c.optim.lr = 6e-4
  c.optim.b1, c.optim.b2 = 0.9, 0.95
  c.optim.weight_decay = 0.1
  c.optim.grad_clip = 0.0
  c.optim.schedule = 'constant'
  c.optim.warmup_steps = 0
  c.train.steps = 1000
  return c
