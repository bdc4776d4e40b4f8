"""Two launch.train processes on 127.0.0.1 (4 simulated CPU devices each, gloo collectives)
train like one process with 8 devices."""
import os
import socket
import subprocess
import sys

import pytest

from lmjax.core.rundir import RunDir
from tests import xla

pytestmark = pytest.mark.slow  # two training processes and one of eight devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--config=experiments/configs/tiny.py', '--config.train.steps=8', '--config.optim.warmup_steps=2',
         '--config.train.log_every=1', '--config.checkpoint.every_steps=4',
         '--config.model.vocab_size=264', '--config.mesh.data=2', '--config.mesh.fsdp=2',
         '--config.mesh.tensor=2']


def _env(devices):
  return xla.optimized_env(devices, JAX_PLATFORMS='cpu')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _one(workdir, *flags):
  out = subprocess.run([sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *FLAGS,
                        *flags], cwd=ROOT, env=_env(8), capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]


def _two(workdir, *flags):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *FLAGS, *flags,
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _losses(workdir):
  return [r['loss'] for r in RunDir(workdir).read_metrics() if 'loss' in r]


def test_two_processes_match_one_process_with_eight_devices(tmp_path):
  """Each process reads only its half of every global batch (lmjax/data/pipeline.py); the halves
  make the one-process batches, so the losses agree, and again after both runs resume from
  their step-8 checkpoints to train 4 steps more."""
  _one(tmp_path / 'one')
  outs = _two(tmp_path / 'two')
  assert 'over 8 devices, 2 process(es)' in outs[0]
  one, two = _losses(tmp_path / 'one'), _losses(tmp_path / 'two')
  assert len(one) == len(two) == 8
  for a, b in zip(one, two):  # the same global batches and mesh; collectives may sum in
    assert abs(a - b) <= 1e-5 * abs(a), (one, two)  # another order
  assert sorted(os.listdir(tmp_path / 'two' / 'checkpoints')) == ['4', '8']
  for run in ('one', 'two'):  # unfinished again: a finished run (summary.json) is left alone
    os.remove(tmp_path / run / 'summary.json')
  _one(tmp_path / 'one', '--config.train.steps=12')
  outs = _two(tmp_path / 'two', '--config.train.steps=12')
  assert 'resumed from the checkpoint at step 8' in outs[0]
  one, two = _losses(tmp_path / 'one'), _losses(tmp_path / 'two')
  assert len(one) == len(two) == 12
  for a, b in zip(one[8:], two[8:]):
    assert abs(a - b) <= 1e-5 * abs(a), (one, two)
