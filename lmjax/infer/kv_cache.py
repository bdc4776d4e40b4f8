"""The key-value cache of autoregressive decoding (lmjax/infer/decode.py uses it;
lmjax/model/transformer.py reads it).

Each layer keeps its keys and values for S slots per row, (B, S, K, E): only the K kv heads, so
GQA and MQA caches are H/K times smaller than the query heads. Slot s of a row holds the token at
position s of that row (one document per row, as a prompt is). `index` (B,) is each row's next
free slot: a call on T new tokens writes slots index .. index + T - 1 of every layer, and each new
token attends to the slots at or before its own. Rows advance independently, so a batch of prompts
of different lengths decodes together: a row's slots past its own length may hold keys of the
padding of a longer prompt, never attended to, and are overwritten as the row grows.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class LayerCache:
  k: jax.Array       # (B, S, K, E)
  v: jax.Array       # (B, S, K, E)
  index: jax.Array   # (B,) int32: the slot of the first new token of each row

  def write(self, k_BxTxKxE, v_BxTxKxE) -> 'LayerCache':
    """This cache with the new tokens' keys and values in slots index .. index + T - 1."""
    def put(cache_SxKxE, new_TxKxE, start):
      return jax.lax.dynamic_update_slice_in_dim(cache_SxKxE, new_TxKxE.astype(cache_SxKxE.dtype),
                                                 start, axis=0)
    put_rows = jax.vmap(put)
    return self.replace(k=put_rows(self.k, k_BxTxKxE, self.index),
                        v=put_rows(self.v, v_BxTxKxE, self.index))

  def attend(self, q_BxTxHxE) -> jax.Array:
    """Causal attention of the new tokens' queries (already scaled by E^-1/2) over the cache:
    query t of a row sees slots 0 .. index + t. Logits and softmax in float32."""
    (b, t, h, e), (s, k) = q_BxTxHxE.shape, self.k.shape[1:3]
    q_BxKxGxTxE = q_BxTxHxE.reshape(b, t, k, h // k, e).transpose(0, 2, 3, 1, 4)
    logits_BxKxGxTxS = jnp.einsum('bkgte,bske->bkgts', q_BxKxGxTxE, self.k,
                                  preferred_element_type=jnp.float32)
    query_slot_BxT = self.index[:, None] + jnp.arange(t)
    visible_BxTxS = jnp.arange(s)[None, None, :] <= query_slot_BxT[:, :, None]
    logits_BxKxGxTxS = jnp.where(visible_BxTxS[:, None, None], logits_BxKxGxTxS,
                                 jnp.finfo(jnp.float32).min)
    probs_BxKxGxTxS = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(self.v.dtype)
    out_BxKxGxTxE = jnp.einsum('bkgts,bske->bkgte', probs_BxKxGxTxS, self.v)
    return out_BxKxGxTxE.transpose(0, 3, 1, 2, 4).reshape(b, t, h, e)


@flax.struct.dataclass
class Cache:
  """Every layer's keys and values, and the rows' next free slot. `k` and `v` are tuples of one
  (B, S, K, E) array per layer or, for a model with `scan_layers`, (L, B, S, K, E) arrays
  scanned over with the parameters."""
  k: Any
  v: Any
  index: jax.Array   # (B,) int32

  @property
  def scanned(self) -> bool:
    return not isinstance(self.k, tuple)

  @property
  def slots(self) -> int:
    return (self.k if self.scanned else self.k[0]).shape[-3]

  def layer(self, i: int) -> LayerCache:
    return LayerCache(self.k[i], self.v[i], self.index)

  def stacked(self) -> LayerCache:
    """All layers as one LayerCache with a leading layer axis (for nn.scan)."""
    return LayerCache(self.k, self.v, jnp.broadcast_to(self.index, (self.k.shape[0],
                                                                    *self.index.shape)))

  def advanced(self, layers, t: int) -> 'Cache':
    """The cache after a call on t new tokens per row: the layers' new keys and values (a
    stacked LayerCache or one per layer) and every row's next free slot t further on."""
    if isinstance(layers, LayerCache):
      return Cache(layers.k, layers.v, self.index + t)
    return Cache(tuple(c.k for c in layers), tuple(c.v for c in layers), self.index + t)

  def take(self, rows) -> 'Cache':
    """The cache of the given rows, in their order (beam search reorders its beams with it)."""
    axis = 1 if self.scanned else 0
    pick = lambda x: jnp.take(x, rows, axis=axis)
    return Cache(jax.tree_util.tree_map(pick, self.k), jax.tree_util.tree_map(pick, self.v),
                 jnp.take(self.index, rows))


def init(cfg, batch: int, slots: int) -> Cache:
  """An empty cache for `batch` rows of `slots` positions of a model (its ModelConfig), in the
  model's compute dtype; every row's next free slot is 0."""
  shape = (batch, slots, cfg.n_kv_heads, cfg.head_dim)
  if cfg.scan_layers:
    k = jnp.zeros((cfg.n_layers, *shape), cfg.dtype)
    v = jnp.zeros((cfg.n_layers, *shape), cfg.dtype)
  else:
    k = tuple(jnp.zeros(shape, cfg.dtype) for _ in range(cfg.n_layers))
    v = tuple(jnp.zeros(shape, cfg.dtype) for _ in range(cfg.n_layers))
  return Cache(k, v, jnp.zeros((batch,), jnp.int32))
