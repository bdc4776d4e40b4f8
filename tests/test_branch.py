"""Cooldown branches (Hägele et al. 2024): a run started from another run's stable-phase
checkpoint with a WSD schedule gives the losses of that WSD run trained from scratch."""
import os

import pytest

from lmjax.config import default_config, resolve, set_fields
from lmjax.core.rundir import RunDir
from lmjax.train import loop
from lmjax.train.checkpoint import CheckpointError

pytestmark = pytest.mark.slow  # trains three runs through the loop


def _config(**fields):
  c = default_config()
  c.train.steps, c.train.log_every, c.train.eval_every = 24, 1, 8
  c.optim.warmup_steps = 4
  c.checkpoint.every_steps, c.checkpoint.max_to_keep = 100, 1
  c.checkpoint.async_save = False
  return resolve(set_fields(c, fields))


def _losses(workdir):
  rows = RunDir(workdir).read_metrics()
  return {(r['step'], key): r[key] for r in rows for key in ('loss', 'lr', 'eval_loss')
          if key in r}


def test_branch_equals_the_wsd_run_it_stands_for(tmp_path):
  # 20 steps, 20% cooldown: wsd decays from step 16; the stable run keeps step 16 (and 8).
  stable, branch, straight = (str(tmp_path / n) for n in ('stable', 'branch', 'straight'))
  loop.train(_config(optim__schedule='constant', train__steps=18,
                     checkpoint__keep_steps=(8, 16)), stable)
  steps = sorted(int(s) for s in os.listdir(os.path.join(stable, 'checkpoints')) if s.isdigit())
  assert steps == [8, 16, 18]  # max_to_keep=1 keeps only 18, keep_steps keeps 8 and 16
  wsd = dict(optim__schedule='wsd', optim__decay_fraction=0.2, train__steps=20)
  out, _ = loop.train(_config(**wsd, train__init_from=stable, train__init_step=16), branch)
  ref, _ = loop.train(_config(**wsd), straight)
  assert out['resumed_from'] == 16
  got, want = _losses(branch), _losses(straight)
  assert min(step for step, _ in got) == 17 and set(got) <= set(want)
  assert ('20', 'eval_loss') not in got and (20, 'eval_loss') in got
  for key, value in got.items():
    assert value == pytest.approx(want[key], rel=1e-6), key
  assert out['eval_loss'] == pytest.approx(ref['eval_loss'], rel=1e-6)


def test_branch_refuses_a_missing_step_and_a_different_model(tmp_path):
  stable = str(tmp_path / 'stable')
  loop.train(_config(optim__schedule='constant', train__steps=10, checkpoint__keep_steps=(5,)),
             stable)
  with pytest.raises(CheckpointError, match='no checkpoint at step 7'):
    loop.train(_config(train__init_from=stable, train__init_step=7), str(tmp_path / 'a'))
  with pytest.raises(CheckpointError, match='optim.lr'):
    loop.train(_config(optim__lr=1e-3, train__init_from=stable, train__init_step=5),
               str(tmp_path / 'b'))
  with pytest.raises(CheckpointError, match='init_from=.*: no run with checkpoints there'):
    loop.train(_config(train__init_from=str(tmp_path / 'none'), train__init_step=5),
               str(tmp_path / 'c'))
