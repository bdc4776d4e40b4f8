"""python -m launch.memory compiles the train step for a simulated mesh and accounts for its
memory (the accounting itself: tests/test_memory.py)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _memory(*flags):
  return subprocess.run([sys.executable, '-m', 'launch.memory',
                         '--config=experiments/configs/small.py', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize('mesh', ['1,8,1', '1,4,2'])
def test_state_bytes_match_the_analytic_estimate(mesh):
  out = _memory(f'--mesh={mesh}', '--config.model.vocab_size=264', '--device_memory=1GB')
  assert out.returncode == 0, out.stderr[-3000:]
  ratio = float(re.search(r'analytic params\+moments = ([0-9.]+)', out.stdout).group(1))
  assert 0.9 <= ratio <= 1.1
  assert 'verdict: needs' in out.stdout and ': fits' in out.stdout


@pytest.mark.slow
def test_a_model_too_big_for_the_memory_is_refused_with_status_1():
  out = _memory('--mesh=1,8,1', '--config.model.vocab_size=264', '--device_memory=1MB')
  assert out.returncode == 1 and 'does NOT fit' in out.stdout


@pytest.mark.parametrize('flag, message', [
    ('--mesh=1,8', 'error: --mesh=1,8: expected three positive sizes'),
    ('--mesh=1,3,1', 'error: config.mesh.fsdp=3 does not divide config.model.d_model=256'),
    ('--mesh=1,1,8', 'error: config.mesh.tensor=8 does not divide config.model.n_heads=4'),
])
@pytest.mark.slow  # launch.memory subprocesses that build the mesh
def test_bad_mesh_flags(flag, message):
  out = _memory(flag, '--device_memory=1GB')
  assert out.returncode == 2 and out.stderr.strip() == out.stderr.strip().splitlines()[0]
  assert out.stderr.startswith(message), out.stderr


def test_a_bad_memory_size():
  out = _memory('--mesh=1,8,1', '--device_memory=lots')
  assert out.returncode == 2
  assert out.stderr.strip() == 'error: --device_memory=lots: expected a size such as 80GB or 16GiB'
