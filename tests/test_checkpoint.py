"""Checkpoints and fault tolerance, through the launcher as a user runs it."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from lmjax.core.errors import EXIT_NONFINITE, EXIT_PREEMPTED
from lmjax.core.rundir import RunDir
from tests.damage import flip_bytes
from tests import xla

pytestmark = pytest.mark.slow  # launch.train subprocesses: kills, resumes, damaged checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = {'tokens_per_s', 'step_time_s', 'mfu'}
# Slow enough that 20 steps take a few seconds, so a kill lands mid-run.
BASE = ['--config=experiments/configs/tiny.py', '--config.train.steps=40',
        '--config.checkpoint.every_steps=20', '--config.train.log_every=1',
        '--config.train.eval_every=10', '--config.model.dropout=0.1',
        '--config.data.batch_size=32', '--config.model.d_model=128']


def _cmd(workdir, *flags):
  return [sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *BASE, *flags]


def _run(workdir, *flags):
  return subprocess.run(_cmd(workdir, *flags), cwd=ROOT, capture_output=True, text=True,
                        env=xla.optimized_env())


def _start(workdir, *flags):
  return subprocess.Popen(_cmd(workdir, *flags), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=xla.optimized_env())


def _wait_for(predicate, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    time.sleep(0.005)
  raise AssertionError('timed out')


def _complete(workdir, step):
  return os.path.exists(os.path.join(workdir, 'checkpoints', str(step), 'commit_success.txt'))


def _strip(rows):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _tree_digest(path):
  h = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      p = os.path.join(root, name)
      h.update(p.encode())
      with open(p, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """40 steps without interruption: the reference."""
  workdir = tmp_path_factory.mktemp('straight')
  out = _run(workdir)
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def killed_and_resumed(workdir, *flags):
  """Starts the run, SIGKILLs it soon after its step-20 checkpoint is complete, and runs the
  same command again, which must resume from step 20 and finish."""
  proc = _start(workdir, *flags)
  _wait_for(lambda: _complete(workdir, 20))
  time.sleep(random.uniform(0, 0.5))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / 'summary.json').exists()
  out = _run(workdir, *flags)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'resumed from the checkpoint at step 20' in out.stdout


def test_resume_after_sigkill_is_bitwise_identical(straight, tmp_path):
  killed_and_resumed(tmp_path)
  a = RunDir(straight).read_metrics()
  b = RunDir(tmp_path).read_metrics()
  assert [r['step'] for r in b] == [r['step'] for r in a]  # no duplicate, no orphan
  assert _strip(a) == _strip(b)  # losses bitwise (JSON floats round-trip exactly)
  assert [r['loss'] for r in a if r['step'] > 20 and 'loss' in r] == [
      r['loss'] for r in b if r['step'] > 20 and 'loss' in r]


def test_sigterm_saves_and_exits_with_the_preemption_code(tmp_path):
  proc = _start(tmp_path, '--config.train.steps=400', '--config.checkpoint.every_steps=1000')
  _wait_for(lambda: len(RunDir(tmp_path).read_metrics()) > 5
            if (tmp_path / 'metrics.jsonl').exists() else False)
  t0 = time.time()
  # SIGTERM again and again until it leaves (under SLURM both slurmd and srun send one): the
  # repeats fall in the step, the save and the teardown, and none may kill it (exit 143).
  while proc.poll() is None and time.time() - t0 < 60:
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == EXIT_PREEMPTED, out[-3000:]
  assert time.time() - t0 < 20
  saved = [int(s) for s in os.listdir(tmp_path / 'checkpoints') if s.isdigit()]
  assert len(saved) == 1
  last_logged = RunDir(tmp_path).read_metrics()[-1]['step']
  assert last_logged <= saved[0] <= last_logged + 2  # the step under way, no more
  end = saved[0] + 10  # a few steps past the save (a resume may change the length)
  out = _run(tmp_path, f'--config.train.steps={end}', '--config.checkpoint.every_steps=1000',
             '--config.train.eval_every=1000')
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'resumed from the checkpoint at step {saved[0]}' in out.stdout
  steps = [r['step'] for r in RunDir(tmp_path).read_metrics() if 'loss' in r]
  assert steps == list(range(1, end + 1))


def test_sigkill_during_an_async_save_restores_the_previous_checkpoint(tmp_path):
  flags = ['--config.checkpoint.every_steps=5', '--config.model.d_model=256',
           '--config.model.n_layers=4', '--config.train.steps=200']
  proc = _start(tmp_path, *flags)
  ckpts = tmp_path / 'checkpoints'

  def writing_second():
    if not _complete(tmp_path, 5) or not ckpts.exists():
      return False
    return any(name.startswith('10') and not name.isdigit() for name in os.listdir(ckpts)) or (
        (ckpts / '10').exists() and not _complete(tmp_path, 10))
  _wait_for(writing_second)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not _complete(tmp_path, 10)
  out = _run(tmp_path, *flags, '--config.train.steps=12')  # a resume (12: warmup is 10 steps)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'resumed from the checkpoint at step 5' in out.stdout


def test_damaged_latest_checkpoint_falls_back_and_metrics_are_cut(straight, tmp_path):
  import shutil
  shutil.copytree(straight, tmp_path / 'run')
  run = tmp_path / 'run'
  os.remove(run / 'summary.json')
  damaged = 0
  for root, _, files in os.walk(run / 'checkpoints' / '40' / 'state'):
    for name in files:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(max(os.path.getsize(os.path.join(root, name)) // 3, 1))
      damaged += 1
  assert damaged
  out = _run(run)
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'the checkpoint {run}/checkpoints/40 is damaged' in out.stdout
  assert 'resumed from the checkpoint at step 20' in out.stdout
  assert _strip(RunDir(run).read_metrics()) == _strip(
      RunDir(straight).read_metrics())


def _caught(text):
  """Whether a damaged checkpoint was caught by its digests, or (where the flipped bytes fell
  on a chunk's framing rather than its values: the files' layout varies) by tensorstore, whose
  status names the damage DATA_LOSS, INVALID_ARGUMENT or OUT_OF_RANGE by where the bytes fell."""
  return 'DigestMismatch: checksum mismatch in ' in text or any(
      status in text for status in ('DATA_LOSS', 'INVALID_ARGUMENT', 'OUT_OF_RANGE',
                                    'TensorStore'))


def _tool(tool, *flags):
  return subprocess.run([sys.executable, '-m', f'launch.{tool}', *flags], cwd=ROOT,
                        capture_output=True, text=True)


def test_flipped_bytes_are_caught_named_and_fallen_back_from(straight, tmp_path):
  """The files still parse: only the saved digests (lmjax/train/digests.py) tell. Training,
  eval and export fall back to the previous checkpoint, naming the damaged one; asked for it by
  --step, or with no intact checkpoint left, they refuse with one line."""
  import shutil
  run = tmp_path / 'run'
  shutil.copytree(straight, run)
  os.remove(run / 'summary.json')
  assert flip_bytes(run / 'checkpoints' / '40' / 'state')
  damaged = f'the checkpoint {run}/checkpoints/40 is damaged'

  ev = _tool('eval', f'--workdir={run}', '--documents=2', '--page_documents=0')
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert damaged in ev.stderr and _caught(ev.stderr)
  ev = _tool('eval', f'--workdir={run}', '--step=40')
  assert ev.returncode == 2 and ev.stderr.strip().count('\n') == 0, ev.stderr
  assert f'--step=40: the checkpoint {run}/checkpoints/40' in ev.stderr
  hf = _tool('convert', f'--workdir={run}', f'--to_hf={tmp_path / "hf"}')
  assert hf.returncode == 0 and damaged in hf.stderr, hf.stderr[-3000:]

  out = _run(run)  # the run resumes from step 20: the losses of the straight run
  assert out.returncode == 0, out.stderr[-3000:]
  assert damaged in out.stdout and 'resumed from the checkpoint at step 20' in out.stdout
  assert _strip(RunDir(run).read_metrics()) == _strip(RunDir(straight).read_metrics())

  for step in (20, 40):  # every checkpoint damaged: refused, nothing trained
    assert flip_bytes(run / 'checkpoints' / str(step) / 'state')
  os.remove(run / 'summary.json')
  ev = _tool('eval', f'--workdir={run}')  # each damaged checkpoint named, then the error
  assert ev.returncode == 2, ev.stderr
  error = ev.stderr.strip().splitlines()[-1]
  assert error.startswith('error: ') and 'no checkpoint can be read' in error, ev.stderr
  assert 'checkpoints/20 (' in error and _caught(error)
  out = _run(run)
  assert out.returncode == 2 and 'no checkpoint could be restored' in out.stderr, out.stderr


def test_incompatible_resume_is_refused_and_touches_nothing(straight, tmp_path):
  import shutil
  shutil.copytree(straight, tmp_path / 'run')
  run = tmp_path / 'run'
  os.remove(run / 'summary.json')
  before = _tree_digest(run)
  out = _run(run, '--config.model.n_layers=3')
  assert out.returncode == 2
  assert 'model.n_layers (2 -> 3)' in out.stderr
  assert out.stderr.strip().count('\n') == 0
  assert _tree_digest(run) == before
  out = _run(run, '--config.train.eval_every=20')  # a safe change resumes
  assert out.returncode == 0 and 'changed fields: train.eval_every' in out.stdout


def test_nonfinite_loss_stops_naming_the_step(tmp_path):
  out = _run(tmp_path, '--config.optim.lr=1e30', '--config.optim.grad_clip=0',
             '--config.optim.warmup_steps=0', '--config.model.dropout=0',
             '--config.checkpoint.every_steps=1')
  assert out.returncode == EXIT_NONFINITE, out.stderr[-2000:]
  assert 'not finite at step 2' in out.stderr
  # The message names the checkpoint to go back to, by its path.
  assert f'the last good checkpoint (step 1, {tmp_path}/checkpoints/1) is intact' in out.stderr
  assert not (tmp_path / 'checkpoints' / '20').exists()
  out = _run(tmp_path / 'skip', '--config.optim.lr=1e30', '--config.optim.grad_clip=0',
             '--config.optim.warmup_steps=0', '--config.model.dropout=0',
             '--config.train.skip_nonfinite=3')
  assert out.returncode == EXIT_NONFINITE
  assert 'not finite at step 5' in out.stderr  # steps 2, 3, 4 skipped; the fourth in a row stops


def test_exported_params_load_for_inference(straight, tmp_path):
  import jax
  import numpy as np
  from lmjax.train.checkpoint import Checkpoints, export_params, load_params
  from lmjax.config import resolve
  from ml_collections import ConfigDict
  config = resolve(ConfigDict(json.loads((straight / 'config.json').read_text())))
  from lmjax.train.steps import build_model_and_optimizer, init_params
  model, _ = build_model_and_optimizer(config)
  abstract = jax.eval_shape(lambda: init_params(model, config, jax.random.PRNGKey(0)))
  import orbax.checkpoint as ocp
  mgr = ocp.CheckpointManager(os.path.abspath(straight / 'checkpoints'))
  state = mgr.restore(40, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  params = state['params']
  export_params(tmp_path / 'params', params)
  loaded = load_params(tmp_path / 'params', abstract)
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  logits = model.apply({'params': loaded}, np.zeros((1, 8), np.int32))
  assert logits.shape == (1, 8, config.model.vocab_size) and np.isfinite(logits).all()
  del Checkpoints


def test_restore_onto_another_mesh_gives_the_same_eval_loss(tmp_path):
  """Saved on 8 simulated devices as a (2, 2, 2) mesh; restored on 1 device and on (1, 8, 1)."""
  import shutil
  flags = ['--config=experiments/configs/tiny.py', '--config.train.steps=10',
           '--config.checkpoint.every_steps=10', '--config.model.vocab_size=264']
  eight = xla.optimized_env(8)

  def launch(workdir, env, *extra):
    out = subprocess.run([sys.executable, '-m', 'launch.train', f'--workdir={workdir}', *flags,
                          *extra], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out

  out = launch(tmp_path / 'saved', eight, '--config.mesh.data=2', '--config.mesh.fsdp=2',
               '--config.mesh.tensor=2')
  assert 'data×fsdp×tensor = 2×2×2 over 8 devices' in out.stdout
  saved = json.loads((tmp_path / 'saved' / 'summary.json').read_text())['eval_loss']
  for name, env, extra, mesh in (
      ('one', dict(os.environ), [], '1×1×1 over 1 devices'),
      ('fsdp8', eight, ['--config.mesh.data=1', '--config.mesh.fsdp=8'], '1×8×1 over 8 devices')):
    shutil.copytree(tmp_path / 'saved', tmp_path / name)
    os.remove(tmp_path / name / 'summary.json')
    out = launch(tmp_path / name, env, *extra)
    assert 'resumed from the checkpoint at step 10' in out.stdout and mesh in out.stdout
    restored = json.loads((tmp_path / name / 'summary.json').read_text())['eval_loss']
    # The same parameters; only the order of float32 sums across devices differs.
    assert restored == pytest.approx(saved, rel=1e-6), (name, restored, saved)
