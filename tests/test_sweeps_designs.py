import dataclasses
import math

import numpy as np
import pytest

from lmjax import sweeps
from lmjax.sweeps import runs as runs_lib
from lmjax.train import optim
from tests.sweeps_testing import RECIPE, TINY, one_line_error, tiny_shapes


@pytest.fixture(scope='module')
def shapes():
  return tiny_shapes()


def test_isoflop_arithmetic_and_names(shapes):
  budgets = [1e9, 2e9]
  runs = sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY)
  assert len(runs) == 6 and {r.budget for r in runs} == set(budgets)
  for r in runs:
    assert r.C == r.D * r.flops_per_token                        # C = D × FLOPs per token
    assert r.D == r.steps * RECIPE.batch_size * RECIPE.seq_len   # D = tokens trained
    assert abs(r.C / r.budget - 1) <= sweeps.BUDGET_RTOL
    resolved = sweeps.resolve_run(TINY, r)
    assert sweeps.counts(resolved)[:3] == (r.N, r.N_no_emb, r.flops_per_token)
    assert resolved.optim.schedule == 'cosine' and resolved.seed == r.seed == 0
    assert resolved.optim.warmup_steps == min(4, int(0.1 * r.steps))
    assert runs_lib.SAFE_NAME.fullmatch(r.name) and r.name.startswith('N')
    assert r.name.endswith('_s0')
  again = sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY)
  assert [r.name for r in again] == [r.name for r in runs]      # stable across calls
  assert len({r.name for r in runs}) == len(runs)


def test_l_of_n_l_of_d_and_lr_rule(shapes):
  recipe = dataclasses.replace(RECIPE, lr=lambda n: 0.1 / math.sqrt(n))
  runs = sweeps.l_of_n(shapes, 2e4, recipe=recipe, base_config=TINY, seeds=(0, 1))
  assert len(runs) == 6 and {r.design for r in runs} == {'l_of_n'}
  assert len({r.D for r in runs}) == 1 and {r.seed for r in runs} == {0, 1}
  for r in runs:
    assert r.overrides['optim.lr'] == 0.1 / math.sqrt(r.N_no_emb)
  ld = sweeps.l_of_d(shapes[0], [5e3, 1e4, 2e4], recipe=RECIPE, base_config=TINY)
  assert [r.steps for r in ld] == [39, 78, 156] and len({r.N_no_emb for r in ld}) == 1
  assert all(r.design == 'l_of_d' and r.branch_of is None for r in ld)


def test_cooldown_branches_share_the_stable_schedule(shapes):
  ds = [5e3, 1e4, 2e4]
  runs = sweeps.grid(shapes[:2], ds, recipe=RECIPE, base_config=TINY, cooldown=0.2)
  stables = [r for r in runs if r.design == 'stable']
  branches = [r for r in runs if r.branch_of]
  assert len(stables) == 2 and len(branches) == 6 and len(runs) == 8
  for stable in stables:
    mine = [b for b in branches if b.branch_of == stable.name]
    assert len(mine) == 3 and len({b.N_no_emb for b in mine + [stable]}) == 1
    s_cfg = sweeps.resolve_run(TINY, stable)
    assert s_cfg.optim.schedule == 'constant'
    assert s_cfg.train.steps == max(b.branch_step for b in mine)
    assert s_cfg.checkpoint.keep_steps == tuple(sorted(b.branch_step for b in mine))
    s_lr = optim.schedule(s_cfg.optim, s_cfg.train.steps)
    for b in mine:
      assert b.design == 'grid' and b.name.endswith('_cd0.2')
      assert b.branch_step == b.steps - max(round(b.steps * 0.2), 1)
      b_cfg = sweeps.resolve_run(TINY, b, f'/sweep/runs/{stable.name}')
      assert b_cfg.train.init_from == f'/sweep/runs/{stable.name}'
      assert b_cfg.train.init_step == b.branch_step > b_cfg.optim.warmup_steps
      assert (b_cfg.optim.schedule, b_cfg.optim.decay_fraction) == ('wsd', 0.2)
      b_lr = optim.schedule(b_cfg.optim, b_cfg.train.steps)
      for step in range(b.branch_step):
        assert float(b_lr(step)) == float(s_lr(step)), (b.name, step)
      assert float(b_lr(b.steps)) < 0.5 * b_cfg.optim.lr  # and then it decays


