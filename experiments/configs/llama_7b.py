"""A LLaMA-7B-shaped model (Touvron et al. 2023, Table 2: d_model 4096, 32 layers, 32 heads,
d_ff 11008, vocabulary 32,000), scanned over layers; for accelerators and launch.memory."""
from experiments.configs import llama_125m


def get_config():
  c = llama_125m.get_config(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, lr=3e-4)
  c.model.d_ff = 11008
  c.model.scan_layers = True
  c.model.remat = 'full'
  c.data.batch_size = 512
  c.train.grad_accum = 8
  return c
