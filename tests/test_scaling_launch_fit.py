"""python -m launch.fit, run as a subprocess like a user would."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import laws

pytestmark = pytest.mark.slow  # launch.fit in subprocesses, as a user runs it

ROOT = Path(__file__).resolve().parents[1]
SCALING = ROOT / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3


def _fit(*args):
  return subprocess.run([sys.executable, '-m', 'launch.fit', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def _synthetic_csv(path):
  """IsoFLOP runs from Chinchilla's law, with a non-embedding count and a tag."""
  rng = np.random.default_rng(0)
  lines = ['N,N_no_emb,D,loss,config']
  for ci in np.geomspace(1e18, 1e21, 5):
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    for n in n_opt * np.exp(np.linspace(-1.0, 1.0, 7)):
      d = ci / (6 * n)
      loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.003 * rng.standard_normal())
      lines.append(f'{n:.6g},{0.8 * n:.6g},{d:.6g},{loss:.6f},c{ci:.0e}')
  path.write_text('\n'.join(lines) + '\n')
  return str(path)


def test_fits_prints_and_writes(tmp_path):
  out = tmp_path / 'out'
  r = _fit(f'--runs={_synthetic_csv(tmp_path / "runs.csv")}', '--bootstrap=20',
           '--starts=coarse', f'--out={out}', '--predict_c=1e22')
  assert r.returncode == 0, r.stderr
  assert 'chinchilla' in r.stdout and 'N counted as N_no_emb' in r.stdout
  doc = json.loads((out / 'fits.json').read_text())
  assert set(doc['fits']) == {'N', 'N_no_emb'}
  chin = doc['fits']['N']['chinchilla']
  assert chin['params']['alpha'] == pytest.approx(0.34, abs=0.05)
  assert chin['convergence']['converged'] and chin['bootstrap']['replicates'] == 20
  assert chin['predictions']['compute_optimal'][0]['c'] == 1e22
  assert doc['fits']['N']['isoflop']['n_budgets_used'] == 5
  assert set(doc['plots']) <= {p.name for p in out.iterdir()}
  assert {'chinchilla.png', 'isoflop.png', 'frontier.png', 'loss_vs_c.png',
          'frontier_no_emb.png'} <= set(doc['plots'])
  assert not [p for p in out.iterdir() if p.name.startswith('.fit-')]  # no temp dir left


@pytest.mark.parametrize('body, args, expect', [
    ('N,D,loss\n', [], 'no rows'),
    ('N,D,loss\n1e8,1e9,nan\n2e8,1e9,3\n', [], 'row 1 (line 2): loss = nan'),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--law=chinchilla'], '1 run(s) for 5 parameters'),
    ('N,loss\n1e8,3.0\n', [], 'needs a tokens column D'),
    ('N,D,val\n1e8,1e9,3.0\n', [], 'no loss column'),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--law=kaplan_x'], '--law=kaplan_x: allowed'),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--bootstrap=-1'], '--bootstrap=-1'),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--columns=n=size'], "no column 'size'"),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--where=run=a'], "no tag column 'run'"),
    ('N,D,loss\n1e8,1e9,3.0\n', ['--law=hparams'], 'no learning-rate column (looked for lr'),
    ('N,D,loss,lr,budget\n' + ''.join(f'1e8,1e9,{3 + (i - 2) ** 2 / 100},{10 ** (i - 4)},6e17\n'
                                      for i in range(5)), ['--law=hparams'],
     '1 budget(s) of 1 with a measured optimum'),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, body, args, expect):
  runs = tmp_path / 'runs.csv'
  runs.write_text(body)
  out = tmp_path / 'out'
  r = _fit(f'--runs={runs}', f'--out={out}', '--bootstrap=0', *args)
  assert r.returncode == 2, (r.stdout, r.stderr)
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and expect in lines[0], lines
  assert not out.exists()


def test_missing_runs_flag_and_file(tmp_path):
  r = _fit()
  assert r.returncode == 2 and 'runs' in r.stderr and len(r.stderr.strip().splitlines()) == 1
  r = _fit(f'--runs={tmp_path / "nope.csv"}')
  assert r.returncode == 2 and 'no such file' in r.stderr


@needs_shared
def test_epoch_file(tmp_path):
  out = tmp_path / 'epoch'
  runs = SCALING / 'epoch_chinchilla' / 'svg_extracted_data.csv'
  r = _fit(f'--runs={runs}', '--bootstrap=50', f'--out={out}')
  assert r.returncode == 0, r.stderr
  assert '240 rows fitted of 245 read' in r.stdout
  doc = json.loads((out / 'fits.json').read_text())
  chin = doc['fits']['N']['chinchilla']
  assert chin['n_starts'] == 4500 and chin['params']['E'] == pytest.approx(1.817, abs=0.005)
  assert doc['fits']['N']['isoflop']['n_budgets_used'] >= 5
  assert len(doc['plots']) == 6 and all((out / p).stat().st_size > 10_000 for p in doc['plots'])


def test_hparams_law_prints_writes_and_feeds_a_recipe(tmp_path):
  from lmjax import sweeps
  from lmjax.sweeps import collect
  from tests.test_scaling_hparams import synthetic
  runs = collect.write_csv(synthetic(), str(tmp_path / 'runs.csv'))
  out = tmp_path / 'out'
  r = _fit(f'--runs={runs}', '--law=hparams', '--bootstrap=30', f'--out={out}',
           '--predict_c=1e22')
  assert r.returncode == 0, r.stderr
  assert 'lr_opt = a·C^b' in r.stdout and 'batch_size_opt = a·C^b' in r.stdout
  doc = json.loads((out / 'fits.json').read_text())
  fit = doc['fits']['N']['hparams']
  assert set(fit['laws']) == {'lr', 'batch_size'} and set(fit['laws']['lr']) == {'C', 'N', 'D'}
  lo, hi = fit['laws']['lr']['C']['b_interval']
  assert lo <= -0.125 <= hi and fit['predictions'][0]['c'] == 1e22
  assert doc['plots'] == ['hparams.png'] and (out / 'hparams.png').stat().st_size > 10_000
  law = sweeps.fitted_lr(str(out))
  assert law.lr(C=1e18) == pytest.approx(fit['laws']['lr']['C']['a'] * 1e18 ** law.b)
