import dataclasses
import json

import pytest

from lmjax import sweeps
from lmjax.sweeps.sweepdir import SweepDir
from tests.sweeps_testing import RECIPE, TINY, one_line_error, tiny_shapes


@pytest.fixture(scope='module')
def shapes():
  return tiny_shapes()


def test_json_round_trip_and_fingerprint(shapes):
  runs = sweeps.grid(shapes[:1], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  sweep = sweeps.Sweep('s', TINY, runs, notes='n')
  back = sweeps.Sweep.from_json(json.loads(json.dumps({**sweep.to_json(), 'fingerprint': 'x'})))
  assert back == sweep and back.fingerprint() == sweep.fingerprint()
  assert back.runs[0].overrides['checkpoint.keep_steps'] == (31, 62)
  changed = dataclasses.replace(runs[1], overrides={**runs[1].overrides, 'optim.lr': 1e-3})
  assert sweeps.Sweep('s', TINY, [runs[0], changed, runs[2]]).fingerprint() != (
      sweep.fingerprint())
  assert sweeps.Sweep('t', TINY, runs).fingerprint() != sweep.fingerprint()


def test_sweep_checks(shapes):
  runs = sweeps.l_of_n(shapes, 1e4, recipe=RECIPE, base_config=TINY)
  assert 'appears twice' in one_line_error(lambda: sweeps.Sweep('s', TINY, runs + runs[:1]))
  assert 'no runs' in one_line_error(lambda: sweeps.Sweep('s', TINY, ()))
  assert 'only letters' in one_line_error(lambda: sweeps.Sweep('a b', TINY, runs))
  iso = sweeps.isoflop(shapes, [1e9, 2e9], recipe=RECIPE, base_config=TINY)
  assert sweeps.Sweep('s', TINY, iso).budgets == (1e9, 2e9)  # filled from the runs
  family = sweeps.l_of_d(shapes[0], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  assert 'not a stable run' in one_line_error(lambda: sweeps.Sweep('s', TINY, family[1:]))


def _sweep_file(tmp_path, body, name='mine'):
  path = tmp_path / f'{name}.py'
  path.write_text('import dataclasses\nfrom lmjax import sweeps\n'
                  f'TINY = {TINY!r}\n'
                  'RECIPE = sweeps.Recipe(batch_size=4, seq_len=32, lr=3e-3)\n\n'
                  'def get_sweep():\n' + ''.join(f'  {line}\n' for line in body))
  return str(path)


L_OF_N = ("runs = sweeps.l_of_n([{'d_model': 16, 'n_layers': 1, 'n_heads': 2}], 1e4, "
          'recipe=RECIPE, base_config=TINY)')


def test_load_sweep(tmp_path):
  good = _sweep_file(tmp_path, [L_OF_N, "return sweeps.Sweep('mine', TINY, runs)"])
  sweep = sweeps.load_sweep(good)
  assert sweep.name == 'mine' and len(sweep.runs) == 1


@pytest.mark.parametrize('body, expected', [
    (['raise RuntimeError("boom")'], 'get_sweep() raised RuntimeError: boom'),
    (['return 3'], 'returned int, not a sweeps.Sweep'),
    (["return sweeps.Sweep('mine', TINY, ())"], 'sweep mine has no runs'),
    ([L_OF_N,
      "return sweeps.Sweep('mine', 'experiments/configs/nope.py', runs)"],
     'nope.py: no such file'),
])
def test_load_sweep_errors(tmp_path, body, expected):
  path = _sweep_file(tmp_path, body)
  message = one_line_error(lambda: sweeps.load_sweep(path))
  assert message.startswith(path) and expected in message


def test_invalid_runs_are_named_one_by_one(tmp_path):
  path = _sweep_file(tmp_path, [
      L_OF_N, "bad = dataclasses.replace(runs[0], name='bad', "
      "overrides={**runs[0].overrides, 'model.n_heads': 3})",
      "return sweeps.Sweep('mine', TINY, [bad, *runs])"])
  sweep = sweeps.load_sweep(path)  # one bad run does not stop the sweep
  bad = SweepDir.open(str(tmp_path / 'dir'), sweep, create=False).invalid_runs()
  assert list(bad) == ['bad'] and bad['bad'].startswith('run bad: config.model.n_heads=3')


def test_load_sweep_missing_and_broken_files(tmp_path):
  assert 'no such file' in one_line_error(lambda: sweeps.load_sweep(str(tmp_path / 'none.py')))
  broken = tmp_path / 'broken.py'
  broken.write_text('import nonexistent_module_xyz\n')
  assert 'importing it raised ModuleNotFoundError' in one_line_error(
      lambda: sweeps.load_sweep(str(broken)))
  empty = tmp_path / 'empty.py'
  empty.write_text('x = 1\n')
  assert 'defines no get_sweep()' in one_line_error(lambda: sweeps.load_sweep(str(empty)))


def test_sweep_path():
  assert sweeps.sweep_path('micro') == 'experiments/sweeps/micro.py'
  assert sweeps.sweep_path('a/b.py') == 'a/b.py' and sweeps.sweep_path('b.py') == 'b.py'


def test_micro_sweep_is_tiny():
  sweep = sweeps.load_sweep('micro')
  assert len(sweep.runs) == 9 and sum(r.design == 'stable' for r in sweep.runs) == 3
  for run in sweep.runs:
    config = sweeps.resolve_run(sweep.base_config, run, '/parent')
    assert 16 <= config.model.d_model <= 48 and config.model.n_layers <= 2
    assert config.train.steps <= 100 and config.data.batch_size * config.data.seq_len <= 512
  assert sweeps.compute(sweep.runs)['saved'] > 0