def test_cooldown_errors(shapes):
  long_warmup = dataclasses.replace(RECIPE, warmup_steps=100, warmup_fraction=1.0)
  assert 'warmup' in one_line_error(lambda: sweeps.l_of_d(shapes[0], [1e3, 2e3], recipe=long_warmup,
                                                  base_config=TINY, cooldown=0.5))
  assert 'same number of steps' in one_line_error(lambda: sweeps.l_of_d(
      shapes[0], [1e4, 1.001e4], recipe=RECIPE, base_config=TINY, cooldown=0.2))


def test_compute_saved():
  tps = 64 * 4
  recipe = dataclasses.replace(RECIPE, batch_size=8, seq_len=32, warmup_steps=2)
  runs = sweeps.l_of_d({'d_model': 16, 'n_layers': 1, 'n_heads': 2}, [40 * tps, 80 * tps],
                       recipe=recipe, base_config=TINY, cooldown=0.25)
  stable, short, long = runs
  assert (stable.steps, short.branch_step, long.branch_step) == (60, 30, 60)
  unit = tps * stable.flops_per_token  # the FLOPs of one step
  out = sweeps.compute(runs)
  assert out['independent'] == pytest.approx(120 * unit, rel=1e-12)
  assert out['spent'] == pytest.approx((60 + 10 + 20) * unit, rel=1e-12)
  assert out['saved'] == pytest.approx(30 * unit, rel=1e-12)
  assert out['saved_fraction'] == pytest.approx(0.25)
  assert 'not in the plan' in one_line_error(lambda: sweeps.compute(runs[1:]))


def test_isoflop_leaves_out_budgets_past_max_tokens_per_param(shapes):
  budgets = [1e9, 2e9, 4e9]
  every = sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY)
  ratio = {(r.N_no_emb, r.budget): r.budget / r.flops_per_token / r.N for r in every}
  cap = ratio[min(r.N_no_emb for r in every), budgets[0]]  # the smallest shape keeps one budget
  capped = sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY,
                          max_tokens_per_param=cap)
  assert {(r.N_no_emb, r.budget) for r in capped} == {k for k, v in ratio.items() if v <= cap}
  assert 0 < len(capped) < len(every)
  branched = sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY, cooldown=0.2,
                            max_tokens_per_param=cap)
  assert {(r.N_no_emb, r.budget) for r in branched if r.design == 'isoflop'} == {
      (r.N_no_emb, r.budget) for r in capped}
  with pytest.raises(sweeps.PlanError, match='max_tokens_per_param'):
    sweeps.isoflop(shapes, budgets, recipe=RECIPE, base_config=TINY, max_tokens_per_param=1e-9)


