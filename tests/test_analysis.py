"""lmjax.analysis on directories laid out as launch.sweep and launch.train leave them (written
here without training): the runs and curves tables for runs in every state, a branch's curve
that starts with its stable run's, and fits through launch.fit's own call."""
import json

import numpy as np
import pytest

from lmjax import analysis
from lmjax.scaling import fit as scaling_fit
from lmjax.scaling.options import FitOptions
from lmjax.sweeps import collect
from tests.test_sweeps_collect import _sweep_dir, _write, sweep  # noqa: F401 (a fixture)


def _metrics(path, rows):
  _write(path, ''.join(json.dumps(r) + '\n' for r in rows))


def test_a_sweep_loads_every_planned_run_in_its_state(tmp_path, sweep):  # noqa: F811
  d = _sweep_dir(tmp_path, sweep)
  runs = sweep.runs
  stable, branch = runs[3], runs[4]
  assert branch.branch_of == stable.name
  _metrics(d / 'runs' / stable.name / 'metrics.jsonl',
           [dict(step=s, loss=5.0 - s / 100, lr=1e-3, tokens=s * 128) for s in (5, 10, 15)])
  _metrics(d / 'runs' / branch.name / 'metrics.jsonl',
           [dict(step=s, loss=4.5 - s / 100, lr=1e-4, tokens=s * 128)
            for s in range(branch.branch_step + 1, branch.steps + 1, 4)] +
           [dict(step=branch.steps, eval_loss=4.2, eval_bpb=6.0)])
  r = analysis.load(str(d))
  assert r.kind == 'sweep' and list(r.runs['name']) == [x.name for x in runs]
  by = r.runs.set_index('name')
  assert by.loc[runs[0].name, 'status'] == 'done' and by.loc[runs[0].name, 'loss'] == 5.0
  assert by.loc[runs[0].name, 'N'] == runs[0].N
  assert by.loc[runs[0].name, 'model.d_model'] > 0 and 'optim.lr' in r.runs
  assert by.loc[runs[5].name, 'status'] == 'done' and np.isnan(by.loc[runs[5].name, 'loss'])
  assert by.loc[runs[6].name, 'status'] == 'interrupted' and by.loc[runs[6].name, 'step'] == 20
  assert by.loc[runs[7].name, 'status'] == 'failed'
  assert by.loc[runs[8].name, 'status'] == 'pending' and by.loc[runs[8].name, 'planned_N'] > 0
  assert by.loc[stable.name, 'left_out'].startswith('stable phase')
  curve = r.curves[r.curves['name'] == branch.name]
  inherited = curve[curve['inherited']]
  assert list(inherited['step']) == [s for s in (5, 10, 15) if s <= branch.branch_step]
  assert curve['step'].is_monotonic_increasing
  last = curve.iloc[-1]
  assert last['eval_loss'] == 4.2 and last['step'] == branch.steps
  assert last['flops'] == pytest.approx(last['tokens'] * branch.flops_per_token)
  # The table launch.fit fits: the same rows through the DataFrame as through collect.
  t_frame = analysis.fit_table(r.runs)
  t_dir = collect.collect(str(d)).table
  for k in ('N', 'D', 'C', 'loss', 'N_no_emb'):
    assert sorted(getattr(t_frame, k)) == pytest.approx(sorted(getattr(t_dir, k)))


def test_fit_is_launch_fits_call_with_its_options(tmp_path, sweep):  # noqa: F811
  d = _sweep_dir(tmp_path, sweep)
  options = dict(laws=('kaplan_n',), bootstrap=20, kaplan_frontier=False, n_count='N')
  ours = analysis.fit(str(d), **options)
  theirs = scaling_fit.fit_runs(collect.collect(str(d)).table, FitOptions(**options))
  assert ours.text() == theirs.text()
  with pytest.raises(analysis.AnalysisError, match='--law=nope'):
    analysis.fit(str(d), laws=('nope',))
  with pytest.raises(analysis.AnalysisError, match="options are launch.fit's"):
    analysis.fit(str(d), lawz=('kaplan_n',))


