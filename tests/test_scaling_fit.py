"""lmjax.scaling.fit and .options called as a library: options, fits, the report, its writing."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lmjax.core.errors import first_line
from lmjax.scaling import fit, laws, plots, table
from lmjax.scaling.options import FitOptions, FitOptionsError

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3
QUICK = dict(bootstrap=0, starts='coarse', predict_c=(1e22,))


def _isoflop_table(budgets=5, points=7, seed=0):
  """Runs on IsoFLOP lines of Chinchilla's law, with a non-embedding count and a run tag."""
  rng = np.random.default_rng(seed)
  n, d, c = [], [], []
  for ci in np.geomspace(1e18, 1e21, budgets):
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    ns = n_opt * np.exp(np.linspace(-1.0, 1.0, points))
    n, d, c = n + list(ns), d + list(ci / (6 * ns)), c + [ci] * points
  n, d, c = map(np.array, (n, d, c))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.003 * rng.standard_normal(n.size))
  group = ['a' if i % 2 else 'b' for i in range(n.size)]
  return table.from_columns(dict(N=n, N_no_emb=0.8 * n, D=d, C=c, loss=loss, group=group))


@pytest.mark.parametrize('kwargs, option, text', [
    (dict(laws=('kaplan_x',)), 'laws', '--law=kaplan_x: allowed chinchilla'),
    (dict(laws=('approach1',)), 'laws', '--law=approach1 needs --run_tags'),
    (dict(bootstrap=1), 'bootstrap', '--bootstrap=1: 0 (none) or at least 2'),
    (dict(bootstrap_starts=0), 'bootstrap_starts', '--bootstrap_starts=0: must be at least 1'),
    (dict(level=1.0), 'level', '--level=1.0: must be in (0, 1)'),
    (dict(huber_delta=float('nan')), 'huber_delta', '--huber_delta=nan: must be positive'),
    (dict(drop_highest_loss=-1), 'drop_highest_loss', '--drop_highest_loss=-1: must be >= 0'),
    (dict(isoflop_min_points=2), 'isoflop_min_points', 'a parabola needs at least 3'),
    (dict(isoflop_nearest=2), 'isoflop_nearest', '--isoflop_nearest=2: 0 (all) or at least 3'),
    (dict(budget_rtol=0.0), 'budget_rtol', '--budget_rtol=0.0: must be positive'),
    (dict(objective='l2'), 'objective', '--objective=l2: allowed huber, huber_nll'),
    (dict(n_count='all'), 'n_count', '--n_count=all: allowed both, N, N_no_emb'),
    (dict(where=['group']), 'where', '--where=group: expected KEY=VALUE'),
    (dict(predict_nd=['7e10']), 'predict_nd', '--predict_nd=7e10: expected N:D'),
    (dict(predict_c=['1e21', 'x']), 'predict_c', '--predict_c=1e21,x: expected numbers'),
    (dict(budgets=[1e20, -1]), 'budgets', 'every value must be finite and positive'),
])
def test_a_bad_option_is_named_in_one_line(kwargs, option, text):
  with pytest.raises(FitOptionsError) as e:
    FitOptions(**kwargs)
  assert e.value.option == option and text in str(e.value) and '\n' not in str(e.value)


def test_options_take_command_line_strings_or_values_alike():
  as_text = FitOptions(predict_c=['1e21', '5.76e23'], predict_nd=['7e10:1.4e12'],
                       where=['group = a'], budgets=['1e20'], laws='chinchilla')
  as_values = FitOptions(predict_c=(1e21, 5.76e23), predict_nd=[(7e10, 1.4e12)],
                         where={'group': 'a'}, budgets=(1e20,), laws=('chinchilla',))
  assert as_text == as_values == dataclasses.replace(as_text)  # replace re-checks, same values
  assert as_text.predict_nd == ((7e10, 1.4e12),) and as_text.where == {'group': 'a'}
  assert FitOptions().predict_c == (1e21, 1e22, 1e23, 5.76e23, 1e24, 1e25)


def test_law_list_expands_all():
  assert FitOptions().law_list() == ['chinchilla', 'isoflop', 'kaplan_n', 'kaplan_d', 'kaplan_c']
  assert FitOptions(run_tags=['group']).law_list()[-1] == 'approach1'
  assert FitOptions(laws=['isoflop', 'all', 'isoflop']).law_list()[0] == 'isoflop'
  assert FitOptions(laws=['isoflop']).explicit and not FitOptions().explicit


@pytest.fixture(scope='module')
def report():
  return fit.fit_runs(_isoflop_table(), FitOptions(laws=('chinchilla', 'isoflop', 'kaplan_c'),
                                                   **{**QUICK, 'bootstrap': 10}))


def test_fits_every_law_for_both_counts(report):
  assert list(report.fits) == ['N', 'N_no_emb']
  chin = report.fits['N']['chinchilla']
  assert chin['params']['alpha'] == pytest.approx(P['alpha'], abs=0.05)
  assert chin['bootstrap']['replicates'] == 10
  assert report.fits['N']['isoflop']['n_budgets_used'] == 5
  assert set(report.objects['N']) == {'chinchilla', 'isoflop', 'kaplan_c'}
  assert set(report.timings['N_no_emb']) == {'chinchilla', 'isoflop', 'kaplan_c'}