def test_hparams_grid_at_each_budget(shapes):
  budgets, lrs, batch_sizes = [1e9, 2e9], [1e-3, 3e-3, 1e-2], [4, 8]
  runs = sweeps.hparams(shapes[1], budgets, lrs, batch_sizes, recipe=RECIPE, base_config=TINY,
                        seeds=(0, 1))
  assert len(runs) == 2 * 3 * 2 * 2 and len({r.name for r in runs}) == len(runs)
  assert {r.design for r in runs} == {'hparams'} and {r.budget for r in runs} == set(budgets)
  for r in runs:
    b, lr = r.overrides['data.batch_size'], r.overrides['optim.lr']
    assert (lr in lrs and b in batch_sizes and r.name.endswith(f'_lr{lr:.0e}_B{b}'.replace(
        'e-0', 'e-')))
    assert abs(r.C / r.budget - 1) <= sweeps.BUDGET_RTOL
    assert r.D == r.steps * b * RECIPE.seq_len
    assert r.overrides['optim.warmup_steps'] == RECIPE.warmup(r.steps)
  steps = {(r.budget, r.overrides['data.batch_size']): r.steps for r in runs}
  assert steps[1e9, 8] == round(steps[1e9, 4] / 2) and steps[2e9, 4] == 2 * steps[1e9, 4]
  resolved = sweeps.resolve_run(TINY, runs[-1])
  assert (resolved.optim.lr, resolved.data.batch_size) == (1e-2, 8)
  per_budget = sweeps.hparams({2e9: shapes[2], 1e9: shapes[0]}, budgets, [1e-3], [4],
                              recipe=RECIPE, base_config=TINY, tag='x')
  assert [r.N_no_emb for r in per_budget] == [
      r.N_no_emb for r in sweeps.l_of_n(shapes[::2], 1e4, recipe=RECIPE, base_config=TINY)]
  assert all(r.name.endswith('_B4_x') for r in per_budget)
  assert '2 shapes for 3 budgets' in one_line_error(lambda: sweeps.hparams(
      shapes[:2], [1e9, 2e9, 4e9], lrs, [4], recipe=RECIPE, base_config=TINY))
  assert 'batch_sizes [4, 0.5]' in one_line_error(lambda: sweeps.hparams(
      shapes[0], budgets, lrs, [4, 0.5], recipe=RECIPE, base_config=TINY))
  assert 'less than one step' in one_line_error(lambda: sweeps.hparams(
      shapes[0], [1e6], lrs, [4], recipe=RECIPE, base_config=TINY))


def test_fitted_lr_from_launch_fits_json_sets_each_runs_lr(shapes, tmp_path):
  from lmjax.scaling import fit as scaling_fit
  from lmjax.scaling import table
  from lmjax.scaling.options import FitOptions
  rows = {k: [] for k in ('N', 'D', 'C', 'loss', 'lr', 'budget')}
  for c in (1e8, 1e9, 1e10):  # lr* = 0.3·C^-0.125 exactly, on a grid around it
    eta = 0.3 * c ** -0.125
    for lr in eta * 2.0 ** np.arange(-2.3, 2.5):
      for k, v in zip(rows, (1e4, c / 6e4, c, 3 + 0.05 * np.log2(lr / eta) ** 2, lr, c)):
        rows[k].append(v)
  report = scaling_fit.fit_runs(table.from_columns(rows), FitOptions(laws=('hparams',),
                                                                     bootstrap=0))
  scaling_fit.write_report(report, str(tmp_path / 'fits'), plots=False)
  law = sweeps.fitted_lr(str(tmp_path / 'fits'))
  assert (law.a, law.b, law.against) == (pytest.approx(0.3), pytest.approx(-0.125), 'C')
  recipe = dataclasses.replace(RECIPE, lr=law)
  for run in sweeps.isoflop(shapes, [1e9, 2e9], recipe=recipe, base_config=TINY):
    assert run.overrides['optim.lr'] == pytest.approx(0.3 * run.C ** -0.125, rel=1e-9)
  by_n = dataclasses.replace(RECIPE, lr=sweeps.FittedLr(1e-2, -0.5, 'N_no_emb'))
  run = sweeps.l_of_n(shapes[:1], 1e4, recipe=by_n, base_config=TINY)[0]
  assert run.overrides['optim.lr'] == pytest.approx(1e-2 / math.sqrt(run.N_no_emb))
  assert 'no such file' in one_line_error(lambda: sweeps.fitted_lr(str(tmp_path)))
  assert 'no lr law against N (N takes one value across the budgets)' in one_line_error(
      lambda: sweeps.fitted_lr(str(tmp_path / 'fits'), against='N'))
  assert 'no hparams fit with N counted as N_no_emb' in one_line_error(
      lambda: sweeps.fitted_lr(str(tmp_path / 'fits'), against='N_no_emb'))
  assert "against='E'" in one_line_error(lambda: sweeps.FittedLr(1.0, 1.0, 'E'))
