"""launch.train's library call (lmjax/train/run.py): inputs found bad as a run starts are one
line, exit 2, and leave nothing behind: no run directory, no lock, no compilation cache."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(*flags):
  return subprocess.run([sys.executable, '-m', 'launch.train',
                         '--config=experiments/configs/tiny.py', '--config.train.steps=2',
                         '--config.optim.warmup_steps=1', *flags],
                        cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize('workdir, flags, message', [
    # The run to branch from does not exist: checked before anything is made.
    ('{tmp}/new/run', ['--config.train.init_from={tmp}/MISSING'],
     'error: config.train.init_from={tmp}/MISSING: no run with checkpoints there'),
    # A workdir that cannot be made (was a 14-line FileNotFoundError).
    ('/proc/lmjax/run', [], 'error: --workdir=/proc/lmjax/run cannot be created'),
    # A corpus with no files, found once the directory, its lock and the cache beside it exist:
    # they are removed again.
    ('{tmp}/new/run', ['--config.data.dataset=local_text', '--config.data.paths={tmp}/empty',
                       '--config.data.data_dir={tmp}/tfds'],
     'error: config.data.paths: no files match'),
])
def test_a_run_that_cannot_start_is_one_line_and_leaves_nothing(tmp_path, workdir, flags,
                                                                message):
  (tmp_path / 'empty').mkdir()
  fill = lambda s: s.format(tmp=tmp_path)
  before = sorted(os.listdir(tmp_path))
  out = _train(f'--workdir={fill(workdir)}', *map(fill, flags))
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
  assert out.stderr.startswith(fill(message)), out.stderr
  after = sorted(p for p in os.listdir(tmp_path) if p != 'tfds')  # the prepare lock's folder
  assert after == before


def test_a_refused_resume_writes_nothing_and_a_finished_run_is_left_alone(tmp_path):
  run = tmp_path / 'run'
  assert _train(f'--workdir={run}').returncode == 0
  os.remove(run / 'summary.json')
  listing = {p: os.path.getmtime(run / p) for p in os.listdir(run)}
  out = _train(f'--workdir={run}', '--config.model.n_layers=3')
  assert out.returncode == 2 and 'model.n_layers (2 -> 3)' in out.stderr
  assert {p: os.path.getmtime(run / p) for p in os.listdir(run)} == listing
