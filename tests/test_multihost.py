"""Two launch.train processes on 127.0.0.1 (4 simulated CPU devices each, gloo collectives)
train like one process with 8 devices."""
import os
import socket
import subprocess
import sys

import pytest

from lmjax.metrics import read_metrics

pytestmark = pytest.mark.slow  # two training processes and one of eight devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--config=experiments/configs/tiny.py', '--config.train.steps=8', '--config.optim.warmup_steps=2',
         '--config.train.log_every=1', '--config.checkpoint.every_steps=4',
         '--config.model.vocab_size=264', '--config.mesh.data=2', '--config.mesh.fsdp=2',
         '--config.mesh.tensor=2']


def _env(devices):
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_PLATFORMS='cpu')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_eight_devices(tmp_path):
  single = subprocess.run([sys.executable, '-m', 'launch.train', f'--workdir={tmp_path}/one',
                           *FLAGS], cwd=ROOT, env=_env(8), capture_output=True, text=True,
                          timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'launch.train', f'--workdir={tmp_path}/two', *FLAGS,
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert 'over 8 devices, 2 process(es)' in outs[0]
  one = [r['loss'] for r in read_metrics(tmp_path / 'one' / 'metrics.jsonl') if 'loss' in r]
  two = [r['loss'] for r in read_metrics(tmp_path / 'two' / 'metrics.jsonl') if 'loss' in r]
  assert len(one) == len(two) == 8
  for a, b in zip(one, two):  # the same global batches and mesh; collectives may sum in
    assert abs(a - b) <= 1e-5 * abs(a), (one, two)  # another order
  assert sorted(os.listdir(tmp_path / 'two' / 'checkpoints')) == ['4', '8']
