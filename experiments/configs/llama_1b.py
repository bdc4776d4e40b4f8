"""A LLaMA-style 1.1B model: 2048 wide, 16 layers, 32 heads, GQA with 8 kv heads, d_ff 8192
(the shape of Llama 3.2 1B, with a 32,000 vocabulary and untied embeddings), accelerators."""
from experiments.configs import llama_125m


def get_config():
  c = llama_125m.get_config(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, lr=3e-4)
  c.model.d_ff = 8192
  return c
