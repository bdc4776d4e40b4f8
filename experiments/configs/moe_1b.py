"""A Mixtral-style mixture of experts for accelerators: llama_1b's attention (2048 wide, 16
layers, 32 heads, 8 kv heads) with 8 experts of width 2816 in every layer, 2 per token (Mixtral's
router): 2.51B parameters, 0.85B of them active per token.

Target, checked with launch.memory: a TPU v5p slice of 8 chips,
`--topology=v5p:2x2x2 --mesh=1,8,1` (libtpu 0.0.52's compiler: 91.3 GB of 102 GB per chip, of
which 87.5 GB temporaries, against llama_1b's 24.0 GB in all). Parameters, AdamW moments and
experts split over fsdp as a dense MLP's (the default rules; ['expert', 'fsdp'] before
['embed', 'fsdp'] splits the experts themselves). Dropless through jax.lax.ragged_dot (moe_impl
auto on TPU).
"""
from experiments.configs import llama_1b


def get_config():
  c = llama_1b.get_config()
  c.model.moe_experts = 8
  c.model.moe_top_k = 2
  c.model.moe_d_ff = 2816
  return c
