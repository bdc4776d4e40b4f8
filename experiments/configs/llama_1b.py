"""A LLaMA-style 1.1B model: 2048 wide, 16 layers, 32 heads, GQA with 8 kv heads, d_ff 8192
(the shape of Llama 3.2 1B, with a 32,000 vocabulary and untied embeddings), accelerators.

Targets, checked with launch.memory (benchmarks/tpu_configs_fit.py runs both): a TPU v5p slice
of 8 chips, `--topology=v5p:2x2x2 --mesh=1,8,1`, and 8 GPUs of 80 GB, `--mesh=1,8,1
--device_memory=80GB`. Parameters and AdamW moments are split over every device (fsdp = all of
them); each device holds 4 sequences of 2,048 tokens per micro-batch and keeps their activations
for the backward pass (remat 'none': at this size recomputing would cost a third more compute
for memory that is not short), computing in bfloat16; 8 micro-batches make the step of 256
sequences, 0.5M tokens.
"""
from experiments.configs import llama_125m


def get_config():
  c = llama_125m.get_config(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, lr=3e-4)
  c.model.d_ff = 8192
  c.model.scan_layers = True  # one layer to compile, not 16
  c.model.remat = 'none'
  c.mesh.data, c.mesh.fsdp = 1, -1
  c.train.grad_accum = 8
  return c
