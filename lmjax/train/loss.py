"""Cross-entropy through the output layer, whole or in chunks of tokens, with an optional z-loss.

Shapes: N tokens, D d_model, V vocabulary, C tokens per chunk, n = N / C chunks.

The whole form multiplies the final features (N, D) by the output weights (D, V) into float32
logits (N, V) and takes the cross-entropy of each row: the logits and their gradient are two
N×V float32 buffers, e.g. 2 × 65,536 × 128,256 × 4 bytes = 67 GB for 64k tokens at a Llama 3
vocabulary. `cross_entropy_chunked` forms the logits of C tokens at a time in a `lax.scan`, keeps
only the log-sum-exp and the target logit per token, and recomputes each chunk's logits in the
backward pass (a custom VJP), accumulating the output-weight gradient in float32: C×V floats live
at a time. Chunk j holds the tokens j, j+n, j+2n, ... so that, with tokens sharded over devices,
every device works on its own share of every chunk.

The z-loss (Chowdhery et al. 2022, "PaLM", Sec. 5) adds z · log²Z per token to the objective,
Z = Σ_v exp(logit_v), to keep the softmax normaliser near 1; it is not part of the reported loss.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_F32 = jnp.float32


def _logits(x_CxD, w_DxV, bias_V):
  logits_CxV = jnp.dot(x_CxD, w_DxV, preferred_element_type=_F32)
  return logits_CxV if bias_V is None else logits_CxV + bias_V


def cross_entropy(logits_NxV, targets_N):
  """(nats (N,), log-sum-exp (N,)) of float32 logits."""
  lse_N = jax.nn.logsumexp(logits_NxV, axis=-1)
  target_N = jnp.take_along_axis(logits_NxV, targets_N[:, None], axis=-1)[:, 0]
  return lse_N - target_N, lse_N


def _chunks(x, n):
  """(N, ...) -> (n, C, ...): chunk j holds rows j, j+n, j+2n, ..."""
  return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)


def _unchunk(x):
  return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def cross_entropy_chunked(x_NxD, w_DxV, bias_V, targets_N, chunk):
  """cross_entropy() of the logits x @ w + bias, formed `chunk` tokens (a divisor of N) at a
  time."""
  return _chunked_fwd(x_NxD, w_DxV, bias_V, targets_N, chunk)[0]


def _chunked_fwd(x_NxD, w_DxV, bias_V, targets_N, chunk):
  n = x_NxD.shape[0] // chunk

  def one(_, xs):
    x_CxD, targets_C = xs
    return None, cross_entropy(_logits(x_CxD, w_DxV, bias_V), targets_C)

  _, (nats, lse) = jax.lax.scan(one, None, (_chunks(x_NxD, n), _chunks(targets_N, n)))
  nats_N, lse_N = _unchunk(nats), _unchunk(lse)
  return (nats_N, lse_N), (x_NxD, w_DxV, bias_V, targets_N, lse_N)


def _chunked_bwd(chunk, res, cotangents):
  # d nats / d logits = softmax - onehot(target); d lse / d logits = softmax.
  x_NxD, w_DxV, bias_V, targets_N, lse_N = res
  g_nats_N, g_lse_N = cotangents
  n = x_NxD.shape[0] // chunk
  v = w_DxV.shape[1]

  def one(carry, xs):
    dw_DxV, db_V = carry
    x_CxD, targets_C, lse_C, g_nats_C, g_lse_C = xs
    p_CxV = jnp.exp(_logits(x_CxD, w_DxV, bias_V) - lse_C[:, None])
    onehot_CxV = jax.nn.one_hot(targets_C, v, dtype=_F32)
    dlogits_CxV = p_CxV * (g_nats_C + g_lse_C)[:, None] - onehot_CxV * g_nats_C[:, None]
    dx_CxD = jnp.dot(dlogits_CxV.astype(w_DxV.dtype), w_DxV.T, preferred_element_type=_F32)
    dw_DxV = dw_DxV + jnp.dot(x_CxD.T, dlogits_CxV.astype(x_CxD.dtype),
                              preferred_element_type=_F32)
    return (dw_DxV, db_V + dlogits_CxV.sum(0)), dx_CxD.astype(x_CxD.dtype)

  zeros = (jnp.zeros(w_DxV.shape, _F32), jnp.zeros((v,), _F32))
  xs = tuple(_chunks(a, n) for a in (x_NxD, targets_N, lse_N, g_nats_N.astype(_F32),
                                     g_lse_N.astype(_F32)))
  (dw_DxV, db_V), dx = jax.lax.scan(one, zeros, xs)
  db = None if bias_V is None else db_V.astype(bias_V.dtype)
  return _unchunk(dx), dw_DxV.astype(w_DxV.dtype), db, None


cross_entropy_chunked.defvjp(_chunked_fwd, _chunked_bwd)


def argmax_chunked(x_NxD, w_DxV, bias_V, chunk):
  """The argmax of each token's logits x @ w + bias, formed `chunk` tokens at a time (evaluation
  only: no gradient)."""
  n = x_NxD.shape[0] // chunk
  one = lambda _, x_CxD: (None, jnp.argmax(_logits(x_CxD, w_DxV, bias_V), -1))
  return _unchunk(jax.lax.scan(one, None, _chunks(x_NxD, n))[1])
