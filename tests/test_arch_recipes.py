"""The arch-recipes study (experiments/arch_recipes.py, experiments/sweeps/arch_recipes.py): the
full plan checked without training, and a miniature study run end to end through the same
command (lr sweep, choice, study sweep, analysis, figures)."""
import json
import math
import os
import subprocess
import sys

import pytest

from experiments.sweeps import arch_recipes as plan
from lmjax import sweeps
from lmjax.train import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def full():
  scale = plan.SCALES['full']
  return scale, plan.lr_sweep(scale), plan.study_sweep(scale, {'vaswani': 0.5, 'gpt2': 1,
                                                               'llama': 2})


def test_presets_are_matched_in_shape_and_non_embedding_parameters(full):
  scale, _, study = full
  by_shape = {}
  for run in study.runs:
    o = run.overrides
    key = (o['model.n_layers'], o['model.d_model'], o['model.n_heads'])
    by_shape.setdefault(key, {})[o['model.preset']] = run.N_no_emb
  assert len(by_shape) == len(scale.targets)
  for key, ns in by_shape.items():
    assert set(ns) == set(plan.PRESETS), key
    assert max(ns.values()) / min(ns.values()) < 1.06, (key, ns)  # biases and norms only


def test_the_study_trains_each_preset_at_its_chosen_lr_and_seeds_share_seed_0s_schedule(full):
  scale, _, study = full
  mults = {'vaswani': 0.5, 'gpt2': 1, 'llama': 2}
  by_name = {r.name: r for r in study.runs}
  assert len(by_name) == len(study.runs)
  for run in study.runs:
    p = run.overrides['model.preset']
    assert run.name.endswith(p)
    assert run.overrides['optim.lr'] == pytest.approx(mults[p] * plan.kaplan_lr(run.N_no_emb))
  schedule = ('train.steps', 'optim.warmup_steps', 'optim.lr', 'optim.schedule', 'model.d_ff')
  seeded = [r for r in study.runs if r.seed > 0 and r.design != 'stable']
  assert len(seeded) == len(plan.PRESETS) * len(scale.seed_targets) * 2 * len(scale.seeds)
  for run in seeded:
    twin = by_name[run.name.replace(f'_s{run.seed}_', '_s0_')]
    assert [run.overrides[k] for k in schedule] == [twin.overrides[k] for k in schedule]
    assert run.branch_step == twin.branch_step and run.budget == twin.budget
  cost = sweeps.compute(study.runs)
  assert 0.1 < cost['saved_fraction'] and cost['spent'] < 5e13  # the study's 45-minute budget


def test_lr_choice_takes_the_lowest_finite_loss_and_flags_the_grid_edge(full):
  from experiments import arch_recipes_report as report
  _, lr_sweep, _ = full
  rows = [dict(preset=r.overrides['model.preset'], mult=float(r.name.rsplit('_lr', 1)[1]),
               lr=r.overrides['optim.lr'], loss=1.0 + abs(math.log2(
                   float(r.name.rsplit('_lr', 1)[1]))), state='done') for r in lr_sweep.runs]
  for r in rows:
    if r['preset'] == 'llama' and r['mult'] <= 1:
      r['loss'], r['state'] = math.inf, 'diverged'  # llama: best at 2, the lowest lr diverged
  assert plan.choose_multipliers(rows) == {'vaswani': 1.0, 'gpt2': 1.0, 'llama': 2.0}
  table = report.lr_table(rows)
  assert [r['mult'] for r in table if r['chosen']] == [1.0, 1.0, 2.0]
  assert not any(r['edge'] for r in table)
  for r in rows:
    if r['preset'] == 'gpt2':
      r['loss'] = 1.0 / r['mult']  # best at the highest lr of the grid
  assert [r['mult'] for r in report.lr_table(rows) if r['edge']] == [8.0]
  for r in rows:
    if r['preset'] == 'vaswani':
      r['loss'], r['state'] = math.inf, 'diverged'
  with pytest.raises(sweeps.PlanError, match='every run of vaswani diverged'):
    plan.choose_multipliers(rows)


