"""The MoE-vs-dense study's plan (experiments/sweeps/moe_vs_dense.py), checked without training:
matched shapes and active FLOPs, the same budgets for every model, seeds on seed 0's schedule,
and the report's groups read from the runs table. The study's machinery (lr sweep, choice,
sweeps, analysis) is the arch-recipes study's, run end to end by tests/test_arch_recipes.py."""
import pandas as pd
import pytest

from experiments.sweeps import moe_vs_dense as plan
from lmjax import sweeps

MULTS = {'dense': 1, 'moe4': 2, 'moe8': 4}


@pytest.fixture(scope='module')
def full():
  scale = plan.SCALES['full']
  return scale, plan.lr_sweep(scale), plan.study_sweep(scale, MULTS)


def test_every_model_has_the_dense_shape_and_its_active_flops(full):
  scale, _, study = full
  by_cell = {}
  for run in study.runs:
    o = run.overrides
    group = plan.GROUPS.of_overrides(o)
    assert run.name.endswith(group)
    assert o['model.moe_experts'] == plan.EXPERTS[group]
    if group != 'dense':
      assert (o['model.moe_top_k'], o['model.moe_router']) == (2, 'mixtral')
      assert 2 * o['model.moe_d_ff'] == o['model.d_ff']  # two experts: the dense MLP's width
    key = (o['model.n_layers'], o['model.d_model'], o['model.n_heads'], run.budget, run.seed,
           run.design)
    by_cell.setdefault(key, {})[group] = run
  assert len({k[:3] for k in by_cell}) == len(scale.targets)
  for key, runs in by_cell.items():
    assert set(runs) == set(plan.GROUPS.names), key  # every model at every cell
    dense = runs['dense']
    for group, run in runs.items():
      # Active FLOPs per token: the dense model's plus the router's (2·d·E per layer, ×3).
      d, layers = key[1], key[0]
      router = 3 * 2 * d * plan.EXPERTS[group] * layers
      assert run.flops_per_token == pytest.approx(dense.flops_per_token + router)
      assert abs(run.D / dense.D - 1) < 0.1 and abs(run.C / dense.C - 1) < 0.1
      if group != 'dense':
        assert run.N_no_emb > dense.N_no_emb  # every expert counted


def test_models_train_at_their_own_lr_and_seeds_share_seed_0s_schedule(full):
  scale, lr_sweep, study = full
  assert {plan.GROUPS.of_overrides(r.overrides) for r in lr_sweep.runs} == set(plan.EXPERTS)
  assert len(lr_sweep.runs) == len(plan.EXPERTS) * len(scale.lr_grid)
  by_name = {r.name: r for r in study.runs}
  for run in study.runs:
    group = plan.GROUPS.of_overrides(run.overrides)
    assert run.overrides['optim.lr'] == pytest.approx(
        MULTS[group] * plan.arch.kaplan_lr(run.N_no_emb))
  seeded = [r for r in study.runs if r.seed > 0 and r.design != 'stable']
  assert len(seeded) == len(plan.EXPERTS) * len(scale.seed_targets) * 2 * len(scale.seeds)
  for run in seeded:
    twin = by_name[run.name.replace(f'_s{run.seed}_', '_s0_')]
    assert run.branch_step == twin.branch_step and run.budget == twin.budget
  cost = sweeps.compute(study.runs)
  assert cost['spent'] < 5e13  # about the arch-recipes study's compute


def test_groups_are_read_from_the_runs_table():
  frame = pd.DataFrame({'model.moe_experts': [0, 4, 8, 4]})
  assert list(plan.GROUPS.of_frame(frame)) == ['dense', 'moe4', 'moe8', 'moe4']
  with pytest.raises(sweeps.PlanError, match='no learning rate chosen for moe8'):
    plan.study_sweep(plan.SCALES['mini'], {'dense': 1, 'moe4': 1})
