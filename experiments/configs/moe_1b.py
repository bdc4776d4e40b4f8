"""A Mixtral-style mixture of experts for accelerators: llama_1b's attention (2048 wide, 16
layers, 32 heads, 8 kv heads) with 8 experts of width 2816 in every layer, 2 per token (Mixtral's
router): 2.6B parameters, 0.89B of them active per token.

Target, checked with launch.memory: a TPU v5p slice of 8 chips,
`--topology=v5p:2x2x2 --mesh=1,8,1`; parameters, AdamW moments and experts split over fsdp as a
dense MLP's (the default rules; ['expert', 'fsdp'] before ['embed', 'fsdp'] splits the experts
themselves). Dropless through jax.lax.ragged_dot (moe_impl auto on TPU).
"""
from experiments.configs import llama_1b


def get_config():
  c = llama_1b.get_config()
  c.model.moe_experts = 8
  c.model.moe_top_k = 2
  c.model.moe_d_ff = 2816
  return c
