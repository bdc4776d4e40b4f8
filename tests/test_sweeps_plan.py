import copy
import dataclasses
import json
import math

import pytest
from absl import flags
from ml_collections import config_flags

from lmjax import flops, optim
from lmjax.config import default_config, default_d_ff, resolve, to_dict
from lmjax.model import ModelConfig
from lmjax.sweeps import plan

TINY = 'experiments/configs/tiny.py'
RECIPE = plan.Recipe(batch_size=4, seq_len=32, lr=3e-3, warmup_steps=4, warmup_fraction=0.1)


def _error(fn):
  with pytest.raises(plan.PlanError) as e:
    fn()
  message = str(e.value)
  assert '\n' not in message
  return message


@pytest.fixture(scope='module')
def shapes():
  return plan.ladder([4e3, 1.5e4, 5e4], TINY, aspect=24, head_dim=8, seq_len=RECIPE.seq_len)


@pytest.mark.parametrize('preset', ['vaswani', 'llama', 'gpt2'])
def test_ladder_shapes_are_valid_and_near_target(preset):
  base = default_config()
  base.model.preset = preset
  targets = [1e7, 1e8, 1e9]
  for shape in plan.ladder(targets, base, aspect=64, head_dim=64):
    config = copy.deepcopy(base)
    for k, v in shape.overrides().items():
      config.model[k.split('.')[1]] = v
    resolved = resolve(config)  # every shape passes validation
    mcfg = ModelConfig.from_config(resolved.model)
    counts = flops.param_counts(mcfg)
    assert shape.d_model == shape.n_heads * 64 and shape.n_kv_heads == shape.n_heads
    assert shape.d_ff == default_d_ff(shape.d_model, resolved.model.activation)
    assert (shape.n, shape.n_total) == (counts['non_embedding'], counts['total'])
    assert shape.flops_per_token == flops.exact_flops_per_token(mcfg, base.data.seq_len)
    assert abs(shape.n / shape.target - 1) < 0.15
    assert 24 <= shape.d_model / shape.n_layers <= 160  # the aspect rule, within rounding


@pytest.mark.parametrize('preset', ['vaswani', 'llama', 'gpt2'])
def test_ladder_tiny_shapes_and_gqa_for_every_preset(preset):
  base = default_config()
  base.model.preset = preset
  shapes = plan.ladder([4e3, 1.5e4, 5e4], base, aspect=24, head_dim=8, kv_group=2)
  assert [s.n for s in shapes] == sorted(s.n for s in shapes)
  assert all(s.n_heads == 2 * s.n_kv_heads and s.d_model % 16 == 0 for s in shapes)


def test_ladder_errors():
  assert 'same shape' in _error(lambda: plan.ladder([1e7, 1.01e7], TINY))
  assert 'positive' in _error(lambda: plan.ladder([0], TINY))
  # rope needs an even head_dim: the shape fails at plan time, named
  assert 'head_dim' in _error(lambda: plan.ladder(1e4, TINY, head_dim=7))


def test_isoflop_arithmetic_and_names(shapes):
  budgets = [1e9, 2e9]
  runs = plan.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY)
  assert len(runs) == 6 and {r.budget for r in runs} == set(budgets)
  for r in runs:
    assert r.c == r.d * r.flops_per_token                        # C = D × FLOPs per token
    assert r.d == r.steps * RECIPE.batch_size * RECIPE.seq_len   # D = tokens trained
    assert abs(r.c / r.budget - 1) <= plan.BUDGET_RTOL
    resolved = plan.resolve_run(TINY, r)
    assert plan.counts(resolved) == (r.n, r.n_total, r.flops_per_token)
    assert resolved.optim.schedule == 'cosine' and resolved.seed == r.seed == 0
    assert resolved.optim.warmup_steps == min(4, int(0.1 * r.steps))
    assert plan._SAFE.fullmatch(r.name) and r.name.startswith('N') and r.name.endswith('_s0')
  again = plan.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY)
  assert [r.name for r in again] == [r.name for r in runs]      # stable across calls
  assert len({r.name for r in runs}) == len(runs)


def test_run_name_format():
  assert plan.run_name(123456, 4.1e6, 3.0217e12, 0) == 'N1.23e5_D4.1e6_C3.02e12_s0'
  assert plan.run_name(3000, 1e4, 2e9, 1, 'cd0.2') == 'N3e3_D1e4_C2e9_s1_cd0.2'


def test_l_of_n_l_of_d_and_lr_rule(shapes):
  recipe = dataclasses.replace(RECIPE, lr=lambda n: 0.1 / math.sqrt(n))
  runs = plan.l_of_n(shapes, 2e4, recipe=recipe, base_config=TINY, seeds=(0, 1))
  assert len(runs) == 6 and {r.design for r in runs} == {'l_of_n'}
  assert len({r.d for r in runs}) == 1 and {r.seed for r in runs} == {0, 1}
  for r in runs:
    assert r.overrides['optim.lr'] == 0.1 / math.sqrt(r.n)
  ld = plan.l_of_d(shapes[0], [5e3, 1e4, 2e4], recipe=RECIPE, base_config=TINY)
  assert [r.steps for r in ld] == [39, 78, 156] and len({r.n for r in ld}) == 1
  assert all(r.design == 'l_of_d' and r.branch_of is None for r in ld)


