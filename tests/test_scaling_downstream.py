"""Laws from loss to accuracy (lmjax/scaling/downstream.py) on synthetic runs with known
parameters: Gadre et al.'s exponential, Llama 3's sigmoid, and the two-step prediction from
compute, each with bootstrap intervals."""
import numpy as np
import pytest

from lmjax.scaling import downstream
from lmjax.scaling.parametric import FitError


def _noisy(values, sd, seed):
  return values + np.random.default_rng(seed).normal(0, sd, values.shape)


def test_gadre_recovers_its_parameters():
  loss = np.linspace(1.2, 4.0, 30)
  truth = dict(eps=0.75, k=2.0, gamma=0.9)
  err = truth['eps'] - truth['k'] * np.exp(-truth['gamma'] * loss)
  fit = downstream.fit_accuracy('gadre', loss, 1 - _noisy(err, 0.003, 0), bootstrap=200)
  for name, value in truth.items():
    assert fit.params[name] == pytest.approx(value, rel=0.08), name
    s = fit.boot['summary'][name]
    assert s['lo'] <= value <= s['hi'], (name, s)
  # A prediction is an error, inside its interval.
  p = fit.predict({'L': np.array([2.0])})
  assert p['lo'][0] <= p['value'][0] <= p['hi'][0]
  assert p['value'][0] == pytest.approx(0.75 - 2.0 * np.exp(-1.8), abs=0.01)


def test_sigmoid_with_its_floor_at_chance_recovers_its_parameters():
  loss = np.linspace(0.8, 3.5, 40)
  truth = dict(ceiling=0.9, s=3.0, L0=2.0)
  acc = 0.25 + (truth['ceiling'] - 0.25) / (1 + np.exp(truth['s'] * (loss - truth['L0'])))
  fit = downstream.fit_accuracy('sigmoid', loss, _noisy(acc, 0.005, 1), chance=0.25,
                                ceiling=None, bootstrap=200)
  assert fit.params['floor'] == 0.25
  for name, value in truth.items():
    assert fit.params[name] == pytest.approx(value, rel=0.08), name
    s = fit.boot['summary'][name]
    assert s['lo'] <= value <= s['hi'], (name, s)


def test_two_step_predicts_accuracy_at_a_larger_compute_within_its_interval():
  c = np.geomspace(1e12, 1e15, 24)
  loss = 1.2 + 900.0 * c ** -0.25
  acc = 0.25 + 0.65 / (1 + np.exp(3.0 * (loss - 2.0)))
  fit = downstream.two_step(c, _noisy(loss, 0.004, 2), _noisy(acc, 0.005, 3), chance=0.25,
                            ceiling=None, bootstrap=200)
  at = np.array([3e15])
  p = fit.predict(at)
  true_loss = 1.2 + 900.0 * at ** -0.25
  true_acc = 0.25 + 0.65 / (1 + np.exp(3.0 * (true_loss - 2.0)))
  assert p['loss'][0] == pytest.approx(true_loss[0], abs=0.02)
  assert p['lo'][0] <= true_acc[0] <= p['hi'][0]
  assert p['value'][0] == pytest.approx(true_acc[0], abs=0.02)
  assert set(fit.to_json()) == {'loss_of_compute', 'accuracy_of_loss'}


def test_bad_accuracy_data_is_one_line():
  with pytest.raises(FitError, match='accuracies must lie in'):
    downstream.fit_accuracy('sigmoid', [1, 2, 3, 4, 5, 6], [0.2, 0.3, 1.2, 0.5, 0.6, 0.7])
  with pytest.raises(FitError, match="accuracy law 'logistic'"):
    downstream.fit_accuracy('logistic', [1, 2], [0.2, 0.3])
  with pytest.raises(FitError, match='accuracy 1'):
    downstream.fit_accuracy('gadre', [1, 2, 3, 4, 5], [0.2, 0.3, 1.0, 0.5, 0.6])


def _synthetic_runs(n=20):
  c = np.geomspace(1e12, 1e15, n)
  loss = _noisy(1.2 + 900.0 * c ** -0.25, 0.004, 4)
  acc = _noisy(0.25 + 0.65 / (1 + np.exp(3.0 * (loss - 2.0))), 0.005, 5)
  n_params = np.geomspace(1e5, 1e7, n)
  return dict(N=n_params, D=c / (6 * n_params), C=c, loss=loss, acc=acc)


def test_launch_fit_accuracy_writes_the_three_fits_and_refuses_a_missing_column(tmp_path):
  import json
  import os
  import subprocess
  import sys
  runs = _synthetic_runs()
  path = tmp_path / 'runs.csv'
  lines = ['N,D,C,loss,tasks/t/acc,status'] + [
      ','.join(repr(float(runs[k][i])) for k in ('N', 'D', 'C', 'loss', 'acc')) + ',done'
      for i in range(len(runs['N']))]
  path.write_text('\n'.join(lines) + '\n')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  fit = lambda *flags: subprocess.run(
      [sys.executable, '-m', 'launch.fit', f'--runs={path}', '--bootstrap=40', *flags],
      cwd=root, capture_output=True, text=True)
  out = fit('--accuracy=tasks/t/acc', '--chance=0.25', '--predict_c=3e15', f'--out={tmp_path}/o')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'law gadre' in out.stdout and 'law sigmoid' in out.stdout and 'predicted at C' in out.stdout
  saved = json.loads((tmp_path / 'o' / 'downstream.json').read_text())
  assert saved[0]['column'] == 'tasks/t/acc' and saved[0]['runs'] == 20
  assert saved[0]['sigmoid']['params']['floor'] == 0.25
  assert saved[0]['sigmoid']['params']['ceiling'] == 1.0  # fixed unless asked
  p = saved[0]['predictions'][0]
  assert p['lo'] <= p['accuracy'] <= p['hi']
  bad = fit('--accuracy=tasks/nope/acc', f'--out={tmp_path}/bad')
  assert bad.returncode == 2 and not (tmp_path / 'bad').exists()
  assert "--accuracy=tasks/nope/acc: no such column" in bad.stderr.strip().splitlines()[-1]
  assert 'tasks/t/acc' in bad.stderr


def test_a_notebook_fits_and_draws_accuracy_from_a_runs_dataframe():
  import pandas as pd

  from lmjax import analysis
  runs = _synthetic_runs()
  frame = pd.DataFrame({'N': runs['N'], 'D': runs['D'], 'C': runs['C'], 'loss': runs['loss'],
                        'tasks/t/acc': runs['acc'], 'status': 'done'})
  result = analysis.fit_accuracy(frame, 'tasks/t/acc', chance=0.25, predict_c=[3e15],
                                 bootstrap=40)
  assert result['sigmoid'].params['floor'] == 0.25 and len(result['acc']) == 20
  assert result['predictions']['lo'][0] <= result['predictions']['value'][0]
  assert analysis.figures.png(analysis.figures.accuracy(result))[:4] == b'\x89PNG'
  with pytest.raises(analysis.AnalysisError, match="no column 'tasks/x/acc'"):
    analysis.fit_accuracy(frame, 'tasks/x/acc')
