"""Run directories on object storage: `--workdir=gs://bucket/run` against a Cloud Storage
emulator on 127.0.0.1 (tests/gcs_emulator.py). A run killed with SIGKILL and resumed gives the
losses of an uninterrupted local run, bit for bit; a damaged checkpoint there is caught and
fallen back from; a bad bucket, an unreachable endpoint and s3:// stop in one line, writing
nothing. RunDir itself on `memory://`."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from lmjax.core import storage
from lmjax.core.rundir import RunDir
from tests import gcs_emulator
from tests.damage import flip_bytes_remote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ['--config=experiments/configs/tiny.py', '--config.train.steps=40',
         '--config.checkpoint.every_steps=20', '--config.train.log_every=1',
         '--config.train.eval_every=10', '--config.model.dropout=0.1',
         '--config.data.batch_size=32', '--config.model.d_model=128']
needs_emulator = pytest.mark.skipif(gcs_emulator.skip_reason() is not None,
                                    reason=gcs_emulator.skip_reason() or '')


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  emulator = gcs_emulator.Emulator(tmp_path_factory.mktemp('gcs') / 'emulator.log')
  saved = {k: os.environ.get(k) for k in emulator.env()}
  os.environ.update(emulator.env())
  fs = emulator.filesystem()
  fs.mkdir('lmjax-runs')
  yield emulator, fs
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  emulator.stop()


def _train(workdir, *flags, cwd=ROOT):
  return subprocess.run([sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *TRAIN,
                         *flags], cwd=cwd, capture_output=True, text=True, timeout=600)


def _losses(workdir):
  return [(r['step'], r['loss']) for r in RunDir(workdir).read_metrics() if 'loss' in r]


@pytest.mark.slow
@needs_emulator
def test_gs_run_killed_and_resumed_gives_the_local_losses(gcs, tmp_path):
  emulator, fs = gcs
  local = tmp_path / 'local'
  out = _train(local)
  assert out.returncode == 0, out.stderr[-3000:]

  remote = 'gs://lmjax-runs/killed'
  proc = subprocess.Popen([sys.executable, '-m', 'launch.train', f'--workdir={remote}', *TRAIN],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while not fs.exists('lmjax-runs/killed/checkpoints/20/commit_success.txt'):
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not fs.exists('lmjax-runs/killed/summary.json')

  out = _train(remote)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'resumed from the checkpoint at step 20' in out.stdout
  assert _losses(remote) == _losses(local)  # every step, bit for bit
  summary = json.loads(fs.cat('lmjax-runs/killed/summary.json'))
  assert summary['eval_loss'] == RunDir(local).read_summary()['eval_loss']
  assert fs.ls('lmjax-runs/killed/tb')  # TensorBoard events uploaded
  assert RunDir(remote).read_config()['train']['steps'] == 40

  # Eval outputs go to the bucket; a checkpoint damaged there is named and fallen back from.
  assert flip_bytes_remote(fs, 'lmjax-runs/killed/checkpoints/40/state')
  ev = subprocess.run([sys.executable, '-m', 'launch.eval', f'--workdir={remote}',
                       '--documents=2', '--page_documents=0'], cwd=ROOT, capture_output=True,
                      text=True, timeout=600)
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert f'the checkpoint {remote}/checkpoints/40 is damaged' in ev.stderr
  assert fs.exists('lmjax-runs/killed/eval/validation-20.json'), fs.ls('lmjax-runs/killed/eval')


CLOSED = 'http://127.0.0.1:9'  # the discard port: nothing listens there


@needs_emulator
def test_bad_object_storage_paths_fail_in_one_line_writing_nothing(gcs, tmp_path):
  emulator, _ = gcs
  cases = {'gs://no-such-bucket/run': os.environ,
           'gs://lmjax-runs/unreachable': dict(os.environ, STORAGE_EMULATOR_HOST=CLOSED,
                                               TENSORSTORE_GCS_HTTP_URL=CLOSED),
           's3://bucket/run': os.environ}
  for workdir, env in cases.items():
    out = subprocess.run([sys.executable, '-m', 'launch.train', f'--workdir={workdir}',
                          f'--config={ROOT}/experiments/configs/tiny.py'], cwd=tmp_path, env=dict(env, PYTHONPATH=ROOT), capture_output=True,
                         text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith(f'error: --workdir={workdir}'), lines[0]
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)  # nothing written locally
  assert 'is not supported' in lines[0]


SWEEP = """
from lmjax import sweeps
BASE = 'experiments/configs/tiny.py'

