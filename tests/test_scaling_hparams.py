"""Hyperparameter optima, their power laws against C, N and D, the lr shift with width, and the
laws read back from fits.json (lmjax/scaling/hparams.py, optimum.py, lr_transfer.py)."""
import json
import math

import numpy as np
import pytest

from lmjax.scaling import fit as scaling_fit
from lmjax.scaling import hparams, table
from lmjax.scaling.options import FitOptions

TRUE = dict(lr=(0.3, -0.125), batch_size=(0.29, 0.33))  # η*(C), B*(C) of the synthetic runs


def _one_line(fn, match=None) -> str:
  with pytest.raises(hparams.HparamsError) as e:
    fn()
  message = str(e.value)
  assert '\n' not in message
  if match:
    assert match in message, message
  return message


def synthetic(seed=0, budgets=np.geomspace(1e17, 1e20, 5), noise=0.005, shift=None,
              batch=True):
  """Runs on a 5 × 4 grid per budget, the grid off-centre by up to 0.4 octave:
  loss = L0(C) + 0.05·(log2 η/η*)² + 0.03·(log2 B/B*)² + noise, η* and B* from TRUE.
  `shift`: {budget index: octaves} moves that budget's lr grid."""
  rng = np.random.default_rng(seed)
  cols = {k: [] for k in ('N', 'D', 'C', 'loss', 'lr', 'batch_size', 'budget')}
  for i, c in enumerate(budgets):
    eta, b_opt = (a * c ** b for a, b in TRUE.values())
    n = (c / 120) ** 0.5
    lrs = eta * 2.0 ** (np.arange(-2, 3) + rng.uniform(-0.4, 0.4) + (shift or {}).get(i, 0))
    bs = b_opt * 2.0 ** (np.arange(-1.5, 2) + rng.uniform(-0.4, 0.4)) if batch else [64.0]
    for lr in lrs:
      for b in bs:
        loss = (2 + 0.1 * np.log10(1e20 / c) + 0.05 * np.log2(lr / eta) ** 2
                + (0.03 * np.log2(b / b_opt) ** 2 if batch else 0)
                + noise * rng.standard_normal())
        for k, v in zip(cols, (n, c / (6 * n), c, loss, lr, b, c)):
          cols[k].append(v)
  return table.from_columns(cols, source='synthetic')


def test_optimum_1d_recovers_a_parabolas_vertex():
  xs = 2.0 ** np.arange(-14, -4)
  losses = 3 + 0.1 * (np.log2(xs) + 9.37) ** 2
  for points in (3, 5):
    o = hparams.optimum_1d(xs, losses, points=points)
    assert o.x == pytest.approx(2 ** -9.37, rel=1e-9) and o.loss == pytest.approx(3, abs=1e-12)
    assert o.fitted and o.edge == '' and o.n_points == points
  # Seeds at one x are pooled; diverged runs (NaN, inf) are missing points.
  twice = np.concatenate([losses - 0.01, losses + 0.01])
  twice[3] = twice[13] = np.nan
  with_diverged = np.append(twice, np.inf)
  o = hparams.optimum_1d(np.concatenate([xs, xs, [2.0 ** -4]]), with_diverged)
  assert o.x == pytest.approx(2 ** -9.37, rel=1e-9) and o.edge == ''
  # A weight counts a run that many times (a bootstrap replicate's counts).
  w = np.zeros(20)
  w[10:] = 2.0
  assert hparams.optimum_1d(np.concatenate([xs, xs]), twice, w).loss == pytest.approx(3.01)


def test_optimum_1d_edges_and_errors():
  xs = 2.0 ** np.arange(-14, -4)
  low = hparams.optimum_1d(xs, (np.log2(xs) + 20) ** 2)
  assert (low.edge, low.x, low.fitted) == ('low', 2.0 ** -14, False)
  high = hparams.optimum_1d(xs, -np.log2(xs))
  assert (high.edge, high.x) == ('high', 2.0 ** -5)
  assert hparams.optimum_1d([1e-3], [2.0]).edge == 'both'
  # The highest lrs diverged: the best finite one is the grid's edge among the measured.
  losses = (np.log2(xs) + 2) ** 2
  losses[-3:] = np.nan
  assert hparams.optimum_1d(xs, losses).edge == 'high'
  _one_line(lambda: hparams.optimum_1d(xs, np.full(10, np.nan)), 'no finite loss')
  _one_line(lambda: hparams.optimum_1d(-xs, xs), 'xs: every value must be finite and positive')
  _one_line(lambda: hparams.optimum_1d(xs, xs, points=2), 'points=2')
  _one_line(lambda: hparams.optimum_1d(xs, xs[:3]), 'one of each per run')


def _grid(fn, lr_octaves=np.arange(-12, -6.0), b_octaves=np.arange(3, 8.0)):
  u, v = np.meshgrid(lr_octaves, b_octaves)
  return 2.0 ** u.ravel(), 2.0 ** v.ravel(), fn(u.ravel(), v.ravel())


