"""Checksums of a checkpoint's arrays: computed on device when a checkpoint is saved, written in
its metadata, and checked when it is read back, so that a checkpoint changed after it was
written (bit rot, a torn upload, an edited file) is named rather than trained or evaluated on.

The digest of an array is two 32-bit sums over its elements, each element's bits as 32-bit
words w mixed with its flat index i: A = Σ (w xor i·0x9E3779B1)·0x85EBCA77 and
B = Σ (w + i)·(2i + 1), mod 2^32. Both multipliers are odd, so flipping any one bit changes
both sums, and the index makes a moved element count. Sums mod 2^32 do not depend on the order
of addition, so the digest is the same on any mesh, device count or number of processes (a
checkpoint restored onto another mesh is verified too), and it is computed where the array
lives, shard by shard, without gathering it. It is a check against damage, not against
tampering. Arrays are keyed by their path in the tree ('params/blocks_0/attn/q/kernel'), so a
partial restore (the params alone) checks what it read.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_MIX, _MUL = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)


class DigestMismatch(ValueError):
  """Restored arrays whose digest differs from the saved one; names the first few."""


def _words(x):
  """The bits of every element of `x` as uint32 (8- and 16-bit types widened, 64-bit types as
  two words on a last axis)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  bits = jnp.dtype(x.dtype).itemsize * 8
  if bits == 32:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  if bits in (8, 16):
    return jax.lax.bitcast_convert_type(x, jnp.dtype(f'uint{bits}')).astype(jnp.uint32)
  if bits == 64:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  raise TypeError(f'no digest for arrays of {x.dtype}')


def _digest(x):
  w = _words(jnp.asarray(x))
  index = jnp.zeros(w.shape, jnp.uint32)
  for axis, size in enumerate(w.shape):  # the flat index, built without reshaping the array
    index = index * np.uint32(size) + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis)
  a = jnp.sum((w ^ (index * _MIX)) * _MUL, dtype=jnp.uint32)
  b = jnp.sum((w + index) * (index * np.uint32(2) + np.uint32(1)), dtype=jnp.uint32)
  return jnp.stack([a, b])


@jax.jit
def _digests(tree):
  return jax.tree_util.tree_map(_digest, tree)


def _path(keys) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                  for k in keys)


def digests(tree) -> dict[str, str]:
  """{path of each array in `tree`: its digest as 16 hex digits}."""
  words = jax.device_get(_digests(tree))
  flat, _ = jax.tree_util.tree_flatten_with_path(words)
  return {_path(keys): f'{int(v[0]):08x}{int(v[1]):08x}' for keys, v in flat}


def verify(tree, saved: dict[str, str], prefix: str = ''):
  """Raises DigestMismatch when an array of `tree` (at `prefix` in the saved tree) has another
  digest than `saved` holds for it; arrays `saved` does not name are not checked."""
  bad = [path for path, value in digests(tree).items()
         if saved.get(prefix + path, value) != value]
  if bad:
    more = f' and {len(bad) - 3} more' if len(bad) > 3 else ''
    raise DigestMismatch(f'checksum mismatch in {", ".join(prefix + p for p in bad[:3])}{more}')
