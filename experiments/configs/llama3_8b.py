"""A Llama-3-8B-shaped model (Grattafiori et al. 2024, Table 3: d_model 4096, 32 layers, 32
heads, GQA with 8 kv heads, d_ff 14336, vocabulary 128,256, RoPE base 500,000; untied), trained
at its 8,192-token context.

Targets, checked with launch.memory (benchmarks/tpu_configs_fit.py runs both): a TPU v5p slice
of 8 chips, `--topology=v5p:2x2x2 --mesh=1,8,1`, and 8 GPUs of 80 GB, `--mesh=1,8,1
--device_memory=80GB`. Parameters and AdamW moments are split over every device (fsdp = all of
them); each device holds 2 sequences of 8,192 tokens per micro-batch, the layers are recomputed
in the backward pass (remat 'full') and computed in bfloat16, and 16 micro-batches make the step
of 256 sequences, 2M tokens.
"""
from experiments.configs import llama_125m


def get_config():
  c = llama_125m.get_config(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, lr=3e-4)
  c.model.d_ff = 14336
  c.model.vocab_size = 128256
  c.model.rope_theta = 500000.0
  c.model.max_seq_len = c.data.seq_len = 8192
  c.model.scan_layers = True
  c.model.remat = 'full'
  c.model.dtype = 'bfloat16'
  c.mesh.data, c.mesh.fsdp = 1, -1
  c.data.batch_size = 256
  c.train.grad_accum = 16
  return c