def test_optimum_2d_recovers_a_quadratics_vertex_and_falls_back():
  bowl = lambda u, v: 2 + 0.1 * (u + 9.3) ** 2 + 0.05 * (v - 4.6) ** 2 + 0.02 * (u + 9.3) * (
      v - 4.6)
  o = hparams.optimum_2d(*_grid(bowl))
  assert o.lr == pytest.approx(2 ** -9.3, rel=1e-9)
  assert o.batch_size == pytest.approx(2 ** 4.6, rel=1e-9)
  assert o.loss == pytest.approx(2, abs=1e-12) and o.fitted and o.edges == ()
  assert o.n_points == 9  # the 3 × 3 grid points around the lowest
  assert hparams.optimum_2d(*_grid(bowl), window=7).n_points == 30  # the whole 6 × 5 grid
  # The minimum beyond the grid's smallest lr: the best grid point, flagged.
  out = hparams.optimum_2d(*_grid(lambda u, v: 2 + 0.1 * (u + 14) ** 2 + 0.05 * (v - 5) ** 2))
  assert not out.fitted and 'outside the grid' in out.reason
  assert out.edges == ('lr_low',) and out.lr == 2.0 ** -12 and out.batch_size == 2.0 ** 5
  saddle = hparams.optimum_2d(*_grid(lambda u, v: 2 + 0.1 * (u + 9) ** 2 - 0.01 * (v - 5) ** 2))
  assert not saddle.fitted and 'not positive definite' in saddle.reason
  assert set(saddle.edges) <= {'batch_low', 'batch_high'}
  # Missing points widen the window until the surface is determined.
  lr, b, loss = _grid(bowl)
  loss[(np.log2(lr) == -10) & (np.log2(b) == 4)] = np.nan
  assert hparams.optimum_2d(lr, b, loss).lr == pytest.approx(2 ** -9.3, rel=1e-9)
  two = hparams.optimum_2d(*_grid(bowl, b_octaves=np.arange(4, 6.0)))
  assert not two.fitted and 'fewer than 3' in two.reason


@pytest.fixture(scope='module')
def fitted():
  return hparams.fit_laws(synthetic(), bootstrap=200, seed=1, predict_c=[1e22])


def test_laws_recover_the_exponents_within_their_intervals(fitted):
  assert len(fitted.budgets) == 5 and all(b.fitted and not b.flags for b in fitted.budgets)
  for q, (a_true, b_true) in TRUE.items():
    law = fitted.law(q, 'C')
    lo, hi = law.b_interval
    assert lo <= b_true <= hi and lo <= law.b <= hi, (q, law.b, law.b_interval)
    assert 0 < hi - lo < (0.1 if q == 'lr' else 0.2)          # informative, not absurd
    assert law.a_interval[0] <= a_true <= law.a_interval[1]
    assert law.predict(1e18) == pytest.approx(a_true * 1e18 ** b_true, rel=0.1)
    assert np.all(np.isfinite(law.samples))
    # C = 6ND with N ∝ C^0.5 here: the laws against N and D have twice the exponent.
    assert fitted.law(q, 'N').b == pytest.approx(2 * law.b, rel=1e-6)
  row = fitted.predictions([1e22])[0]
  assert row['lr']['lo'] < row['lr']['value'] < row['lr']['hi']
  doc = json.loads(json.dumps(scaling_fit.clean_json(fitted.to_json()), allow_nan=False))
  assert doc['laws']['lr']['C']['b'] == pytest.approx(fitted.law('lr').b)
  assert doc['predictions'][0]['c'] == 1e22 and len(doc['budgets']) == 5
  text = fitted.text()
  assert 'lr_opt = a·C^b' in text and 'DeepSeek' in text and 'at C=1e+22' in text


def test_edge_budgets_are_left_out_and_grids_of_one_hyperparameter():
  fit = hparams.fit_laws(synthetic(shift={2: 3.0}), bootstrap=0)
  assert fit.budgets[2].flags == ('lr_high',) or 'lr_low' in fit.budgets[2].flags
  assert len(fit.law('lr').x) == 4 and len(fit.law('batch_size').x) == 5
  assert math.isnan(fit.law('lr').a_interval[0])  # no bootstrap, no interval
  lr_only = hparams.fit_laws(synthetic(batch=False), bootstrap=20)
  assert lr_only.law('lr').b == pytest.approx(-0.125, abs=0.02)
  assert lr_only.skipped['batch_size', 'C'] == 'no budget varies batch_size'
  _one_line(lambda: lr_only.law('batch_size'), 'no budget varies batch_size')


