"""Causal softmax attention for XLA:CPU, blocked, with the FlashAttention backward by hand.

Shapes: B batch, K kv heads, G query heads per kv head, T queries, S keys (S = T), E head_dim,
Q rows of a block, n = T / Q blocks. q (B, K, G, T, E) already scaled by E^-1/2; k, v
(B, K, S, E); `segment_ids` (B, T) int or None: a query attends to the keys at or before it in
the same segment (packed documents). The mask is built per Q×Q tile from the ids and iota, never
as a T×S array. Query block i attends only to key blocks j <= i: n(n+1)/2 of the n² tiles.

Two schedules of the same arithmetic (Dao et al. 2022, "FlashAttention", Alg. 1 and 2; with
P = softmax(S), D = rowsum(dO ∘ O):  dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - D),  dQ = dS K,
dK = dSᵀ Q):
- `_looped` (more than SAVED_PROBS_MAX_BLOCKS blocks): `lax` loops over query blocks and, inside,
  over the key blocks at or left of the diagonal, with the online softmax. It keeps for the
  backward only the output and the log-sum-exp per row (what FlashAttention keeps) and recomputes
  the tile probabilities there; the program has the same ops at every T.
- `_unrolled` (at most SAVED_PROBS_MAX_BLOCKS blocks, e.g. T = 256 with Q = 64): one Python step
  per query block over the whole key prefix, keeping the float32 probabilities for the backward,
  B·H·T²·(n+1)/(2n) floats. At such T that is a few MiB, and skipping the recomputation and the
  loop overhead is measurably faster on XLA:CPU (the nanoGPT S and M shapes; benchmarks/).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_F32 = jnp.float32
_NEG = jnp.finfo(_F32).min
SAVED_PROBS_MAX_BLOCKS = 4


def _tile_mask(seg_q, seg_k, q0, k0, nq, nk):
  """(B, 1, 1, nq, nk) booleans: key k0+c at or before query q0+r, and in the same segment."""
  rows = q0 + jax.lax.broadcasted_iota(jnp.int32, (nq, nk), 0)
  cols = k0 + jax.lax.broadcasted_iota(jnp.int32, (nq, nk), 1)
  mask = (cols <= rows)[None, None, None]
  if seg_q is not None:
    mask = mask & (seg_q[:, None, None, :, None] == seg_k[:, None, None, None, :])
  return mask


def _block_size(t, block):
  """Rows per block; the whole sequence when `block` is 0 or does not divide t."""
  return block if block and block < t and t % block == 0 else t


# ---- unrolled: probabilities kept ------------------------------------------------------------

def _unrolled_forward(q, k, v, seg, block):
  t = q.shape[-2]
  outs, saved = [], []
  for q0 in range(0, t, block):
    k1 = q0 + block
    sq = None if seg is None else seg[:, q0:k1]
    sk = None if seg is None else seg[:, :k1]
    s = jnp.einsum('bkgqe,bkse->bkgqs', q[..., q0:k1, :], k[..., :k1, :],
                   preferred_element_type=_F32)
    s = jnp.where(_tile_mask(sq, sk, q0, 0, block, k1), s, _NEG)
    p = jnp.exp(s - s.max(-1, keepdims=True))
    l = p.sum(-1, keepdims=True)
    o = jnp.einsum('bkgqs,bkse->bkgqe', p.astype(v.dtype), v[..., :k1, :],
                   preferred_element_type=_F32) / l
    outs.append(o.astype(q.dtype))
    saved.append((p, l))
  return jnp.concatenate(outs, axis=-2), saved


def _unrolled_backward(q, k, v, o, saved, do, block):
  # Folding 1/l into dO keeps each tile to one fused elementwise pass: dS = p ∘ ((dO/l) Vᵀ - D/l).
  dq_blocks = []
  dk, dv = jnp.zeros(k.shape, _F32), jnp.zeros(v.shape, _F32)
  for i, (p, l) in enumerate(saved):
    q0, k1 = i * block, (i + 1) * block
    do_l = do[..., q0:k1, :].astype(_F32) / l
    d_l = (do_l * o[..., q0:k1, :].astype(_F32)).sum(-1, keepdims=True)
    dv = dv.at[..., :k1, :].add(jnp.einsum('bkgqs,bkgqe->bkse', p, do_l))
    dp_l = jnp.einsum('bkgqe,bkse->bkgqs', do_l, v[..., :k1, :].astype(_F32))
    ds = (p * (dp_l - d_l)).astype(q.dtype)
    dq_blocks.append(jnp.einsum('bkgqs,bkse->bkgqe', ds, k[..., :k1, :],
                                preferred_element_type=_F32))
    dk = dk.at[..., :k1, :].add(jnp.einsum('bkgqs,bkgqe->bkse', ds, q[..., q0:k1, :],
                                           preferred_element_type=_F32))
  return jnp.concatenate(dq_blocks, axis=-2), dk, dv


# ---- looped: output and log-sum-exp kept -----------------------------------------------------

def _split(x, block, axis):
  """(..., T, ...) -> (n, ..., Q, ...): blocks along `axis` on a new leading axis."""
  n = x.shape[axis] // block
  x = x.reshape(*x.shape[:axis], n, block, *x.shape[axis + 1:])
  return jnp.moveaxis(x, axis, 0)


def _merge(x, axis):
  """Inverse of _split."""
  x = jnp.moveaxis(x, 0, axis)
  return x.reshape(*x.shape[:axis], -1, *x.shape[axis + 2:])


def _looped_forward(q, k, v, seg, block):
  qb, kb, vb = _split(q, block, 3), _split(k, block, 2), _split(v, block, 2)
  sb = None if seg is None else _split(seg, block, 1)
  shape = q.shape[:3] + (block,)

  def query_block(i):
    q_i = qb[i]
    sq = None if sb is None else sb[i]

    def key_block(j, carry):
      m, l, acc = carry
      s = jnp.einsum('bkgqe,bkse->bkgqs', q_i, kb[j], preferred_element_type=_F32)
      mask = _tile_mask(sq, None if sb is None else sb[j], i * block, j * block, block, block)
      s = jnp.where(mask, s, _NEG)
      m_new = jnp.maximum(m, s.max(-1))
      p = jnp.exp(s - m_new[..., None])
      scale = jnp.exp(m - m_new)
      acc = acc * scale[..., None] + jnp.einsum('bkgqs,bkse->bkgqe', p.astype(v.dtype), vb[j],
                                                preferred_element_type=_F32)
      return m_new, l * scale + p.sum(-1), acc

    init = (jnp.full(shape, _NEG), jnp.zeros(shape, _F32), jnp.zeros(shape + (q.shape[-1],), _F32))
    m, l, acc = jax.lax.fori_loop(0, i + 1, key_block, init)
    return (acc / l[..., None]).astype(q.dtype), m + jnp.log(l)

  o, lse = jax.lax.map(query_block, jnp.arange(qb.shape[0]))
  return _merge(o, 3), _merge(lse, 3)


def _looped_backward(q, k, v, o, lse, seg, do, block):
  qb, kb, vb = _split(q, block, 3), _split(k, block, 2), _split(v, block, 2)
  dob, lseb = _split(do.astype(_F32), block, 3), _split(lse, block, 3)
  sb = None if seg is None else _split(seg, block, 1)
  db = _split((do.astype(_F32) * o.astype(_F32)).sum(-1), block, 3)  # D = rowsum(dO ∘ O)
  n = qb.shape[0]

  def key_block(dq, j):
    def query_block(i, carry):
      dq, dk_j, dv_j = carry
      s = jnp.einsum('bkgqe,bkse->bkgqs', qb[i], kb[j], preferred_element_type=_F32)
      mask = _tile_mask(None if sb is None else sb[i], None if sb is None else sb[j],
                        i * block, j * block, block, block)
      p = jnp.where(mask, jnp.exp(s - lseb[i][..., None]), 0.)
      dv_j = dv_j + jnp.einsum('bkgqs,bkgqe->bkse', p, dob[i])
      dp = jnp.einsum('bkgqe,bkse->bkgqs', dob[i], vb[j].astype(_F32))
      ds = (p * (dp - db[i][..., None])).astype(q.dtype)
      dq = dq.at[i].add(jnp.einsum('bkgqs,bkse->bkgqe', ds, kb[j], preferred_element_type=_F32))
      dk_j = dk_j + jnp.einsum('bkgqs,bkgqe->bkse', ds, qb[i], preferred_element_type=_F32)
      return dq, dk_j, dv_j

    zeros = jnp.zeros(kb.shape[1:], _F32)
    dq, dk_j, dv_j = jax.lax.fori_loop(j, n, query_block, (dq, zeros, zeros))
    return dq, (dk_j, dv_j)

  dq, (dk, dv) = jax.lax.scan(key_block, jnp.zeros(qb.shape, _F32), jnp.arange(n))
  return _merge(dq, 3), _merge(dk, 2), _merge(dv, 2)


# ---- the kernel ------------------------------------------------------------------------------

def _unrolls(t, block):
  return t // block <= SAVED_PROBS_MAX_BLOCKS


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def attention(q, k, v, segment_ids=None, block=64):
  return _attention_fwd(q, k, v, segment_ids, block)[0]


def _attention_fwd(q, k, v, segment_ids, block):
  block = _block_size(q.shape[-2], block)
  if _unrolls(q.shape[-2], block):
    o, saved = _unrolled_forward(q, k, v, segment_ids, block)
  else:
    o, saved = _looped_forward(q, k, v, segment_ids, block)
  return o, (q, k, v, segment_ids, o, saved)


def _attention_bwd(block, res, do):
  q, k, v, segment_ids, o, saved = res
  block = _block_size(q.shape[-2], block)
  if _unrolls(q.shape[-2], block):
    dq, dk, dv = _unrolled_backward(q, k, v, o, saved, do, block)
  else:
    dq, dk, dv = _looped_backward(q, k, v, o, saved, segment_ids, do, block)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


attention.defvjp(_attention_fwd, _attention_bwd)


def dense_mask(t, segment_ids=None):
  """(B or 1, 1, 1, T, S) booleans, True where query t may attend to key s (tests, dropout)."""
  return _tile_mask(segment_ids, segment_ids, 0, 0, t, t)


def reference_attention(q, k, v, segment_ids=None):
  """Dense attention through jax.nn.softmax and autodiff, for tests."""
  s = jnp.einsum('bkgte,bkse->bkgts', q, k, preferred_element_type=_F32)
  p = jax.nn.softmax(jnp.where(dense_mask(q.shape[-2], segment_ids), s, _NEG), axis=-1)
  return jnp.einsum('bkgts,bkse->bkgte', p.astype(v.dtype), v,
                    preferred_element_type=_F32).astype(q.dtype)
