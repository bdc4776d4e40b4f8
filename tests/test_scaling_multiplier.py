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
  worse = la * 1.5  # runs at a little more compute that did worse are off the frontier
  m = multiplier.compute_multiplier(np.r_[ca, ca * 1.01], np.r_[la, worse], cb, lb, bootstrap=0,
                                    starts=16)
  assert set(m.rows['a']) <= set(range(len(ca)))
  with pytest.raises(FitError, match='frontier') as e:
    multiplier.compute_multiplier(ca[:1], la[:1], cb, lb, bootstrap=0)
  assert '\n' not in str(e.value)
  with pytest.raises(FitError, match='finite positive'):
    multiplier.compute_multiplier(ca, -la, cb, lb, bootstrap=0)


def _with_seeds(c, loss, spread):
  """Every run twice more at the same C (two more seeds), at loss·(1 ± spread)."""
  return np.r_[c, c, c], np.r_[loss, loss * (1 + spread), loss * (1 - spread)]


def test_seeds_at_one_compute_are_one_frontier_point_at_their_mean():
  ca, la, cb, lb = _sweeps(2.0, 1, noise=0.0)
  mask, points = multiplier.frontier_mask(*_with_seeds(ca, la, 0.3))
  assert points == len(ca) and mask.sum() == 3 * len(ca)  # a lucky seed would drop the others
  # The means decide: a seed far above lifts its point (both its runs) off the frontier.
  mask, points = multiplier.frontier_mask(np.r_[ca, ca[3]], np.r_[la, 10.0])
  assert points == len(ca) - 1 and not mask[[3, len(ca)]].any() and mask.sum() == len(ca) - 1
  # Draw counts weight the means; an undrawn run is not on the frontier.
  w = np.ones(3 * len(ca))
  w[len(ca):] = 0
  assert multiplier.frontier_mask(*_with_seeds(ca, la, 0.3), w)[0].sum() == len(ca)
  losses = [1.62, 1.7, 1.8]
  plain = multiplier.compute_multiplier(ca, la, cb, lb, losses=losses, bootstrap=0, starts=16)
  seeded = multiplier.compute_multiplier(*_with_seeds(ca, la, 0.01), *_with_seeds(cb, lb, 0.01),
                                         losses=losses, bootstrap=0, starts=16)
  for r0, r1 in zip(plain.at, seeded.at):  # symmetric seeds: the same curve
    assert r1['m'] == pytest.approx(r0['m'], rel=0.02)


def test_the_interval_carries_run_to_run_noise():
  """The bootstrap draws seeds too: the noisier the seeds, the wider the multiplier's interval;
  a replicate with fewer than two frontier points in a group is counted as failed."""
  ca, la, cb, lb = _sweeps(2.0, 2, noise=0.0)
  widths = []
  for spread in (0.002, 0.03):
    m = multiplier.compute_multiplier(*_with_seeds(ca, la, spread), *_with_seeds(cb, lb, spread),
                                      losses=[1.7], bootstrap=200, starts=16)
    r = m.at[0]
    assert r['lo'] <= 2.0 <= r['hi'], (spread, r)
    widths.append(np.log(r['hi'] / r['lo']))
  assert widths[1] > 3 * widths[0], widths
  few = multiplier.compute_multiplier(ca[:3], la[:3], cb, lb, losses=[1.7], bootstrap=200,
                                      starts=16)
  assert few.fit.boot['failed'] > 0  # some draws of 3 runs hold fewer than 2 distinct points


def test_the_default_losses_lie_inside_what_both_frontiers_reach_or_mark_the_gap():
  ca, la, cb, lb = _sweeps(2.0, 0)
  m = multiplier.compute_multiplier(ca, la, cb, lb, bootstrap=0, starts=16)
  lo, hi, overlap = multiplier.shared_range(m)
  fa, fb = la[m.rows['a']], lb[m.rows['b']]
  assert overlap and not m.extrapolated
  assert (lo, hi) == (max(fa.min(), fb.min()), min(fa.max(), fb.max()))
  stated = [r['loss'] for r in m.at]
  assert stated == multiplier.stated_losses(m) and len(stated) == 3
  assert stated == sorted(stated) and all(lo < s < hi for s in stated)
  assert all(round(s, 2) == s for s in stated)
  assert multiplier.stated_losses(m, count=4, decimals=None) == pytest.approx(
      np.linspace(lo, hi, 6)[1:-1])
  # b trained far more: its frontier begins below a's: the losses lie in the gap, extrapolated.
  far = multiplier.compute_multiplier(ca, la, cb * 1e6, lb * 0.5, bootstrap=0, starts=16)
  lo, hi, overlap = multiplier.shared_range(far)
  assert not overlap and far.extrapolated and hi <= la[far.rows['a']].min()
  assert all(lo < r['loss'] < hi for r in far.at)
