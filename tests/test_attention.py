"""Blocked causal attention with its hand-written backward against autodiff of dense softmax."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.attention import attention, reference_attention
from lmjax.model import attention_mask


def _inputs(b=2, k=2, g=2, t=32, e=8, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(keys[0], (b, k, g, t, e)) * e ** -0.5
  kk = jax.random.normal(keys[1], (b, k, t, e))
  v = jax.random.normal(keys[2], (b, k, t, e))
  do = jax.random.normal(keys[3], (b, k, g, t, e))
  return q, kk, v, do


@pytest.mark.parametrize('block', [0, 8, 12, *(pytest.param(b, marks=pytest.mark.slow)
                                               for b in (16, 32))])
@pytest.mark.parametrize('segments', [False, True])
def test_matches_dense_softmax_and_its_gradients(block, segments):
  q, k, v, do = _inputs()
  seg = jnp.array([[0] * 10 + [1] * 15 + [2] * 7, [0] * 32]) if segments else None
  mask = attention_mask(32, seg)
  ours, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, mask, block), q, k, v)
  ref, ref_vjp = jax.vjp(lambda q, k, v: reference_attention(q, k, v, mask), q, k, v)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(vjp(do), ref_vjp(do)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_inputs_stay_close():
  q, k, v, do = _inputs()
  mask = attention_mask(32)
  bf = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  ours = attention(*bf, mask, 8)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_allclose(ours.astype(jnp.float32), reference_attention(q, k, v, mask),
                             atol=3e-2)
