"""A small mixture of experts trained on the default corpus through launch.train: the loss falls,
every expert stays in use, and a resume after SIGKILL gives the losses of the run that was never
killed, bit for bit (the deepseek router's balancing bias and two micro-batches included)."""
import json
import os

import pytest

from lmjax.core.rundir import RunDir
from tests.test_checkpoint import _strip, killed_and_resumed

pytestmark = pytest.mark.slow  # launch.train subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = ['--config.model.moe_experts=4', '--config.model.moe_top_k=2',
       '--config.model.moe_router=deepseek', '--config.train.grad_accum=2']


def _run(workdir, *flags):
  from tests import test_checkpoint
  return test_checkpoint._run(workdir, *MOE, *flags)


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('moe_straight')
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out.stdout


def test_a_small_moe_learns_and_uses_every_expert(straight):
  workdir, stdout = straight
  assert 'MoE: 4 experts of width 384, top-2 (deepseek router) in 2 of 2 layers' in stdout
  rows = [r for r in RunDir(workdir).read_metrics() if 'loss' in r]
  assert rows[-1]['loss'] < rows[0]['loss'] - 1.0, (rows[0]['loss'], rows[-1]['loss'])
  for r in rows:
    assert 0.9 <= r['moe_lb_loss'] <= 4 and r['moe_z_loss'] > 0 and 'moe_dropped' not in r
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  load = summary['moe_load']  # (layers, experts): the fraction of assignments, even = 0.25
  assert len(load) == 2 and all(len(layer) == 4 for layer in load)
  assert min(min(layer) for layer in load) > 0.05, load
  assert summary['N_active'] < summary['N']
  assert rows[-1]['moe_load_min'] == min(min(layer) for layer in load)


def test_moe_resume_after_sigkill_is_bitwise_identical(straight, tmp_path):
  killed_and_resumed(tmp_path, *MOE)
  a, b = RunDir(straight[0]).read_metrics(), RunDir(tmp_path).read_metrics()
  assert [r['step'] for r in b] == [r['step'] for r in a]
  assert _strip(a) == _strip(b)  # losses and the MoE metrics, bitwise
