"""The CPU blocked kernel, both schedules, with its hand-written backward against autodiff of
dense softmax; and its program does not grow with T."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.model import blocked_attention
from lmjax.model.blocked_attention import attention, reference_attention


def _inputs(b=2, k=2, g=2, t=32, e=8, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(keys[0], (b, k, g, t, e)) * e ** -0.5
  kk = jax.random.normal(keys[1], (b, k, t, e))
  v = jax.random.normal(keys[2], (b, k, t, e))
  do = jax.random.normal(keys[3], (b, k, g, t, e))
  return q, kk, v, do


SEGMENTS = jnp.array([[0] * 10 + [1] * 15 + [2] * 7, [5] * 32])


# block 0 and 12 (does not divide 32): one block; 8: 4 blocks, probabilities kept; 4: 8 blocks,
# looped (only output and log-sum-exp kept).
@pytest.mark.parametrize('block', [0, 4, 8, 12, *(pytest.param(b, marks=pytest.mark.slow)
                                                  for b in (2, 16))])
@pytest.mark.parametrize('segments', [False, True])
@pytest.mark.parametrize('kv_heads, groups', [(2, 2), pytest.param(4, 1, marks=pytest.mark.slow),
                                              pytest.param(1, 4, marks=pytest.mark.slow)])
def test_matches_dense_softmax_and_its_gradients(block, segments, kv_heads, groups):
  q, k, v, do = _inputs(k=kv_heads, g=groups)
  seg = SEGMENTS if segments else None
  ours, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, seg, block), q, k, v)
  ref, ref_vjp = jax.vjp(lambda q, k, v: reference_attention(q, k, v, seg), q, k, v)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
  for a, b in zip(vjp(do), ref_vjp(do)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


@pytest.mark.parametrize('block', [8, 4])
def test_bfloat16_inputs_stay_close(block):
  q, k, v, do = _inputs()
  bf = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  ours, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, SEGMENTS, block), *bf)
  assert ours.dtype == jnp.bfloat16
  ref, ref_vjp = jax.vjp(lambda q, k, v: reference_attention(q, k, v, SEGMENTS), q, k, v)
  np.testing.assert_allclose(ours.astype(jnp.float32), ref, atol=2e-2)
  for a, b in zip(vjp(do.astype(jnp.bfloat16)), ref_vjp(do)):
    np.testing.assert_allclose(a.astype(jnp.float32), b, atol=2e-2 * float(jnp.abs(b).max()))


def _lowered(t, block=64):
  q = jax.ShapeDtypeStruct((1, 2, 1, t, 16), jnp.float32)
  kv = jax.ShapeDtypeStruct((1, 2, t, 16), jnp.float32)
  seg = jax.ShapeDtypeStruct((1, t), jnp.int32)
  grads = lambda q, k, v, s: jax.grad(lambda *a: attention(*a, s, block).sum(), (0, 1, 2))(q, k, v)
  return jax.jit(grads).lower(q, kv, kv, seg).as_text()


def test_the_looped_program_has_the_same_ops_at_every_length():
  short, long = _lowered(512), _lowered(4096)
  assert short.count('dot_general') == long.count('dot_general') > 0
  assert 'x512x512x' not in short and 'x4096x4096x' not in long  # no T×S array, only tiles


def test_only_short_sequences_keep_their_probabilities():
  assert blocked_attention._unrolls(256, 64) and not blocked_attention._unrolls(512, 64)