def test_cooldown_branches_share_the_stable_schedule(shapes):
  ds = [5e3, 1e4, 2e4]
  runs = plan.grid(shapes[:2], ds, recipe=RECIPE, base_config=TINY, cooldown=0.2)
  stables = [r for r in runs if r.design == 'stable']
  branches = [r for r in runs if r.branch_of]
  assert len(stables) == 2 and len(branches) == 6 and len(runs) == 8
  for stable in stables:
    mine = [b for b in branches if b.branch_of == stable.name]
    assert len(mine) == 3 and len({b.n for b in mine + [stable]}) == 1
    s_cfg = plan.resolve_run(TINY, stable)
    assert s_cfg.optim.schedule == 'constant'
    assert s_cfg.train.steps == max(b.branch_step for b in mine)
    assert s_cfg.checkpoint.keep_steps == tuple(sorted(b.branch_step for b in mine))
    s_lr = optim.schedule(s_cfg.optim, s_cfg.train.steps)
    for b in mine:
      assert b.design == 'grid' and b.name.endswith('_cd0.2')
      assert b.branch_step == b.steps - max(round(b.steps * 0.2), 1)
      b_cfg = plan.resolve_run(TINY, b, sweep_dir='/sweep')
      assert b_cfg.train.init_from == f'/sweep/runs/{stable.name}'
      assert b_cfg.train.init_step == b.branch_step > b_cfg.optim.warmup_steps
      assert (b_cfg.optim.schedule, b_cfg.optim.decay_fraction) == ('wsd', 0.2)
      b_lr = optim.schedule(b_cfg.optim, b_cfg.train.steps)
      for step in range(b.branch_step):
        assert float(b_lr(step)) == float(s_lr(step)), (b.name, step)
      assert float(b_lr(b.steps)) < 0.5 * b_cfg.optim.lr  # and then it decays


def test_cooldown_errors(shapes):
  long_warmup = dataclasses.replace(RECIPE, warmup_steps=100, warmup_fraction=1.0)
  assert 'warmup' in _error(lambda: plan.l_of_d(shapes[0], [1e3, 2e3], recipe=long_warmup,
                                                base_config=TINY, cooldown=0.5))
  assert 'same number of steps' in _error(lambda: plan.l_of_d(
      shapes[0], [1e4, 1.001e4], recipe=RECIPE, base_config=TINY, cooldown=0.2))


def test_compute_saved():
  tps = 64 * 4
  recipe = dataclasses.replace(RECIPE, batch_size=8, seq_len=32, warmup_steps=2)
  runs = plan.l_of_d({'d_model': 16, 'n_layers': 1, 'n_heads': 2}, [40 * tps, 80 * tps],
                     recipe=recipe, base_config=TINY, cooldown=0.25)
  stable, short, long = runs
  assert (stable.steps, short.branch_step, long.branch_step) == (60, 30, 60)
  unit = tps * stable.flops_per_token  # the FLOPs of one step
  out = plan.compute(runs)
  assert out['independent'] == pytest.approx(120 * unit, rel=1e-12)
  assert out['spent'] == pytest.approx((60 + 10 + 20) * unit, rel=1e-12)
  assert out['saved'] == pytest.approx(30 * unit, rel=1e-12)
  assert out['saved_fraction'] == pytest.approx(0.25)
  assert 'not in the plan' in _error(lambda: plan.compute(runs[1:]))


def _parse_flags(config_file, args):
  argv = ['prog', f'--config={config_file}', *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=False,
                                  sys_argv=argv)
  values(argv)
  return resolve(values.config)


