from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import bootstrap, isoflop, laws, parametric, table

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3


def test_resample_counts():
  counts = bootstrap.resample_counts(7, 500, np.random.default_rng(0))
  assert counts.shape == (500, 7) and (counts.sum(1) == 7).all()
  assert counts.mean() == pytest.approx(1.0, abs=0.05)


def test_summary():
  s = bootstrap.summarize({'x': np.arange(1001.0), 'y': [1.0, np.nan]})
  assert s['x']['lo'] == pytest.approx(25.0) and s['x']['hi'] == pytest.approx(975.0)
  assert s['x']['se'] == pytest.approx(np.std(np.arange(1001.0), ddof=1))
  assert s['y']['n'] == 1 and np.isnan(s['y']['se'])


def _noisy_chinchilla(seed):
  rng = np.random.default_rng(seed)
  n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e8, 1e11, 6)))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.01 * rng.standard_normal(n.size))
  return table.from_columns(dict(N=n, D=d, loss=loss))


def test_bootstrap_se_matches_the_spread_over_new_datasets():
  """SEs from one dataset against the spread of fits to 30 fresh datasets (same design)."""
  # Two starts: the truth and a far point; this small problem has one basin.
  starts = np.array([[np.log(P['A']), np.log(P['B']), P['alpha'], P['beta'], np.log(P['E'])],
                     [10.0, 10.0, 1.0, 1.0, 0.0]])
  fits = [parametric.fit_chinchilla(_noisy_chinchilla(s), starts=starts) for s in range(30)]
  spread = np.std([f.params['alpha'] for f in fits], ddof=1)
  boot = bootstrap.bootstrap_parametric(fits[0], 300, seed=0)
  se = bootstrap.summarize(boot['params'])['alpha']['se']
  # Tolerance: a factor 2 either way (30 datasets estimate the spread to about ±13%, and the
  # bootstrap of 36 runs is itself only approximate).
  assert spread / 2 < se < 2 * spread
  assert boot['unconverged'] == 0 and boot['theta'].shape == (300, 5)
  again = bootstrap.bootstrap_parametric(fits[0], 300, seed=0)
  np.testing.assert_array_equal(boot['theta'], again['theta'])


@pytest.mark.slow  # bootstrap replicates of the published data
@needs_shared
def test_epoch_bootstrap_standard_errors():
  """1,000 replicates on Epoch's 240 points against their 4,000 (Besiroglu et al. 2024)."""
  t = table.load_runs(str(SCALING / 'epoch_chinchilla' / 'svg_extracted_data.csv'))
  starts = parametric.hoffmann_grid()[::9]  # 500 starts: the same best optimum, 9x cheaper
  fit = parametric.fit_chinchilla(t.drop_highest_loss(5), starts=starts)
  boot = bootstrap.bootstrap_parametric(fit, 1000, seed=0)
  se = bootstrap.summarize(boot['params'])
  assert boot['unconverged'] == 0
  # Tolerance ±25%: resampling noise of an SE from 1,000 replicates is about ±2%, and they start
  # each replicate from Hoffmann's constants with BFGS where we keep the best of 4 optima.
  for k in ('E', 'A', 'B', 'alpha', 'beta'):
    assert se[k]['se'] == pytest.approx(laws.EPOCH_APPROACH3_SE[k], rel=0.25), k
  assert se['alpha']['lo'] < fit.params['alpha'] < se['alpha']['hi']


def _isoflop_runs(seed):
  rng = np.random.default_rng(seed)
  n, d, c = [], [], []
  for ci in np.geomspace(1e18, 1e21, 6):
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    ns = n_opt * np.exp(np.linspace(-1.2, 1.2, 9))
    n += list(ns)
    d += list(ci / (6 * ns))
    c += [ci] * 9
  n, d, c = map(np.array, (n, d, c))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.003 * rng.standard_normal(n.size))
  return table.from_columns(dict(N=n, D=d, C=c, loss=loss))


def test_isoflop_bootstrap():
  t = _isoflop_runs(0)
  fit = isoflop.fit_isoflop(t)
  boot = bootstrap.bootstrap_isoflop(t, fit, 500, seed=0)
  s = bootstrap.summarize({'a': boot['a']})['a']
  assert boot['failed'] == 0 and s['n'] == 500
  assert s['lo'] < fit.a < s['hi']
  spread = np.std([isoflop.fit_isoflop(_isoflop_runs(seed)).a for seed in range(1, 31)], ddof=1)
  # Tolerance: a factor 2.5 either way. Resampling 9 runs per budget often leaves 4-5 distinct
  # sizes, so the bootstrap over-disperses a parabola's vertex; it is conservative here.
  assert spread / 2.5 < s['se'] < 2.5 * spread
  np.testing.assert_allclose(boot['a'] + boot['b'], 1.0, atol=1e-9)


def test_the_spread_ignores_runaway_replicates_and_they_are_counted():
  """A few degenerate replicates (A = 1e135, as the main job's L(C) fit once printed) make the
  standard error meaningless; the spread (half the central 68% interval) stays at sigma."""
  rng = np.random.default_rng(0)
  a = rng.normal(100.0, 5.0, 1000)
  a[:3] = [1e135, 1e90, 1e60]
  alpha = rng.normal(0.1, 0.01, 1000)
  alpha[3] = np.nan
  s = bootstrap.summarize({'A': a, 'alpha': alpha})
  assert s['A']['se'] > 1e130
  assert s['A']['spread'] == pytest.approx(5.0, rel=0.1)
  assert s['A']['far_out'] == 3 and s['alpha']['nonfinite'] == 1
  assert bootstrap.replicate_counts({'A': a, 'alpha': alpha}) == dict(failed=1, far_out=3)