def test_a_study_sweep_without_the_lr_sweep_names_what_to_run(tmp_path):
  scale = plan.SCALES['mini']
  with pytest.raises(sweeps.PlanError, match='lr sweep') as e:
    plan.lr_results(str(tmp_path / 'lr'), plan.lr_sweep(scale))
  assert '\n' not in str(e.value)


def test_launch_sweep_plans_the_study_as_its_sweep_file_says(tmp_path):
  # `launch.sweep --sweep=arch_recipes`, run where no lr sweep has run: the plan takes the lr
  # choices of the published study (its results.json) and says so; the dry run writes nothing.
  sweep_file = os.path.join(ROOT, 'experiments', 'sweeps', 'arch_recipes.py')
  out = subprocess.run([sys.executable, '-m', 'launch.sweep', f'--sweep={sweep_file}',
                        f'--workdir={tmp_path}/study', '--dry_run'], cwd=tmp_path,
                       env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert lines[0].startswith('sweep arch_recipes: 81 runs (24 stable phases')
  assert 'chosen by the published study' in lines[1] and 'llama 2' in lines[1]
  assert sum(line.endswith('_llama') for line in lines[2:]) == 27
  assert sorted(os.listdir(tmp_path)) == []
  assert plan.published_multipliers() == {'vaswani': 2.0, 'gpt2': 4.0, 'llama': 2.0}


def _study(workdir, *flags):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-m', 'experiments.arch_recipes', '--scale=mini',
                         f'--workdir={workdir}', '--bootstrap=60', *flags], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=1500)


def test_the_miniature_study_runs_end_to_end_and_a_rerun_only_analyses(tmp_path):
  workdir = tmp_path / 'study'
  out = _study(workdir)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert 'learning rates: vaswani' in out.stdout
  results = workdir / 'results'
  res = json.loads((results / 'results.json').read_text())
  assert res['runs'] == 15  # 3 presets x (3 budgets + 2 budgets of seed 1), one size
  assert {r['preset'] for r in res['lr'] if r['chosen']} == set(plan.PRESETS)
  assert {r['preset'] for r in res['seeds']} == set(plan.PRESETS)
  for r in res['seeds']:
    assert r['seeds'] == 2 and r['min'] <= r['mean'] <= r['max'] and r['sd'] >= 0
  assert len(res['differences']) == 2 * 2 and math.isfinite(res['pooled_sd'])
  assert set(res['multipliers']) == {'llama', 'gpt2'}
  for p, m in res['multipliers'].items():
    assert m['bootstrap']['replicates'] == 60
    for row in m['at']:
      assert row['m'] == pytest.approx(row['c_b'] / row['c_a'])
      assert row['lo'] <= row['hi']
  text = (results / 'results.md').read_text()
  assert '| llama |' in text and 'Pooled seed sd' in text
  saved = json.loads((results / 'results.json').read_text())
  assert [m['runs'] for m in saved['machines']] == [saved['runs']]  # lmjax/train/machine.py
  assert text.startswith(f'Ran on: {machine.cpu_model()} ({machine.cpu_isa() or "?"}, jaxlib ')
  for name in ('loss_vs_compute', 'seeds', 'lr_sweep', 'multiplier_llama', 'multiplier_gpt2'):
    assert (results / f'{name}.png').read_bytes()[:4] == b'\x89PNG'
  # The same command again: every run is done, the analysis alone gives the same numbers.
  again = _study(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'done already' in again.stdout and 'starting' not in again.stdout
  assert json.loads((results / 'results.json').read_text()) == res


def test_bad_flags_exit_2_in_one_line(tmp_path):
  out = _study(tmp_path, '--bootstrap=1')
  assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith('error: ')
  assert '--bootstrap=1' in out.stderr and not (tmp_path / 'lr').exists()
