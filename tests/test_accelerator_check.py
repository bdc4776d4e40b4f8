"""benchmarks/accelerator_check.py, the one prepared check for a lent accelerator, runs end to end
at its --quick shapes on the CPU (blocked and xla attention) and fails in one line without a
module it needs."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'benchmarks', 'accelerator_check.py')


def _script_module():
  spec = importlib.util.spec_from_file_location('accelerator_check', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _env():
  return dict(os.environ, JAX_PLATFORMS='cpu')


def test_packed_documents_count_up_and_restart_positions():
  seg, pos = _script_module().packed_documents(np.random.default_rng(0), 3, 64, 4)
  assert seg.shape == pos.shape == (3, 64) and seg.dtype == pos.dtype == np.int32
  for ids, positions in zip(seg, pos):
    assert ids[0] == 0 and ids[-1] == 3 and np.all(np.diff(ids) >= 0)  # never comes back
    starts = np.flatnonzero(np.diff(ids, prepend=-1))
    assert len(starts) == 4 and np.all(positions[starts] == 0)
    assert np.all(np.diff(positions)[np.diff(ids) == 0] == 1)


def test_a_missing_module_fails_in_one_line():
  code = ('import runpy, sys; sys.modules["ml_collections"] = None; '
          f'sys.argv = [{SCRIPT!r}, "--quick"]; runpy.run_path({SCRIPT!r}, run_name="__main__")')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 2 and out.stdout == ''
  assert out.stderr.strip().splitlines() == [out.stderr.strip()]
  assert out.stderr.startswith('error: no module ml_collections here')


@pytest.mark.slow
def test_quick_run_prints_a_json_line_per_section(tmp_path):
  path = tmp_path / 'check.jsonl'
  out = subprocess.run([sys.executable, SCRIPT, '--quick', f'--out={path}'], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  printed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  assert printed == [json.loads(line) for line in path.read_text().splitlines()]
  assert not [r for r in printed if 'error' in r or 'skipped' in r]
  sections = {r['section'] for r in printed}
  assert sections == {'device', 'attention', 'cross_entropy', 'train_step', 'memory'}
  timed = [r for r in printed if r['section'] == 'attention' and 'seconds' in r]
  assert sorted(r['kernel'] for r in timed) == ['blocked', 'xla']
  assert all(r['tflops'] > 0 for r in timed)
  step = next(r for r in printed if r['section'] == 'train_step')
  assert step['tokens_per_s'] > 0 and 0 < step['mfu'] < 1 and step['kernel'] == 'blocked'
  agree = [r for r in printed if r['section'] == 'cross_entropy' and 'against' in r]
  assert len(agree) == 4 and all(r['max_abs_diff']['loss'] < 1e-4 for r in agree)
  memory = next(r for r in printed if r['section'] == 'memory')
  assert memory['needed_bytes'] > memory['params_bytes'] > 0
