"""Rematerialisation policies by name (`config.model.remat`): what a block keeps for its backward.

Recomputing activations in the backward pass trades compute for memory (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost"). A policy decides which intermediates of a
transformer block are saved; everything else is recomputed from the block's input. The model
tags its intermediates with `jax.ad_checkpoint.checkpoint_name` (lmjax/model/transformer.py):

  query_proj, key_proj, value_proj   q, k, v after their projections (before RoPE)
  attention_out                      the attention kernel's output, before the out projection
  out_proj                           the attention block's output projection
  wi, wi_gate                        the MLP's input projections (before the activation)
  mlp_out                            the MLP's output projection

Policies (as MaxText names its own, by what they keep):
  none             no recomputation: everything the backward needs is kept
  full             keep only the block input; recompute the whole block
  dots             keep every matmul without batch dimensions (all projections)
  minimal          keep every projection output named above, recompute norms, RoPE, activations
                   and the attention kernel
  save_qkv_proj    keep q, k and v only
  save_out_proj    keep the attention block's output projection only
  save_attention   keep q, k, v and the attention output (recompute the MLP)
  offload_qkv_proj, offload_attention: as save_qkv_proj / save_attention, but the saved tensors
                   go to host memory (`pinned_host`) and come back for the backward; for
                   accelerators with host offload (TPU, GPU), not XLA:CPU
"""
from __future__ import annotations

import jax

QKV = ('query_proj', 'key_proj', 'value_proj')
PROJECTIONS = QKV + ('attention_out', 'out_proj', 'wi', 'wi_gate', 'mlp_out')

_SAVED = {'minimal': PROJECTIONS, 'save_qkv_proj': QKV, 'save_out_proj': ('out_proj',),
          'save_attention': QKV + ('attention_out',)}
_OFFLOADED = {'offload_qkv_proj': QKV, 'offload_attention': QKV + ('attention_out',)}
POLICIES = ('none', 'full', 'dots', *_SAVED, *_OFFLOADED)
OFFLOAD_PLATFORMS = ('tpu', 'gpu')


def policy(name: str):
  """The jax.checkpoint policy for a remat name other than `none`."""
  cp = jax.checkpoint_policies
  if name == 'full':
    return None  # jax.checkpoint's default: save nothing but the inputs
  if name == 'dots':
    return cp.dots_with_no_batch_dims_saveable
  if name in _SAVED:
    return cp.save_only_these_names(*_SAVED[name])
  if name in _OFFLOADED:
    return cp.save_and_offload_only_these_names(
        names_which_can_be_saved=[], names_which_can_be_offloaded=list(_OFFLOADED[name]),
        offload_src='device', offload_dst='pinned_host')
  raise ValueError(f'remat policy {name!r}: one of {", ".join(POLICIES)}')


def offloads(name: str) -> bool:
  return name in _OFFLOADED