def test_a_run_directory_and_a_directory_of_runs(tmp_path):
  run = tmp_path / 'runs' / 'a'
  from lmjax.config import default_config, resolve, to_dict
  _write(run / 'config.json', to_dict(resolve(default_config())))
  _metrics(run / 'metrics.jsonl', [dict(step=1, loss=5.5, tokens=512), dict(step=2, loss=5.0,
                                                                            tokens=1024)])
  (run / 'metrics.jsonl').open('a').write('{"step": 3, "lo')  # a torn line from a live run
  one = analysis.load(str(run))
  row = one.runs.iloc[0]
  assert one.kind == 'run' and row['status'] == 'running or stopped' and row['step'] == 2
  assert row['N'] > row['N_no_emb'] > 0 and row['D'] == 1024  # N from the config
  assert row['C'] == pytest.approx(1024 * row['flops_per_token'])
  assert np.isnan(row['loss'])
  (tmp_path / 'runs' / 'b').mkdir()
  _write(tmp_path / 'runs' / 'b' / 'summary.json', dict(params=10, params_non_embedding=5,
                                                        tokens=100, flops_per_token=60,
                                                        eval_loss=3.0))
  many = analysis.load(str(tmp_path / 'runs'))
  assert many.kind == 'runs' and list(many.runs['name']) == ['a', 'b']
  assert many.runs.set_index('name').loc['b', 'C'] == 6000
  fig = analysis.figures.curves(many.runs, many.curves, x='tokens', y='loss', color='name')
  assert analysis.figures.png(fig)[:8] == b'\x89PNG\r\n\x1a\n'
  for bad in (tmp_path / 'nothing', tmp_path / 'runs' / 'b' / 'summary.json'):
    with pytest.raises(analysis.AnalysisError) as e:
      analysis.load(str(bad))
    assert '\n' not in str(e.value)


def test_hyperparameter_laws_and_lr_shift_from_dataframes():
  import pandas as pd

  from tests.test_scaling_hparams import lr_sweep, synthetic
  t = synthetic()
  # The names analysis.load gives the config's fields.
  runs = pd.DataFrame({'N': t.N, 'D': t.D, 'C': t.C, 'loss': t.loss, 'design': 'hparams',
                       'optim.lr': t.tags['lr'].astype(float),
                       'data.batch_size': t.tags['batch_size'].astype(float),
                       'budget': t.tags['budget'].astype(float)})
  fit = analysis.fit_hparams(runs, bootstrap=20, predict_c=[1e21])
  assert fit.columns == {'lr': 'optim.lr', 'batch_size': 'data.batch_size'}
  assert fit.law('lr').b == pytest.approx(-0.125, abs=0.02)
  assert analysis.figures.png(analysis.figures.hparams(fit))[:4] == b'\x89PNG'  # it draws
  with pytest.raises(analysis.AnalysisError, match='no learning-rate column'):
    analysis.fit_hparams(runs.drop(columns='optim.lr'))
  rows = pd.DataFrame(lr_sweep(-1.0) + lr_sweep(0.0, seed=1)).rename(columns={
      'width': 'model.d_model', 'lr': 'optim.lr', 'parametrization': 'model.parametrization'})
  shifts = analysis.lr_shift(rows, by='model.parametrization', bootstrap=20, boot_seed=3)
  assert shifts['sp'].slope == pytest.approx(-1, abs=0.05)
  assert analysis.figures.png(analysis.figures.lr_shift(shifts))[:4] == b'\x89PNG'
  with pytest.raises(analysis.AnalysisError, match="no 'model.d_model'"):
    analysis.lr_shift(rows.drop(columns='model.d_model'))


def test_learning_curves_give_a_few_model_sizes_one_discrete_colour_each():
  import pandas as pd
  from matplotlib import colors as mcolors
  sizes = {'a': 32, 'b': 64, 'c': 128, 'd': 64}
  runs = pd.DataFrame({'name': list(sizes), 'model.d_model': list(sizes.values())})
  curves = pd.DataFrame([dict(name=n, tokens=t, loss=3.0 - t / 1e4 - sizes[n] / 1e3)
                         for n in sizes for t in (100, 1000, 5000)])
  fig = analysis.figures.curves(runs, curves, x='tokens', y='loss', color='model.d_model')
  ax = fig.axes[0]
  assert len(fig.axes) == 1  # a legend, not a colour bar
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert labels[-3:] == ['model.d_model=32', 'model.d_model=64', 'model.d_model=128']
  by_run = {n: mcolors.to_hex(line.get_color()) for n, line in zip(sizes, ax.lines)}
  assert by_run['b'] == by_run['d'] and len({by_run['a'], by_run['b'], by_run['c']}) == 3
  many = pd.DataFrame({'name': [f'r{i}' for i in range(12)], 'model.d_model': range(1, 13)})
  many_curves = pd.DataFrame([dict(name=f'r{i}', tokens=t, loss=2.0) for i in range(12)
                              for t in (10, 100)])
  fig = analysis.figures.curves(many, many_curves, x='tokens', y='loss', color='model.d_model')
  assert len(fig.axes) == 2  # more than 10 values: a colour scale