def get_sweep():
  recipe = sweeps.Recipe(batch_size=8, seq_len=32, lr=3e-3, warmup_steps=2, checkpoints=2)
  shapes = sweeps.ladder([4e3, 1.5e4], BASE, aspect=24, head_dim=8, seq_len=32)
  runs = sweeps.grid(shapes, [1e4, 2e4], recipe=recipe, base_config=BASE)
  return sweeps.Sweep(name='ongcs', base_config=BASE, runs=tuple(runs))
"""


@pytest.mark.slow
@needs_emulator
def test_sweep_directory_on_gs_runs_collects_and_fits(gcs, tmp_path):
  """launch.sweep and launch.fit on gs://: sweep.json, status, runs, logs, runs.csv and fits
  in the bucket; the launcher's lock, logs and cache in its local directory ($XDG_CACHE_HOME);
  the SLURM backend refused in one line."""
  _, fs = gcs
  sweep_file = tmp_path / 'ongcs.py'
  sweep_file.write_text(SWEEP)
  env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'))
  sweep = [sys.executable, '-m', 'launch.sweep', f'--sweep={sweep_file}',
           '--workdir=gs://lmjax-runs/sweep']
  out = subprocess.run([*sweep, '--parallel=2'], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert '4/4 done' in out.stdout
  status = subprocess.run([*sweep, '--status'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert status.returncode == 0 and status.stdout.count(' done ') == 4, status.stdout
  names = fs.ls('lmjax-runs/sweep/runs')
  assert len(names) == 4 and all(fs.exists(f'{n}/summary.json') for n in names)
  assert len(fs.ls('lmjax-runs/sweep/logs')) == 4 and len(fs.ls('lmjax-runs/sweep/status')) == 4
  assert os.listdir(tmp_path / 'cache' / 'lmjax' / 'sweeps')  # the launcher's own things

  fit = subprocess.run([sys.executable, '-m', 'launch.fit', '--sweep_dir=gs://lmjax-runs/sweep',
                        '--law=kaplan_n', '--nokaplan_frontier', '--bootstrap=0'], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert fit.returncode == 0, fit.stdout[-3000:] + fit.stderr[-3000:]
  assert 'collected 4 finished runs' in fit.stdout
  assert fs.cat('lmjax-runs/sweep/runs.csv').decode().count('\n') == 5
  fits = json.loads(fs.cat('lmjax-runs/sweep/fits/fits.json'))
  params = fits['fits']['N']['kaplan_n']['params']
  assert params and all(math.isfinite(v) for v in params.values()), params
  assert any(p.endswith('.png') for p in fs.ls('lmjax-runs/sweep/fits'))

  slurm = subprocess.run([*sweep, '--backend=slurm'], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert slurm.returncode == 2 and slurm.stderr.count('\n') == 1, slurm.stderr
  assert "shared file system" in slurm.stderr


def test_run_dir_on_memory_storage():
  """config.json, metrics.jsonl and summary.json of a RunDir on fsspec's memory://: written
  whole, read back, cut back to a step."""
  run = RunDir('memory://runs/one')
  assert not run.is_run() and not run.exists()
  run.check_writable_path()
  assert run.create() == []
  run.write_config({'train': {'steps': 3}})
  storage.write_text(run.metrics_path, ''.join(json.dumps({'step': s, 'loss': 1.0 / s}) + '\n'
                                               for s in (1, 2, 3)))
  assert run.is_run() and run.read_config() == {'train': {'steps': 3}}
  assert run.truncate_metrics(2) == 1 and [r['step'] for r in run.read_metrics()] == [1, 2]
  assert not run.is_finished()
  run.write_summary({'eval_loss': 1.5})
  assert run.is_finished() and run.read_summary() == {'eval_loss': 1.5}
  assert storage.listdir('memory://runs/one') == ['config.json', 'metrics.jsonl',
                                                  'summary.json']
  with run.lock():  # object storage: no lock to take
    pass
