"""A LLaMA-7B-shaped model (Touvron et al. 2023, Table 2: d_model 4096, 32 layers, 32 heads,
d_ff 11008, vocabulary 32,000), scanned over layers; for accelerators and launch.memory.

Targets, checked with launch.memory (benchmarks/tpu_configs_fit.py runs both): a TPU v5p slice
of 8 chips, `--topology=v5p:2x2x2 --mesh=1,8,1`, and 8 GPUs of 80 GB, `--mesh=1,8,1
--device_memory=80GB`. Parameters and AdamW moments are split over every device (fsdp = all of
them); each device holds 8 sequences of 2,048 tokens per micro-batch, the layers are recomputed
in the backward pass (remat 'full') and computed in bfloat16, and 8 micro-batches make the step
of 512 sequences, 1M tokens.
"""
from experiments.configs import llama_125m


def get_config():
  c = llama_125m.get_config(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, lr=3e-4)
  c.model.d_ff = 11008
  c.model.scan_layers = True
  c.model.remat = 'full'
  c.mesh.data, c.mesh.fsdp = 1, -1
  c.data.batch_size = 512
  c.train.grad_accum = 8
  return c
