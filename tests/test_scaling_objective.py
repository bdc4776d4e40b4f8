import math

import numpy as np
import pytest
from scipy import integrate

from lmjax.scaling import laws, objective
from lmjax.scaling.objective import LseProblem


def _data(k=2, n=60, seed=0):
  rng = np.random.default_rng(seed)
  log_x = np.log(np.stack([np.geomspace(1e7, 1e10, n), rng.permutation(np.geomspace(1e8, 1e11,
                                                                                     n))]))
  y = np.log(laws.chinchilla_loss(*np.exp(log_x), **laws.CHINCHILLA_APPROACH3))
  return log_x[:k], y + 0.01 * rng.standard_normal(n)


def _numeric_grad(problem, theta, weights, eps=1e-6):
  g = np.zeros_like(theta)
  for j in range(theta.shape[1]):
    step = np.zeros(theta.shape[1])
    step[j] = eps
    g[:, j] = (problem.value_and_grad(theta + step, weights)[0]
               - problem.value_and_grad(theta - step, weights)[0]) / (2 * eps)
  return g


@pytest.mark.parametrize('k, with_e, obj, reduction', [
    (2, True, 'huber', 'sum'), (2, True, 'huber', 'mean'), (1, False, 'huber', 'sum'),
    (1, True, 'huber', 'sum'), (2, True, 'huber_nll', 'sum'), (1, False, 'huber_nll', 'mean')])
def test_gradient_matches_finite_differences(k, with_e, obj, reduction):
  log_x, y = _data(k)
  # δ = 0.05 keeps residuals on both sides of the kink while differencing stays smooth.
  problem = LseProblem(log_x, y, with_e=with_e, delta=0.05, objective=obj, reduction=reduction)
  rng = np.random.default_rng(1)
  base = [6.0, 6.0][:k] + [0.34, 0.28][:k] + ([0.5] if with_e else []) + (
      [np.log(0.02)] if obj == 'huber_nll' else [])
  theta = problem.to_internal(np.array(base) + 0.05 * rng.standard_normal((3, len(base))))
  weights = rng.integers(0, 3, size=(3, len(y))).astype(float)
  for w in (None, weights):
    f, g = problem.value_and_grad(theta, w)
    np.testing.assert_allclose(g, _numeric_grad(problem, theta, w), rtol=1e-5, atol=1e-8)


def test_value_is_the_formula():
  log_x, y = _data()
  problem = LseProblem(log_x, y, with_e=True)
  theta = np.array([[np.log(406.4), np.log(410.7), 0.34, 0.28, np.log(1.69)]])
  pred = laws.chinchilla_log_loss(*np.exp(log_x), np.log(1.69), np.log(406.4), np.log(410.7),
                                  0.34, 0.28)
  np.testing.assert_allclose(problem.predict_log(theta)[0], pred, rtol=1e-14)
  f, _ = problem.value_and_grad(problem.to_internal(theta))
  assert f[0] == pytest.approx(np.sum(objective.huber(y - pred, 1e-3)), rel=1e-12)
  mean = LseProblem(log_x, y, with_e=True, reduction='mean')
  assert mean.value_and_grad(mean.to_internal(theta))[0][0] == pytest.approx(f[0] / len(y))


def test_extreme_parameters_take_the_per_run_path():
  """α = 80 spreads the terms over ~500 nats; the stable per-run LSE still gives the formula."""
  log_x, y = _data()
  problem = LseProblem(log_x, y, with_e=True)
  theta = np.array([[5.0, 6.0, 80.0, 0.3, 0.5], [5.0, 6.0, 0.3, 0.3, 0.5]])
  f, g = problem.value_and_grad(problem.to_internal(theta))
  expect = np.sum(objective.huber(y - problem.predict_log(theta), 1e-3), 1)
  np.testing.assert_allclose(f, expect, rtol=1e-12)
  assert np.isfinite(g).all()


def test_huber_and_its_normaliser():
  r = np.array([-1.0, -1e-3, 0.0, 5e-4, 2.0])
  np.testing.assert_allclose(objective.huber(r, 1e-3),
                             [1e-3 * (1 - 5e-4), 5e-7, 0.0, 1.25e-7, 1e-3 * (2 - 5e-4)])
  for delta in (1e-3, 0.5, 2.0):
    z, _ = integrate.quad(lambda u: math.exp(-float(objective.huber(np.array(u), delta))),
                          -np.inf, np.inf, limit=200, points=None)
    assert objective.huber_log_normaliser(delta) == pytest.approx(math.log(z), rel=1e-6)


def test_bad_settings():
  log_x, y = _data()
  for kw in (dict(objective='l2'), dict(reduction='median'), dict(delta=0.0)):
    with pytest.raises(ValueError):
      LseProblem(log_x, y, with_e=True, **kw)
