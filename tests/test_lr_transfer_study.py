"""Study 2's sweeps (experiments/sweeps/lr_transfer.py, hparam_laws.py) as planned: the grid the
README describes, μP's base width identical to SP, and the batch size in the IsoFLOP accounting."""
from experiments.sweeps import hparam_laws, lr_transfer
from lmjax.sweeps import BUDGET_RTOL


def test_the_lr_sweep_is_the_grid_the_readme_describes():
  sweep = lr_transfer.get_sweep()
  assert len(sweep.runs) == 3 * 7 * 2 * 3 == 126
  cells = {(r.overrides['model.parametrization'], r.overrides['model.d_model'],
            r.overrides['optim.lr'], r.seed) for r in sweep.runs}
  assert len(cells) == 126
  assert {r.steps for r in sweep.runs} == {300}
  base = [r for r in sweep.runs if r.overrides['model.d_model'] == 32]
  for sp in (r for r in base if r.overrides['model.parametrization'] == 'sp'):
    mup = next(r for r in base if r.overrides['model.parametrization'] == 'mup'
               and r.overrides['optim.lr'] == sp.overrides['optim.lr'] and r.seed == sp.seed)
    differ = {k for k in set(sp.overrides) | set(mup.overrides)
              if sp.overrides.get(k) != mup.overrides.get(k)}
    assert differ == {'model.parametrization', 'model.mup_base_d_model',
                      'model.mup_base_head_dim'}
    assert (mup.N, mup.C) == (sp.N, sp.C)


def test_the_hparam_grid_keeps_each_budget_while_the_batch_size_changes():
  sweep = hparam_laws.get_sweep()
  assert len(sweep.runs) == 3 * 7 * 5
  for budget in hparam_laws.BUDGETS:
    runs = [r for r in sweep.runs if r.budget == budget]
    assert all(abs(r.C / budget - 1) <= BUDGET_RTOL for r in runs)
    steps = {r.overrides['data.batch_size']: r.steps for r in runs}
    assert steps[1] > steps[16] * 15  # D fixed: 16× the batch, a sixteenth of the steps
