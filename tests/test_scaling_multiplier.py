"""Compute multipliers (lmjax/scaling/multiplier.py) on synthetic sweeps whose multiplier is known:
group b is group a with every budget divided by k, so b needs k times a's compute at every loss."""
import numpy as np
import pytest

from lmjax.scaling import multiplier
from lmjax.scaling.parametric import FitError

E, A, ALPHA = 1.5, 300.0, 0.25


def _sweeps(k, seed, n=12, noise=0.01):
  """Frontier points of L(C) = E + A·C^-α for a, and of L_b(C) = L_a(C/k) for b."""
  rng = np.random.default_rng(seed)
  ca = np.geomspace(1e12, 1e15, n) * np.exp(rng.uniform(-0.1, 0.1, n))
  cb = np.geomspace(1e12, 1e15, n) * np.exp(rng.uniform(-0.1, 0.1, n)) * k
  la = (E + A * ca ** -ALPHA) * np.exp(rng.normal(0, noise, n))
  lb = (E + A * (cb / k) ** -ALPHA) * np.exp(rng.normal(0, noise, n))
  return ca, la, cb, lb


def test_known_multipliers_are_recovered_within_their_intervals():
  losses = [1.62, 1.7, 1.8]  # reached by both groups
  for k in (1.0, 2.0, 10.0):
    covered, estimates = 0, []
    for seed in range(6):
      m = multiplier.compute_multiplier(*_sweeps(k, seed), losses=losses, frontier=False,
                                        bootstrap=80, starts=16, seed=seed)
      mid = m.at[1]
      estimates.append(mid['m'])
      covered += mid['lo'] <= k <= mid['hi']
    assert covered >= 5, (k, covered, estimates)
    assert np.median(estimates) == pytest.approx(k, rel=0.25), (k, estimates)


def test_budgets_shared_and_separate_asymptotes_and_the_report():
  data = _sweeps(2.0, 0)
  shared = multiplier.compute_multiplier(*data, names=('base', 'new'), budgets=[1e13, 1e14],
                                         bootstrap=50, starts=32)
  p = shared.params()
  assert p['base']['E'] == p['new']['E']
  assert [r['budget'] for r in shared.at] == [1e13, 1e14]
  for r in shared.at:  # at a's budget C: M = C_b(L_a(C))/C
    assert r['c_a'] == pytest.approx(r['budget'], rel=1e-6)
    assert r['lo'] <= 2.0 <= r['hi'] and r['lo'] < r['m'] < r['hi']
  separate = multiplier.compute_multiplier(*data, shared_asymptote=False, bootstrap=0,
                                           starts=32)
  assert separate.fit.problem.free.count('E_b') == 1 and 'lo' not in separate.at[0]
  text = shared.text()
  assert 'one shared asymptote' in text and 'C_new(L)/C_base(L)' in text
  curve = shared.curve([1.7, E - 0.1])  # below the asymptote: out of reach
  assert np.isfinite(curve['value'][0]) and not np.isfinite(curve['value'][1])
  assert curve['unreachable'][1] >= 40  # replicates whose asymptote lies below it reach it


def test_frontier_keeps_the_runs_best_for_their_compute_and_bad_groups_fail_in_one_line():
  ca, la, cb, lb = _sweeps(2.0, 0)
  worse = la * 1.5  # runs at the same budgets that did worse are off the frontier
  m = multiplier.compute_multiplier(np.r_[ca, ca], np.r_[la, worse], cb, lb, bootstrap=0,
                                    starts=16)
  assert set(m.rows['a']) <= set(range(len(ca)))
  with pytest.raises(FitError, match='frontier') as e:
    multiplier.compute_multiplier(ca[:1], la[:1], cb, lb, bootstrap=0)
  assert '\n' not in str(e.value)
  with pytest.raises(FitError, match='finite positive'):
    multiplier.compute_multiplier(ca, -la, cb, lb, bootstrap=0)
