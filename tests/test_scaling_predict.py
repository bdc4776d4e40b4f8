import numpy as np
import pytest

from lmjax.scaling import bootstrap, isoflop, laws, parametric, predict, table

P = laws.CHINCHILLA_APPROACH3
STARTS = np.array([[np.log(P['A']), np.log(P['B']), P['alpha'], P['beta'], np.log(P['E'])],
                   [10.0, 10.0, 1.0, 1.0, 0.0]])


@pytest.fixture(scope='module')
def chinchilla():
  rng = np.random.default_rng(0)
  n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1e7, 1e10, 7), np.geomspace(1e8, 1e11, 7)))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.005 * rng.standard_normal(n.size))
  fit = parametric.fit_chinchilla(table.from_columns(dict(N=n, D=d, loss=loss)), starts=STARTS)
  return fit, bootstrap.bootstrap_parametric(fit, 200, seed=0)


def test_loss_at_is_the_law_with_an_interval(chinchilla):
  fit, boot = chinchilla
  rows = predict.loss_at(fit, [7e10, 1e9], [1.4e12, 2e10], boot)
  expect = laws.chinchilla_loss(np.array([7e10, 1e9]), np.array([1.4e12, 2e10]),
                                **{k: fit.params[k] for k in ('E', 'A', 'B', 'alpha', 'beta')})
  np.testing.assert_allclose([r['loss']['value'] for r in rows], expect, rtol=1e-12)
  for r in rows:
    assert r['loss']['lo'] < r['loss']['value'] < r['loss']['hi'] and r['loss']['se'] > 0
  # Extrapolating 7x beyond the largest N is less certain than inside the data.
  assert rows[0]['loss']['se'] > rows[1]['loss']['se']


def test_compute_optimal_from_chinchilla(chinchilla):
  fit, boot = chinchilla
  rows = predict.compute_optimal_at(fit, [1e21, 5.76e23], boot)
  n, d = laws.compute_optimal(np.array([1e21, 5.76e23]), fit.params['A'], fit.params['B'],
                              fit.params['alpha'], fit.params['beta'])
  np.testing.assert_allclose([r['n_opt']['value'] for r in rows], n, rtol=1e-12)
  np.testing.assert_allclose([r['d_opt']['value'] for r in rows], d, rtol=1e-12)
  for r in rows:
    assert r['n_opt']['lo'] < r['n_opt']['value'] < r['n_opt']['hi']
    assert 6 * r['n_opt']['value'] * r['d_opt']['value'] == pytest.approx(r['c'])
  without = predict.compute_optimal_at(fit, 1e21)
  assert 'se' not in without[0]['n_opt']


def test_compute_optimal_from_isoflop():
  n, d, c = [], [], []
  for ci in np.geomspace(1e18, 1e21, 5):
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    ns = n_opt * np.exp(np.linspace(-0.8, 0.8, 7))
    n, d, c = n + list(ns), d + list(ci / (6 * ns)), c + [ci] * 7
  loss = laws.chinchilla_loss(np.array(n), np.array(d), **P)
  fit = isoflop.fit_isoflop(table.from_columns(dict(N=n, D=d, C=c, loss=loss)))
  rows = predict.compute_optimal_at(fit, [1e22])
  n_true, d_true = laws.compute_optimal(1e22, P['A'], P['B'], P['alpha'], P['beta'])
  # Tolerance 5%: one decade of extrapolation from nearly-parabolic profiles.
  assert rows[0]['n_opt']['value'] == pytest.approx(n_true, rel=0.05)
  assert rows[0]['d_opt']['value'] == pytest.approx(d_true, rel=0.05)