def test_flags_parse_back_to_the_resolved_run(shapes):
  runs = plan.grid(shapes[:1], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  runs += plan.isoflop(shapes[:1], [1e9], recipe=RECIPE, base_config=TINY)
  for run in runs:
    parsed = _parse_flags(plan.repo_path(TINY), run.flags())
    assert to_dict(parsed) == to_dict(plan.resolve_run(TINY, run)), run.name
  assert '--config.checkpoint.keep_steps=(31,62)' in runs[0].flags()
  assert plan._flag_value((7,)) == '(7,)' and plan._flag_value(True) == 'true'


def test_json_round_trip_and_fingerprint(shapes):
  runs = plan.grid(shapes[:1], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  sweep = plan.Sweep('s', TINY, runs, notes='n')
  back = plan.Sweep.from_json(json.loads(json.dumps({**sweep.to_json(), 'fingerprint': 'x'})))
  assert back == sweep and back.fingerprint() == sweep.fingerprint()
  assert back.runs[0].overrides['checkpoint.keep_steps'] == (31, 62)
  changed = dataclasses.replace(runs[1], overrides={**runs[1].overrides, 'optim.lr': 1e-3})
  assert plan.Sweep('s', TINY, [runs[0], changed, runs[2]]).fingerprint() != sweep.fingerprint()
  assert plan.Sweep('t', TINY, runs).fingerprint() != sweep.fingerprint()


def test_sweep_checks(shapes):
  runs = plan.l_of_n(shapes, 1e4, recipe=RECIPE, base_config=TINY)
  assert 'appears twice' in _error(lambda: plan.Sweep('s', TINY, runs + runs[:1]))
  assert 'no runs' in _error(lambda: plan.Sweep('s', TINY, ()))
  assert 'only letters' in _error(lambda: plan.Sweep('a b', TINY, runs))
  iso = plan.isoflop(shapes, [1e9, 2e9], recipe=RECIPE, base_config=TINY)
  assert plan.Sweep('s', TINY, iso).budgets == (1e9, 2e9)  # filled from the runs
  family = plan.l_of_d(shapes[0], [5e3, 1e4], recipe=RECIPE, base_config=TINY, cooldown=0.2)
  assert 'not a stable run' in _error(lambda: plan.Sweep('s', TINY, family[1:]))


def _sweep_file(tmp_path, body, name='mine'):
  path = tmp_path / f'{name}.py'
  path.write_text('import dataclasses\nfrom lmjax.sweeps import plan\n'
                  f'TINY = {TINY!r}\n'
                  'RECIPE = plan.Recipe(batch_size=4, seq_len=32, lr=3e-3)\n\n'
                  'def get_sweep():\n' + ''.join(f'  {line}\n' for line in body))
  return str(path)


L_OF_N = ("runs = plan.l_of_n([{'d_model': 16, 'n_layers': 1, 'n_heads': 2}], 1e4, "
          'recipe=RECIPE, base_config=TINY)')


def test_load_sweep(tmp_path):
  good = _sweep_file(tmp_path, [L_OF_N, "return plan.Sweep('mine', TINY, runs)"])
  sweep = plan.load_sweep(good)
  assert sweep.name == 'mine' and len(sweep.runs) == 1


@pytest.mark.parametrize('body, expected', [
    (['raise RuntimeError("boom")'], 'get_sweep() raised RuntimeError: boom'),
    (['return 3'], 'returned int, not a plan.Sweep'),
    (["return plan.Sweep('mine', TINY, ())"], 'sweep mine has no runs'),
    ([L_OF_N,
      "return plan.Sweep('mine', 'experiments/configs/nope.py', runs)"], 'nope.py: no such file'),
])
def test_load_sweep_errors(tmp_path, body, expected):
  path = _sweep_file(tmp_path, body)
  message = _error(lambda: plan.load_sweep(path))
  assert message.startswith(path) and expected in message


def test_invalid_runs_are_named_one_by_one(tmp_path):
  path = _sweep_file(tmp_path, [
      L_OF_N, "bad = dataclasses.replace(runs[0], name='bad', "
      "overrides={**runs[0].overrides, 'model.n_heads': 3})",
      "return plan.Sweep('mine', TINY, [bad, *runs])"])
  sweep = plan.load_sweep(path)  # one bad run does not stop the sweep
  bad = plan.invalid_runs(sweep)
  assert list(bad) == ['bad'] and bad['bad'].startswith('run bad: config.model.n_heads=3')


def test_load_sweep_missing_and_broken_files(tmp_path):
  assert 'no such file' in _error(lambda: plan.load_sweep(str(tmp_path / 'none.py')))
  broken = tmp_path / 'broken.py'
  broken.write_text('import nonexistent_module_xyz\n')
  assert 'importing it raised ModuleNotFoundError' in _error(lambda: plan.load_sweep(str(broken)))
  empty = tmp_path / 'empty.py'
  empty.write_text('x = 1\n')
  assert 'defines no get_sweep()' in _error(lambda: plan.load_sweep(str(empty)))


def test_unknown_override_is_named():
  run = plan.Run('r', {'model.colour': 'red'}, 1, 1, 1, 1.0, 1.0, 0, 'grid')
  assert 'run r: no such config field config.model.colour' in _error(
      lambda: plan.resolve_run(TINY, run))


def test_micro_sweep_is_tiny():
  sweep = plan.load_sweep('micro')
  assert len(sweep.runs) == 9 and sum(r.design == 'stable' for r in sweep.runs) == 3
  for run in sweep.runs:
    config = plan.resolve_run(sweep.base_config, run, plan.SWEEP_DIR)
    assert 16 <= config.model.d_model <= 48 and config.model.n_layers <= 2
    assert config.train.steps <= 100 and config.data.batch_size * config.data.seq_len <= 512
  assert plan.compute(sweep.runs)['saved'] > 0
