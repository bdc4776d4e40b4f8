"""Chunked cross-entropy through the output layer equals the whole-logits loss and its
gradients; the z-loss adds z · log²Z; and a train step with chunks gives the loss without."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.train import loss


def _head(n=96, d=16, v=50, bias=True, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  x = jax.random.normal(keys[0], (n, d))
  w = jax.random.normal(keys[1], (d, v)) * 0.5
  b = jax.random.normal(keys[2], (v,)) if bias else None
  targets = jax.random.randint(keys[3], (n,), 0, v)
  return x, w, b, targets


def _objective(chunk, z):
  def f(x, w, b, targets, weights):
    if chunk:
      nats, lse = loss.cross_entropy_chunked(x, w, b, targets, chunk)
    else:
      logits = x @ w + (0 if b is None else b)
      nats, lse = loss.cross_entropy(logits, targets)
    return (nats * weights).sum() + z * (lse * lse * weights).sum()
  return f


@pytest.mark.parametrize('chunk', [8, 32, 48])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('z', [0.0, 1e-2])
def test_chunked_equals_the_whole_loss_and_gradients(chunk, bias, z):
  x, w, b, targets = _head(bias=bias)
  weights = (jnp.arange(96) % 7 != 0).astype(jnp.float32)  # some tokens masked out
  args = (x, w) if b is None else (x, w, b)
  wrap = lambda f: (lambda *a: f(a[0], a[1], a[2] if b is not None else None, targets, weights))
  whole, g_whole = jax.value_and_grad(wrap(_objective(0, z)), range(len(args)))(*args)
  ours, g_ours = jax.value_and_grad(wrap(_objective(chunk, z)), range(len(args)))(*args)
  np.testing.assert_allclose(ours, whole, rtol=1e-6)
  for a, r in zip(g_ours, g_whole):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * float(jnp.abs(r).max()))


def test_nats_are_the_textbook_cross_entropy():
  x, w, b, targets = _head(n=8)
  logits = np.asarray(x @ w + b, np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  expected = -np.log(p[np.arange(8), np.asarray(targets)])
  nats, lse = loss.cross_entropy_chunked(x, w, b, targets, 4)
  np.testing.assert_allclose(nats, expected, rtol=1e-5)
  np.testing.assert_allclose(lse, np.log(np.exp(logits).sum(1)), rtol=1e-5)


def test_bfloat16_features_accumulate_the_weight_gradient_in_float32():
  x, w, b, targets = _head(n=256, v=40)
  f = lambda chunk: jax.grad(lambda x, w: loss.cross_entropy_chunked(
      x, w, None, targets, chunk)[0].sum(), (0, 1))(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
  dx, dw = f(16)
  ref_dx, ref_dw = jax.grad(lambda x, w: loss.cross_entropy(x @ w, targets)[0].sum(), (0, 1))(x, w)
  assert dw.dtype == jnp.bfloat16
  np.testing.assert_allclose(dw.astype(jnp.float32), ref_dw, atol=2e-2 * float(abs(ref_dw).max()))
  np.testing.assert_allclose(dx.astype(jnp.float32), ref_dx, atol=2e-2 * float(abs(ref_dx).max()))


@pytest.mark.parametrize('variant', ['tied', pytest.param('untied_bias', marks=pytest.mark.slow)])
def test_a_train_step_in_chunks_gives_the_loss_and_update_of_the_whole(variant):
  from lmjax.data import loader
  from lmjax.config import default_config, resolve
  from lmjax.train.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg
  results = []
  for chunk in (0, 128):
    c = default_config()
    c.data.dataset = 'random'
    c.model.tie_embeddings = variant == 'tied'
    c.model.use_bias = variant == 'untied_bias'
    c.train.loss_chunk = chunk
    c = resolve(c)
    model, tx = build_model_and_optimizer(c)
    step = make_train_step(model, tx, c)
    state, metrics = step(init_state(model, tx, c), next(loader.train_iterator(loader.load(c), c)),
                          schedule_arg(c))
    results.append((float(metrics['loss']), float(metrics['grad_norm']), state.params))
  (l0, g0, p0), (l1, g1, p1) = results
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  np.testing.assert_allclose(g1, g0, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p0)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