def test_bad_tables_are_one_line_errors():
  t = synthetic()
  no_lr = table.from_columns({'N': t.N, 'D': t.D, 'loss': t.loss}, source='runs.csv')
  _one_line(lambda: hparams.fit_laws(no_lr), 'runs.csv: no learning-rate column')
  one = t.subset(np.isclose(t.C, 1e17))
  _one_line(lambda: hparams.fit_laws(one, bootstrap=0), 'needs at least 3')
  bad = table.from_columns({'N': [1.0], 'D': [1.0], 'loss': [1.0], 'lr': ['x']}, source='r')
  message = _one_line(lambda: hparams.fit_laws(bad),
                      "r row 1: lr = 'x'; it must be a positive number")
  assert message.startswith('r row 1')


def test_laws_round_trip_through_launch_fits_json(tmp_path):
  t = synthetic()
  t = table.from_columns({'N': t.N, 'N_no_emb': 0.8 * t.N, 'D': t.D, 'C': t.C, 'loss': t.loss,
                          **t.tags})
  report = scaling_fit.fit_runs(t, FitOptions(laws=('hparams',), bootstrap=30))
  scaling_fit.write_report(report, str(tmp_path / 'fits'), plots=False)
  fit = report.objects['N']['hparams'][0]
  law = hparams.read_law(str(tmp_path / 'fits'), 'lr', 'C')
  assert (law.a, law.b) == (fit.law('lr').a, fit.law('lr').b)
  assert law.b_interval == pytest.approx(fit.law('lr').b_interval)
  no_emb = hparams.read_law(str(tmp_path / 'fits' / 'fits.json'), 'batch_size', 'N_no_emb')
  assert no_emb.b == pytest.approx(report.objects['N_no_emb']['hparams'][0].law(
      'batch_size', 'N').b) and no_emb.against == 'N_no_emb'
  _one_line(lambda: hparams.read_law(str(tmp_path)), 'fits.json: no such file')
  (tmp_path / 'x.json').write_text('{')
  _one_line(lambda: hparams.read_law(str(tmp_path / 'x.json')), 'not valid JSON')
  (tmp_path / 'x.json').write_text('{"fits": {"N": {}}}')
  _one_line(lambda: hparams.read_law(str(tmp_path / 'x.json')), 'no hparams fit')
  _one_line(lambda: hparams.read_law(str(tmp_path / 'fits'), against='E'), 'allowed')


def lr_sweep(slope, seed=0, widths=(64, 128, 256, 512), seeds=3):
  """Runs of one family: η*(width) = 2e-3·(width/128)^slope, 3 seeds, lrs every half octave;
  each seed shifts its whole curve, each run adds noise, and lrs 4 octaves past η* diverge."""
  rng = np.random.default_rng(seed)
  rows = []
  for w in widths:
    eta = 2e-3 * (w / 128) ** slope
    for s in range(seeds):
      offset = 0.01 * rng.standard_normal()
      for lr in 2.0 ** np.arange(-14, -3, 0.5):
        octaves = np.log2(lr / eta)
        loss = 3 + 0.05 * octaves ** 2 + offset + 0.005 * rng.standard_normal()
        rows.append(dict(width=w, lr=lr, seed=s, loss=loss if octaves < 4 else math.nan,
                         parametrization='sp' if slope else 'mup'))
  return rows


def test_lr_shift_recovers_known_slopes():
  shifts = hparams.lr_shifts(lr_sweep(-1.0) + lr_sweep(0.0, seed=1), 'parametrization',
                             bootstrap=200)
  for name, slope in (('sp', -1.0), ('mup', 0.0)):
    s = shifts[name]
    assert s.interval[0] <= slope <= s.interval[1], (name, s.slope, s.interval)
    assert abs(s.slope - slope) < 0.05 and 0 < s.interval[1] - s.interval[0] < 0.2
    assert s.used.all() and list(s.seeds) == [3] * 4 and len(s.curves) == 4
  by_seed = hparams.lr_shift(lr_sweep(-1.0), bootstrap=100, resample='seed')
  assert by_seed.slope == shifts['sp'].slope and by_seed.interval[0] < by_seed.interval[1]
  sp = shifts['sp']
  assert sp.predict(256) == pytest.approx(1e-3, rel=0.05)
  assert 'octaves per doubling of width' in sp.text()
  assert json.dumps(scaling_fit.clean_json(sp.to_json()))


def test_lr_shift_input_errors_and_edges():
  rows = lr_sweep(-1.0, widths=(64, 4096), seeds=1)  # 4096: η* far below the lr grid
  _one_line(lambda: hparams.lr_shift(rows), '1 width(s) of 2 have their optimum inside')
  renamed = [{('d_model' if k == 'width' else k): v for k, v in r.items()} for r in rows]
  _one_line(lambda: hparams.lr_shift(renamed), "no 'width'")
  assert hparams.lr_shift(lr_sweep(-1.0, widths=(64, 128), seeds=1), bootstrap=0,
                          keys={'width': 'width'}).samples is None
  _one_line(lambda: hparams.lr_shift(rows, keys={'depth': 'x'}), 'allowed width')
  _one_line(lambda: hparams.lr_shift(rows, resample='run'), 'allowed cell, seed')
