import json

from absl import flags
from ml_collections import config_flags

from lmjax import sweeps
from lmjax.config import resolve, to_dict
from lmjax.sweeps import runs as runs_lib
from tests.sweeps_testing import RECIPE, TINY, one_line_error


def test_run_name_format():
  assert sweeps.run_name(123456, 4.1e6, 3.0217e12, 0) == 'N1.23e5_D4.1e6_C3.02e12_s0'
  assert sweeps.run_name(3000, 1e4, 2e9, 1, 'cd0.2') == 'N3e3_D1e4_C2e9_s1_cd0.2'


def _parse_flags(config_file, args):
  argv = ['prog', f'--config={config_file}', *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=False,
                                  sys_argv=argv)
  values(argv)
  return resolve(values.config)


def test_flags_parse_back_to_the_resolved_run():
  shape = sweeps.ladder([4e3], TINY, aspect=24, head_dim=8, seq_len=RECIPE.seq_len)
  runs = sweeps.grid(shape, [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  runs += sweeps.isoflop(shape, [1e9], recipe=RECIPE, base_config=TINY)
  for run in runs:
    parsed = _parse_flags(sweeps.repo_path(TINY), run.flags())
    assert to_dict(parsed) == to_dict(sweeps.resolve_run(TINY, run)), run.name
  assert '--config.checkpoint.keep_steps=(31,62)' in runs[0].flags()
  assert runs_lib.flag_value((7,)) == '(7,)' and runs_lib.flag_value(True) == 'true'


def test_run_checks_and_json_round_trip():
  run = sweeps.Run('r', {'train.steps': 8, 'checkpoint.keep_steps': (4,)}, 1, 2, 3, 4.0, 5.0, 0,
                   'grid')
  back = sweeps.Run.from_json(json.loads(json.dumps(run.to_json())))
  assert back == run and back.steps == 8
  assert 'only letters' in one_line_error(lambda: sweeps.Run('a/b', {}, 1, 1, 1, 1.0, 1.0, 0, 'grid'))
  assert 'is not one of' in one_line_error(lambda: sweeps.Run('r', {}, 1, 1, 1, 1.0, 1.0, 0, 'other'))
  assert 'go together' in one_line_error(
      lambda: sweeps.Run('r', {}, 1, 1, 1, 1.0, 1.0, 0, 'grid', branch_of='s'))
  assert "run 'r': bad JSON" in one_line_error(lambda: sweeps.Run.from_json({'name': 'r'}))


def test_recipe_rules():
  recipe = sweeps.Recipe(batch_size=4, seq_len=32, lr=lambda n: 1 / n, warmup_steps=10,
                         warmup_fraction=0.1)
  assert recipe.tokens_per_step == 128
  assert (recipe.warmup(50), recipe.warmup(1000)) == (5, 10)
  assert recipe.peak_lr(4) == 0.25
  assert 'positive number' in one_line_error(lambda: sweeps.Recipe(4, 32, lr=-1.0).peak_lr(10))
