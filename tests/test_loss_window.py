"""metrics.jsonl's `loss` is the mean train loss of the steps since the last log step, `loss_last`
the log step's own; a resume from a checkpoint that cut a window in two logs what the run that
never stopped logged, bit for bit (the window's partial sum travels in the checkpoint)."""
import os
import shutil

import pytest

from lmjax.config import resolve
from lmjax.core.cli import load_config_file
from lmjax.core.rundir import RunDir
from lmjax.train.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = {'tokens_per_s', 'step_time_s', 'mfu'}


def _config(log_every, **train_fields):
  c = load_config_file(os.path.join(ROOT, 'experiments', 'configs', 'tiny.py'))
  c.train.steps, c.train.log_every, c.train.eval_every = 12, log_every, 1000
  c.checkpoint.every_steps, c.checkpoint.max_to_keep = 5, 0
  c.checkpoint.async_save = False
  for k, v in train_fields.items():
    c.train[k] = v
  return resolve(c)


def _rows(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in RunDir(workdir).read_metrics()
          if 'loss' in r]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  out = {}
  for every in (1, 4):
    workdir = str(tmp_path_factory.mktemp(f'every{every}'))
    train(_config(every), workdir)
    out[every] = workdir
  return out


def test_logged_loss_is_the_mean_of_the_window_and_loss_last_the_log_step(runs):
  each = {r['step']: r['loss'] for r in _rows(runs[1])}
  assert sorted(each) == list(range(1, 13))
  windows = _rows(runs[4])
  assert [r['step'] for r in windows] == [4, 8, 12]
  for r in windows:
    steps = range(r['step'] - 3, r['step'] + 1)
    assert r['loss'] == pytest.approx(sum(each[s] for s in steps) / 4, rel=1e-6)
    assert r['loss_last'] == each[r['step']]
    assert r['loss'] != r['loss_last']


def test_a_resume_inside_a_window_logs_the_rows_of_the_run_that_never_stopped(runs, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(runs[4], workdir)
  # As if killed after the checkpoint of step 10, which cut the window 9..12 after step 10.
  for step in ('12',):
    shutil.rmtree(workdir / 'checkpoints' / step)
  os.remove(workdir / 'summary.json')
  summary, _ = train(_config(4), str(workdir))
  assert summary['resumed_from'] == 10
  assert _rows(workdir) == _rows(runs[4])
