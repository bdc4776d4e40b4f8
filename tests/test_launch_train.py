"""launch.train: trains both presets, leaves a finished run alone, resumes an unfinished one."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # launch.train subprocesses that train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(tmp_path, *flags):
  return subprocess.run([sys.executable, '-m', 'launch.train',
                         '--config=experiments/configs/tiny.py', f'--workdir={tmp_path}/run',
                         *flags], cwd=ROOT, capture_output=True, text=True)


def test_launcher_trains_both_presets_skips_a_finished_run_and_resumes(tmp_path):
  for preset in ('vaswani', 'llama'):
    run = tmp_path / preset
    out = _launch(run, f'--config.model.preset={preset}', '--config.train.steps=20')
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'bits per byte' in out.stdout
    assert json.loads((run / 'run' / 'config.json').read_text())['model']['preset'] == preset
  out = _launch(tmp_path / 'llama', '--config.train.steps=20')
  assert out.returncode == 0 and 'finished run' in out.stdout
  os.remove(tmp_path / 'llama' / 'run' / 'summary.json')
  before = (tmp_path / 'llama' / 'run' / 'metrics.jsonl').read_bytes()
  out = _launch(tmp_path / 'llama', '--config.train.steps=20')
  assert out.returncode == 0 and 'resumed from the checkpoint at step 20' in out.stdout
  assert (tmp_path / 'llama' / 'run' / 'metrics.jsonl').read_bytes() == before
