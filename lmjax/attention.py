"""Causal softmax attention with a hand-written backward pass (the FlashAttention equations).

Shapes: B batch, K kv heads, G query heads per kv head, T queries, S keys (S = T), E head_dim,
Q a block of queries. q (B, K, G, T, E) already scaled by E^-1/2; k, v (B, K, S, E); mask
broadcastable to (B, K, G, T, S), True where attention is allowed. The mask must be causal (it may
forbid more, e.g. across documents) and every row must allow at least one key.

Causal blocks: queries are cut into blocks of `block` rows; block i attends only to keys
[0, (i+1)·block), so the key blocks above the diagonal, which the mask zeroes anyway, are never
computed. With 4 blocks this is 10/16 of the dense work, for the matmuls and the T×S elementwise
passes alike.

Per block, forward: p = exp(s - max s) on allowed keys (0 elsewhere), l = Σ_s p, o = (p v) / l;
dividing o (Q×E) by l is cheaper than dividing p (Q×S). Backward (Dao et al. 2022,
"FlashAttention", Alg. 2, with P = p / l and D = rowsum(dO ∘ O)):
  dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - D),  dQ = dS K,  dK = dSᵀ Q.
Folding 1/l into dO keeps each Q×S pass to one fused elementwise op: dS = p ∘ ((dO/l) Vᵀ - D/l).
Autodiff of `jax.nn.softmax` would reduce P ∘ dP over S, a second Q×S pass that on XLA:CPU cost
more than the attention matmuls around it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_F32 = jnp.float32


def _blocks(t, block):
  """(query start, query end, key end) per block; one dense block when `block` does not divide t."""
  if not block or block >= t or t % block:
    return ((0, t, t),)
  return tuple((i, i + block, i + block) for i in range(0, t, block))


def _mask_block(mask, q0, q1, k1):
  return mask[..., q0:q1, :k1]


def _block_forward(q, k, v, mask):
  s = jnp.einsum('bkgqe,bkse->bkgqs', q, k, preferred_element_type=_F32)
  s = jnp.where(mask, s, jnp.finfo(_F32).min)
  p = jnp.exp(s - s.max(-1, keepdims=True))
  l = p.sum(-1, keepdims=True)
  o = jnp.einsum('bkgqs,bkse->bkgqe', p.astype(v.dtype), v, preferred_element_type=_F32) / l
  return o.astype(q.dtype), p, l


def _forward(q, k, v, mask, block):
  outs, saved = [], []
  for q0, q1, k1 in _blocks(q.shape[-2], block):
    o, p, l = _block_forward(q[..., q0:q1, :], k[..., :k1, :], v[..., :k1, :],
                             _mask_block(mask, q0, q1, k1))
    outs.append(o)
    saved.append((p, l))
  return jnp.concatenate(outs, axis=-2), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention(q, k, v, mask, block=64):
  return _forward(q, k, v, mask, block)[0]


def _attention_fwd(q, k, v, mask, block):
  o, saved = _forward(q, k, v, mask, block)
  return o, (q, k, v, mask, o, saved)


def _attention_bwd(block, res, do):
  q, k, v, mask, o, saved = res
  dq_blocks = []
  dk, dv = jnp.zeros(k.shape, _F32), jnp.zeros(v.shape, _F32)
  for (q0, q1, k1), (p, l) in zip(_blocks(q.shape[-2], block), saved):
    do_l = do[..., q0:q1, :].astype(_F32) / l
    d_l = (do_l * o[..., q0:q1, :].astype(_F32)).sum(-1, keepdims=True)
    dv = dv.at[..., :k1, :].add(jnp.einsum('bkgqs,bkgqe->bkse', p, do_l))
    dp_l = jnp.einsum('bkgqe,bkse->bkgqs', do_l, v[..., :k1, :].astype(_F32))
    ds = (p * (dp_l - d_l)).astype(q.dtype)
    dq_blocks.append(jnp.einsum('bkgqs,bkse->bkgqe', ds, k[..., :k1, :],
                                preferred_element_type=_F32))
    dk = dk.at[..., :k1, :].add(jnp.einsum('bkgqs,bkgqe->bkse', ds, q[..., q0:q1, :],
                                           preferred_element_type=_F32))
  dq = jnp.concatenate(dq_blocks, axis=-2)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


attention.defvjp(_attention_fwd, _attention_bwd)


def reference_attention(q, k, v, mask):
  """Dense attention through jax.nn.softmax and autodiff, for tests."""
  s = jnp.einsum('bkgte,bkse->bkgts', q, k, preferred_element_type=_F32)
  p = jax.nn.softmax(jnp.where(mask, s, jnp.finfo(_F32).min), axis=-1)
  return jnp.einsum('bkgts,bkse->bkgte', p.astype(v.dtype), v,
                    preferred_element_type=_F32).astype(q.dtype)
