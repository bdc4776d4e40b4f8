import json
import math
import os

import numpy as np
import pytest

from lmjax import sweeps
from lmjax.config import to_dict
from lmjax.scaling import isoflop, table
from lmjax.sweeps import collect
from tests.sweeps_testing import RECIPE, TINY, one_line_error, tiny_shapes


@pytest.fixture(scope='module')
def sweep():
  shapes = tiny_shapes()
  runs = sweeps.isoflop(shapes, [2e9], recipe=RECIPE, base_config=TINY)
  runs += sweeps.grid(shapes[:1], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  runs += sweeps.l_of_n(shapes, 1e4, recipe=RECIPE, base_config=TINY)
  return sweeps.Sweep('fake', TINY, runs)


def _write(path, obj):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def _finish(d, run, loss, state='done'):
  """What launch.train and the launcher leave behind for a finished run (no training here)."""
  config = to_dict(sweeps.resolve_run(TINY, run, str(d / 'runs' / (run.branch_of or ''))))
  _write(d / 'runs' / run.name / 'config.json', config)
  _write(d / 'runs' / run.name / 'summary.json', {
      'steps': run.steps, 'tokens': run.D, 'N': run.N,
      'N_no_emb': run.N_no_emb, 'flops_per_token': run.flops_per_token, 'eval_loss': loss,
      'eval_bpb': loss / math.log(2), 'wall_s': 1.0, 'resumed_from': None})
  _write(d / 'status' / f'{run.name}.json',
         {'state': state, 'exit_code': 0, 'log_tail': '', 'attempts': 1})


def _sweep_dir(tmp_path, sweep):
  """isoflop 0-2 done; stable 3 done; branches 4 done, 5 diverged (NaN); l_of_n 6 running,
  7 failed, 8 not started; and an unplanned directory."""
  d = tmp_path / 'sweep'
  _write(d / 'sweep.json', {**sweep.to_json(), 'fingerprint': sweep.fingerprint()})
  runs = sweep.runs
  for i, loss in enumerate([5.0, 4.5, 4.8]):
    _finish(d, runs[i], loss)
  _finish(d, runs[3], 4.0)
  _finish(d, runs[4], 4.2)
  _finish(d, runs[5], float('nan'))
  _write(d / 'runs' / runs[6].name / 'metrics.jsonl',
         ''.join(json.dumps({'step': s, 'loss': 5.0}) + '\n' for s in (10, 20)) + '{"step": 3')
  _write(d / 'status' / f'{runs[6].name}.json', {'state': 'running', 'exit_code': None})
  _write(d / 'status' / f'{runs[7].name}.json',
         {'state': 'failed', 'exit_code': 1, 'log_tail': '', 'attempts': 2})
  _write(d / 'logs' / f'{runs[7].name}.log', 'step 10\nTraceback\nValueError: boom\n\n')
  (d / 'runs' / 'someone_else').mkdir(parents=True)
  return d


def test_table_and_report(tmp_path, sweep):
  d = _sweep_dir(tmp_path, sweep)
  collected = collect.collect(str(d))
  t, report = collected
  assert collected.table is t and collected.report is report
  runs = sweep.runs
  done = [runs[0], runs[1], runs[2], runs[4]]
  assert list(t.tags['name']) == [r.name for r in done]
  np.testing.assert_array_equal(t.N, [r.N for r in done])
  np.testing.assert_array_equal(t.N_no_emb, [r.N_no_emb for r in done])
  np.testing.assert_array_equal(t.D, [r.D for r in done])
  np.testing.assert_array_equal(t.C, [r.D * r.flops_per_token for r in done])
  np.testing.assert_array_equal(t.loss, [5.0, 4.5, 4.8, 4.2])
  assert list(t.tags['design']) == ['isoflop'] * 3 + ['grid']
  assert list(t.tags['schedule']) == ['cosine'] * 3 + ['wsd']
  assert list(t.tags['cooldown_branch']) == ['no'] * 3 + ['yes']
  assert list(t.tags['seed']) == ['0'] * 4
  # What scaling.hparams and lr_transfer read: each run's lr, batch size and width.
  assert list(t.tags['lr']) == ['0.003'] * 4 and list(t.tags['batch_size']) == ['4'] * 4
  assert list(t.tags['d_model']) == [str(r.overrides['model.d_model']) for r in done]
  assert len(set(t.tags['d_model'])) == 3
  assert list(t.tags['budget'])[:3] == ['2000000000.0'] * 3 and t.tags['budget'][3] == 'nan'
  assert len(set(t.tags['config_hash'])) == 4 and t.derived == ()
  assert t.meta['budgets'] == [2e9] and t.meta['budget_rtol'] == sweeps.BUDGET_RTOL
  assert t.source == str(d / 'sweep.json')
  reasons = {r['name']: r['reason'] for r in report}
  assert reasons == {
      runs[3].name: 'stable phase (not a data point)',
      runs[5].name: 'diverged (non-finite loss)',
      runs[6].name: f'running or interrupted (step 20 of {runs[6].steps})',
      runs[7].name: 'failed (exit code 1): ValueError: boom',
      runs[8].name: 'not started',
      'someone_else': 'not in sweep.json'}
  assert len(t) + len(report) == len(runs) + 1  # every run accounted for
  # the budget column is what launch.fit's IsoFLOP fit groups by
  budgets = isoflop.assign_budgets(t)
  assert list(budgets[:3]) == [2e9] * 3 and math.isnan(budgets[3])


def test_failures_from_status(tmp_path, sweep):
  d = _sweep_dir(tmp_path, sweep)
  runs = sweep.runs
  _write(d / 'status' / f'{runs[8].name}.json',
         {'state': 'failed', 'exit_code': 3, 'log_tail': 'the loss was not finite'})
  _write(d / 'status' / f'{runs[7].name}.json',
         {'state': 'failed', 'exit_code': 2, 'log_tail': 'x\nerror: bad config\n'})
  _write(d / 'status' / f'{runs[3].name}.json',
         {'state': 'failed', 'exit_code': 1, 'log_tail': 'oom'})
  (d / 'runs' / runs[3].name / 'summary.json').unlink()
  _write(d / 'status' / f'{runs[6].name}.json', {'state': 'interrupted', 'exit_code': 75})
  _, report = collect.collect(str(d))
  reasons = {r['name']: r['reason'] for r in report}
  assert reasons[runs[6].name] == f'running or interrupted (step 20 of {runs[6].steps})'
  assert reasons[runs[8].name] == 'diverged (non-finite loss)'
  assert reasons[runs[7].name] == 'failed (exit code 2): error: bad config'
  assert reasons[runs[3].name] == 'stable phase (not a data point); failed (exit code 1): oom'


def test_csv_round_trip(tmp_path, sweep):
  t, _ = collect.collect(str(_sweep_dir(tmp_path, sweep)))
  path = collect.write_csv(t, str(tmp_path / 'runs.csv'))
  assert not (tmp_path / 'runs.csv.tmp').exists()
  back = table.load_runs(path)
  for field in ('N', 'N_no_emb', 'D', 'C', 'loss'):
    np.testing.assert_array_equal(getattr(back, field), getattr(t, field))
  assert back.derived == ()
  assert {k: list(v) for k, v in back.tags.items()} == {k: list(v) for k, v in t.tags.items()}
  assert list(isoflop.assign_budgets(back)[:3]) == [2e9] * 3


def _error(fn):
  return one_line_error(fn, collect.CollectError)


def test_errors(tmp_path, sweep):
  assert 'no sweep.json' in _error(lambda: collect.collect(str(tmp_path)))
  _write(tmp_path / 'sweep.json', '{"name": ')
  assert 'not valid JSON' in _error(lambda: collect.collect(str(tmp_path)))
  _write(tmp_path / 'sweep.json', {'name': 'x', 'runs': [{'name': 'a'}]})
  assert "bad sweep JSON (KeyError: 'base_config')" in _error(
      lambda: collect.collect(str(tmp_path)))
  _write(tmp_path / 'sweep.json', {'name': 'x', 'base_config': TINY, 'runs': [{'name': 'a'}]})
  assert "sweep.json: run 'a': bad JSON" in _error(lambda: collect.collect(str(tmp_path)))
  _write(tmp_path / 'sweep.json', sweep.to_json())
  message = _error(lambda: collect.collect(str(tmp_path)))
  assert f'no finished runs among {len(sweep.runs)} planned' in message
  assert 'not started' in message


def test_a_relative_sweep_dir_is_read_as_given(tmp_path, sweep, monkeypatch):
  _sweep_dir(tmp_path, sweep)
  monkeypatch.chdir(tmp_path)
  t, report = collect.collect('sweep')
  assert t.source == 'sweep/sweep.json' and len(t) == 4 and len(report) == 6
  assert not any(name.endswith('.tmp') for _, _, files in os.walk('sweep') for name in files)
