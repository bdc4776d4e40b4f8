"""The train step and loop: determinism, gradient accumulation, the run directory, the launcher."""
import json
import os
import subprocess
import sys

import jax
import numpy as np

from lmjax import data
from lmjax.config import resolve
from lmjax.metrics import read_metrics
from lmjax.loop import train
from lmjax.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _losses(c, n):
  model, tx = build_model_and_optimizer(c)
  state, step = init_state(model, tx, c), make_train_step(model, tx, c)
  out = []
  for _, batch in zip(range(n), data.train_iterator(data.load(c), c)):
    state, m = step(state, batch, schedule_arg(c))
    out.append(float(m['loss']))
  return out, state


def test_same_config_and_seed_give_identical_losses(tiny):
  tiny.model.dropout = 0.1
  c = resolve(tiny)
  a, _ = _losses(c, 8)
  b, _ = _losses(c, 8)
  assert a == b
  tiny.seed = 1
  other, _ = _losses(resolve(tiny), 8)
  assert other != a


def test_gradient_accumulation_gives_the_large_batch_update(tiny):
  tiny.data.batch_size = 8
  one, s1 = _losses(resolve(tiny), 3)
  tiny.train.grad_accum = 4
  four, s4 = _losses(resolve(tiny), 3)
  np.testing.assert_allclose(one, four, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s4.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_train_writes_the_run_directory(tiny, tmp_path):
  tiny.train.steps, tiny.train.log_every, tiny.train.eval_every = 12, 4, 6
  summary = train(resolve(tiny), str(tmp_path))
  rows = read_metrics(tmp_path / 'metrics.jsonl')
  logs = [r for r in rows if 'loss' in r]
  evals = [r for r in rows if 'eval_loss' in r]
  assert [r['step'] for r in logs] == [4, 8, 12] and [r['step'] for r in evals] == [6, 12]
  for key in ('loss', 'lr', 'grad_norm', 'tokens', 'tokens_per_s', 'step_time_s', 'mfu'):
    assert all(np.isfinite(r[key]) for r in logs), key
  assert logs[-1]['tokens'] == 12 * tiny.data.batch_size * tiny.data.seq_len
  assert all({'eval_loss', 'eval_ppl', 'eval_bpb'} <= set(r) for r in evals)
  assert json.loads((tmp_path / 'config.json').read_text())['model']['norm'] == 'rmsnorm'
  saved = json.loads((tmp_path / 'summary.json').read_text())
  assert saved['eval_loss'] == summary['eval_loss'] == evals[-1]['eval_loss']
  assert any(name.startswith('events') for name in os.listdir(tmp_path / 'tb'))


def test_byte_model_beats_unigram_entropy(tiny):
  tiny.train.steps, tiny.train.eval_every = 300, 300
  tiny.data.batch_size = 16
  tiny.optim.warmup_steps = 10
  c = resolve(tiny)
  summary = train(c, None)
  entropy = data.load(c).stats['eval']['unigram_bits_per_byte']
  assert 4.0 < entropy < 5.5
  assert summary['eval_bpb'] < entropy - 1.0


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
