"""nanoGPT-shaped benchmark config M: 6 layers, 6 heads, d_model 384 (otherwise as S)."""
from experiments.configs import nanogpt_s


def get_config():
  return nanogpt_s.get_config(n_layers=6, n_heads=6, d_model=384)