def test_to_json_is_the_fits_document(report):
  doc = report.to_json(plots=['chinchilla.png'])
  json.dumps(doc, allow_nan=False)  # numpy and NaN already cleaned
  assert list(doc) == ['runs', 'flags', 'fits', 'skipped', 'published', 'plots', 'timings_s']
  assert doc['runs']['read'] == 35 and doc['runs']['rows'] == 35
  assert doc['flags']['predict_c'] == [1e22] and doc['plots'] == ['chinchilla.png']
  assert doc['fits']['N']['chinchilla']['predictions']['compute_optimal'][0]['c'] == 1e22
  assert report.to_json(flags={'law': ['all']})['flags'] == {'law': ['all']}


def test_text_is_the_printed_table(report):
  lines = report.text().splitlines()
  assert lines[0] == 'runs: <arrays>: 35 rows fitted of 35 read'
  assert 'N counted as N, every parameter' in lines
  assert 'N counted as N_no_emb, without embeddings' in lines
  assert any(l.startswith('  chinchilla') for l in lines)
  assert any('5/5 budgets used' in l for l in lines)
  assert sum(l.startswith('    C=1e+22: N_opt=') for l in lines) == 2


def test_a_law_that_cannot_be_fitted_is_skipped_with_its_reason_unless_asked_for():
  t = _isoflop_table(budgets=2, points=3)  # 6 runs: too few for a parabola of 4
  report = fit.fit_runs(t, FitOptions(laws=('all',), run_tags=('group',), **QUICK))
  assert 'isoflop' in report.skipped['N'] and 'isoflop' not in report.fits['N']
  assert all(isinstance(r, str) and r for r in report.skipped['N'].values())
  assert 'skipped: ' in report.text()
  with pytest.raises(fit.CannotFitError):
    fit.fit_runs(t, FitOptions(laws=('isoflop',), **QUICK))
  tiny = table.from_columns(dict(N=[1e8], D=[1e9], loss=[3.0]))
  with pytest.raises(fit.CannotFitError, match='no law could be fitted: chinchilla: '):
    fit.fit_runs(tiny, FitOptions(**QUICK))


def test_rows_selected_before_fitting():
  t = _isoflop_table()
  report = fit.fit_runs(t, FitOptions(laws=('kaplan_n',), where=['group=a'], drop_highest_loss=2,
                                      n_count='N', **QUICK))
  assert report.runs['read'] == 35 and report.runs['where'] == {'group': 'a'}
  assert report.runs['rows'] == 15 and list(report.fits) == ['N']  # 17 in group a, 2 dropped
  with pytest.raises(FitOptionsError, match='--where=group=z: no rows match'):
    fit.fit_runs(t, FitOptions(where={'group': 'z'}, **QUICK))
  with pytest.raises(table.TableError, match="no tag column 'run'"):
    fit.fit_runs(t, FitOptions(where={'run': 'a'}, **QUICK))
  no_emb = table.from_columns(dict(N=t.N, D=t.D, loss=t.loss))
  with pytest.raises(FitOptionsError, match='--n_count=N_no_emb: <arrays> has no N_no_emb'):
    fit.fit_runs(no_emb, FitOptions(n_count='N_no_emb', **QUICK))


@pytest.mark.slow  # renders the plots twice
def test_write_report_is_all_or_nothing(report, tmp_path, monkeypatch):
  out = tmp_path / 'out'
  names = fit.write_report(report, str(out))
  doc = json.loads((out / 'fits.json').read_text())
  assert doc['plots'] == names and {'chinchilla.png', 'isoflop_no_emb.png'} <= set(names)
  assert sorted(p.name for p in out.iterdir()) == sorted(names + ['fits.json'])
  before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

  def broken(*args, **kwargs):
    raise RuntimeError('disk full')
  monkeypatch.setattr(plots, 'frontier', broken)
  with pytest.raises(RuntimeError):
    fit.write_report(report, str(out))
  assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched, no temp
  with pytest.raises(RuntimeError):
    fit.write_report(report, str(tmp_path / 'new'))
  assert not (tmp_path / 'new').exists()


def test_write_without_plots(report, tmp_path):
  assert fit.write_report(report, str(tmp_path), plots=False, flags={'plots': False}) == []
  assert [p.name for p in tmp_path.iterdir()] == ['fits.json']


@needs_shared
def test_the_epoch_file_with_its_conventions():
  t = table.load_runs(str(SCALING / 'epoch_chinchilla' / 'svg_extracted_data.csv'))
  report = fit.fit_runs(t, FitOptions(laws=('isoflop',), bootstrap=20))
  assert report.runs['read'] == 245 and report.runs['dropped_highest'] == 5
  assert first_line(report.text()).endswith(
      '240 rows fitted of 245 read, 5 highest losses dropped; D = C/(6N); format '
      'epoch_chinchilla')
  iso = report.to_json()['fits']['N']['isoflop']
  assert iso['n_budgets_used'] >= 5 and iso['bootstrap']['replicates'] == 20
