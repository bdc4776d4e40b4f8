import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import isoflop, laws, table

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3
HEADLINE = dict(label='Optimizer tuning (no decay)', dataset='rw')


def _isoflop_table(budgets=np.geomspace(1e18, 1e21, 7), span=1.5, points=9, shift=0.0,
                   noise=0.0, seed=0):
  """Runs on IsoFLOP lines D = C/(6N), spread over ±span in log N around Chinchilla's N_opt."""
  rng = np.random.default_rng(seed)
  n, d, c = [], [], []
  for ci in budgets:
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    ns = n_opt * np.exp(shift + np.linspace(-span, span, points))
    n += list(ns)
    d += list(ci / (6 * ns))
    c += [ci] * points
  n, d, c = map(np.array, (n, d, c))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(noise * rng.standard_normal(n.size))
  return table.from_columns(dict(N=n, D=d, C=c, loss=loss))


def test_recovers_the_allocation_exponents():
  fit = isoflop.fit_isoflop(_isoflop_table())
  a, b = laws.allocation_exponents(P['alpha'], P['beta'])
  assert len(fit.used) == 7 and fit.unmatched == 0
  # Tolerance 0.01: L along an IsoFLOP line is only nearly a parabola in log N.
  assert fit.a == pytest.approx(a, abs=0.01) and fit.b == pytest.approx(b, abs=0.01)
  assert fit.a + fit.b == pytest.approx(1.0, abs=1e-9)  # D_opt = C/(6·N_opt) exactly
  # Narrower sampling, smaller bias.
  narrow = isoflop.fit_isoflop(_isoflop_table(span=0.5))
  assert narrow.a == pytest.approx(a, abs=0.002)
  assert isoflop.fit_isoflop(_isoflop_table(span=1.0)).a == pytest.approx(a, abs=0.005)


def test_recovers_the_exponent_from_noisy_runs():
  from lmjax.scaling import bootstrap
  t = _isoflop_table(span=1.0, noise=0.003, seed=4)
  fit = isoflop.fit_isoflop(t)
  se = bootstrap.summarize(bootstrap.bootstrap_isoflop(t, fit, 300, seed=0))['a']['se']
  a, _ = laws.allocation_exponents(P['alpha'], P['beta'])
  # Within 4 bootstrap standard errors plus the parabola's bias (0.005 at this span, above).
  assert abs(fit.a - a) <= 4 * se + 0.005


def test_flags_edge_too_few_and_no_minimum():
  one_sided = _isoflop_table(budgets=[1e19], shift=1.6)          # every N above N_opt
  few = _isoflop_table(budgets=[1e20], points=3)
  base = _isoflop_table(budgets=[1e18, 1e21, 1e22])
  concave = table.from_columns(dict(N=[1e8, 2e8, 4e8, 8e8], D=[1e9] * 4, C=[5e17] * 4,
                                    loss=[3.0, 3.2, 3.25, 3.1]))
  merged = table.from_columns(dict(
      N=np.concatenate([t.N for t in (one_sided, few, base, concave)]),
      D=np.concatenate([t.D for t in (one_sided, few, base, concave)]),
      C=np.concatenate([t.C for t in (one_sided, few, base, concave)]),
      loss=np.concatenate([t.loss for t in (one_sided, few, base, concave)])))
  fit = isoflop.fit_isoflop(merged)
  flags = {float(f'{b.c:.4g}'): b.flags for b in fit.budgets}
  assert flags[1e19] == ('edge',)
  assert flags[1e20] == ('too_few_points',)
  assert flags[5e17] == ('no_minimum',)
  np.testing.assert_allclose([fit.budgets[i].c for i in fit.used], [1e18, 1e21, 1e22])


def test_budget_snapping_and_too_few_budgets():
  t = _isoflop_table(budgets=[1e19, 1e20, 1e21])
  jitter = t.C * np.exp(np.random.default_rng(1).uniform(-0.05, 0.05, len(t)))
  noisy = table.from_columns(dict(N=t.N, D=t.D, C=np.append(jitter[:-1], 5e19), loss=t.loss))
  fit = isoflop.fit_isoflop(noisy, budgets=[1e19, 1e20, 1e21], rtol=0.1)
  assert fit.unmatched == 1 and [b.n_runs for b in fit.budgets] == [9, 9, 8]
  with pytest.raises(isoflop.IsoflopError, match='2 usable budget\\(s\\) of 2'):
    isoflop.fit_isoflop(_isoflop_table(budgets=[1e19, 1e20]))


def _porian():
  t = table.load_runs(str(SCALING / 'porian2024' / 'porian2024_isoflop_points.csv'))
  return t.where(**HEADLINE)


@needs_shared
def test_porian_optima_give_their_exponent():
  rows = [r for r in csv.DictReader(open(SCALING / 'porian2024' / 'porian2024_isoflop_optima.csv'))
          if r['label'] == HEADLINE['label'] and r['dataset'] == 'rw' and r['n_star']]
  c = np.array([float(r['flops']) for r in rows])
  n = np.array([float(r['n_star']) for r in rows])
  a, _ = laws.power_law_fit(np.log(c), np.log(n))
  published = [f for f in json.load(open(SCALING / 'porian2024' / 'porian2024_fit_results.json'))
               if f['label'] == HEADLINE['label'] and f['dataset'] == 'rw'][0]
  assert published['fit_results']['basic']['n_exponent'] == pytest.approx(0.497, abs=5e-4)
  assert a == pytest.approx(published['fit_results']['basic']['n_exponent'], abs=1e-6)


@needs_shared
def test_porian_points_approach_2_is_close():
  """Our parabolas on their IsoFLOP points against their Akima-interpolated optima (0.497)."""
  t = _porian()
  assert len(t) == 121
  every = isoflop.fit_isoflop(t)
  assert len(every.used) == 12
  assert every.a == pytest.approx(0.497, abs=0.02)   # all points: 0.514, the parabola's bias
  nearest = isoflop.fit_isoflop(t, n_nearest=5)
  assert nearest.a == pytest.approx(0.497, abs=0.01)  # 5 nearest the minimum: 0.501
