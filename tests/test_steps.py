"""The train step: determinism across runs and seeds, gradient accumulation."""
import jax
import numpy as np
import pytest

from lmjax.config import resolve
from lmjax.data import loader
from lmjax.train.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg

pytestmark = pytest.mark.slow  # several compiled train steps per test


def _losses(c, n):
  model, tx = build_model_and_optimizer(c)
  state, step = init_state(model, tx, c), make_train_step(model, tx, c)
  out = []
  for _, batch in zip(range(n), loader.train_iterator(loader.load(c), c)):
    state, m = step(state, batch, schedule_arg(c))
    out.append(float(m['loss']))
  return out, state


def test_same_config_and_seed_give_identical_losses(tiny):
  tiny.model.dropout = 0.1
  c = resolve(tiny)
  a, _ = _losses(c, 8)
  b, _ = _losses(c, 8)
  assert a == b
  tiny.seed = 1
  other, _ = _losses(resolve(tiny), 8)
  assert other != a


def test_gradient_accumulation_gives_the_large_batch_update(tiny):
  tiny.data.batch_size = 8
  one, s1 = _losses(resolve(tiny), 3)
  tiny.train.grad_accum = 4
  four, s4 = _losses(resolve(tiny), 3)
  np.testing.assert_allclose(one, four, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s4.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
