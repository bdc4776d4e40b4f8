"""Supervised fine-tuning from the config (data.dataset=chat_jsonl): whole examples packed into
rows with their loss masks, a run started from another run's params (train.init_params), and the
evaluation's loss, bits per byte and accuracy over the learned tokens alone, checked against
each example evaluated on its own."""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from lmjax.config import default_config, resolve, set_fields
from lmjax.core.rundir import RunDir
from lmjax.data import chat, loader, pipeline
from lmjax.data.tokenizers import ByteTokenizer
from lmjax.train import loop, trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pairs(n, seed):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    a, b = rng.integers(0, 50, 2)
    out.append({'prompt': f'{a}+{b}=', 'completion': f'{a + b}'} if rng.random() < 0.7 else
               {'messages': [{'role': 'user', 'content': f'{a}+{b}?'},
                             {'role': 'assistant', 'content': f'{a + b}'}]})
  return out


def _write(path, examples):
  path.write_text(''.join(json.dumps(e) + '\n' for e in examples))
  return str(path)


def _config(**fields):
  c = default_config()
  c.data.seq_len, c.data.batch_size, c.data.eval_batches = 32, 8, 2
  c.train.log_every, c.optim.warmup_steps = 10, 5
  c.checkpoint.async_save = False
  return resolve(set_fields(c, fields))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('sft')
  base = str(tmp / 'base')
  loop.train(_config(data__dataset='random', train__steps=8, train__eval_every=8), base)
  files = dict(data__paths=_write(tmp / 'train.jsonl', _pairs(300, 0)),
               data__eval_paths=_write(tmp / 'eval.jsonl', _pairs(40, 1)))
  sft = str(tmp / 'sft')
  config = _config(data__dataset='chat_jsonl', train__steps=60, train__eval_every=20,
                   train__init_from=base, train__init_params=True, train__init_step=-1, **files)
  summary, _ = loop.train(config, sft)
  return base, sft, config, summary, files


def test_packed_rows_hold_whole_examples_with_their_masks():
  examples = [chat.render(e, ByteTokenizer(), 32) for e in _pairs(50, 2)]
  store = chat.to_store(examples, ByteTokenizer())
  packed = pipeline.rows_of(store, 32, seed=0)
  assert isinstance(packed, pipeline.Packed)
  seen = []
  batch = pipeline.Batches(packed, packed.count).batch(0)  # every row once (one epoch)
  for j in range(packed.count):
    row = np.append(batch['inputs'][j], batch['targets'][j][-1])
    segments = batch['segment_ids'][j]
    for s in np.unique(segments):
      where = np.flatnonzero(segments == s)
      tokens, weights = row[where[0]:where[-1] + 2], batch['weights'][j][where]
      if tokens[0] != 256 or len(tokens) < 2 or not (tokens[1:] != 256).any():
        assert weights.sum() == 0  # padding: separators, never learned
        continue
      match = [i for i, (t, _) in enumerate(examples) if len(t) <= len(tokens)
               and np.array_equal(t, tokens[:len(t)])]
      assert match, 'a row holds a cut example'
      t, m = examples[match[0]]
      np.testing.assert_array_equal(weights[:len(t) - 1], m[1:])  # the target's mask
      seen.append(match[0])
  assert sorted(seen) == list(range(50))  # each example whole, once per epoch
  assert store.stats['documents'] == 50 and 0 < store.stats['learned_tokens'] < store.n_tokens


def test_fine_tuning_starts_from_the_runs_params_and_learns_the_answers(runs):
  base, sft, _, summary, _ = runs
  rows = RunDir(sft).read_metrics()
  evals = [r for r in rows if 'eval_loss' in r]
  assert [r['step'] for r in evals] == [20, 40, 60]
  assert min(r['step'] for r in rows) == 10  # steps from 0 (log_every 10), not the base's 8
  assert evals[-1]['eval_loss'] < evals[0]['eval_loss'] - 0.3
  assert evals[-1]['eval_accuracy'] > evals[0]['eval_accuracy']
  assert summary['eval_accuracy'] == evals[-1]['eval_accuracy']


def test_the_first_step_starts_from_the_base_params(runs):
  base, _, config, _, _ = runs
  from lmjax.train import start
  setup = start.set_up(config)
  begun = start.start_state(config, setup, None)
  assert begun.step == 0 and begun.how == 'branched'
  assert 'its step 8' in begun.messages[-1]
  want = trained.load(base).params
  for a, b in zip(jax.tree_util.tree_leaves(begun.state.params),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_evaluation_is_over_the_learned_tokens_of_each_example_alone(runs):
  """The run's evaluation (packed rows, segment masks, weights) equals each held-out example
  run through the model by itself, its nats, argmax hits and bytes summed over its learned
  targets only (1e-5 relative)."""
  _, sft, config, summary, _ = runs
  run = trained.load(sft)
  data = loader.load(config)
  nats = hits = count = n_bytes = 0.0
  for batch in loader.eval_batches(data, config):
    for j in range(len(batch['inputs'])):
      row = np.append(batch['inputs'][j], batch['targets'][j][-1])
      for s in np.unique(batch['segment_ids'][j]):
        where = np.flatnonzero(batch['segment_ids'][j] == s)
        w = batch['weights'][j][where]
        if not w.any():
          continue
        tokens = row[where[0]:where[-1] + 2]
        logits = run.model.apply({'params': run.params}, tokens[None, :-1])[0]
        logp = jax.nn.log_softmax(np.asarray(logits, np.float64), -1)
        targets = tokens[1:]
        picked = np.take_along_axis(np.asarray(logp), targets[:, None], -1)[:, 0]
        nats -= float((picked * w).sum())
        hits += float(((np.argmax(logits, -1) == targets) * w).sum())
        count += float(w.sum())
        n_bytes += float(sum(len(ByteTokenizer().piece(t)) * x for t, x in zip(targets, w)))
  assert summary['eval_loss'] == pytest.approx(nats / count, rel=1e-5)
  assert summary['eval_accuracy'] == pytest.approx(hits / count, rel=1e-5)
  assert summary['eval_bpb'] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
  assert count < sum(b['inputs'].size for b in loader.eval_batches(data, config)) / 3


BAD = [({'messages': [{'role': 'bot', 'content': 'x'}]}, "role 'bot'"),
       ({'prompt': 'a', 'completion': ' '}, 'the completion is empty'),
       ({'prompt': 'x' * 80, 'completion': 'y'}, 'no room for the answer')]


def test_bad_chat_data_is_one_line_and_exit_2(tmp_path):
  """Each bad example stops the data loading in one line naming it (the library), and
  launch.train turns that into its one line and exit 2 with nothing written (the first)."""
  for i, (line, message) in enumerate(BAD):
    path = _write(tmp_path / f'bad{i}.jsonl', _pairs(3, 0) + [line])
    with pytest.raises(chat.ChatDataError, match=message) as caught:
      loader.load(_config(data__dataset='chat_jsonl', data__paths=path))
    assert '\n' not in str(caught.value) and f'bad{i}.jsonl line 4' in str(caught.value)
  line, message = BAD[0]
  bad = _write(tmp_path / 'bad.jsonl', _pairs(3, 0) + [line])
  workdir = tmp_path / 'run'
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={workdir}', '--config.data.dataset=chat_jsonl', f'--config.data.paths={bad}',
       '--config.data.seq_len=32'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0] and 'bad.jsonl line 4' in lines[0], lines
  assert not workdir.exists()


def test_launch_eval_refuses_a_fine_tuned_run_in_one_line(runs):
  from lmjax.eval.outputs import EvalInputError, evaluate_run
  with pytest.raises(EvalInputError, match='was fine-tuned on data.dataset=chat_jsonl'):
    evaluate_run(runs[1])


def test_init_params_refuses_another_model_and_another_tokenizer(runs, tmp_path):
  from lmjax.train.checkpoint import CheckpointError
  base, _, _, _, files = runs
  common = dict(data__dataset='chat_jsonl', train__steps=5, train__init_from=base,
                train__init_params=True, train__init_step=-1, **files)
  with pytest.raises(CheckpointError, match="that run's model differs in .*model.d_model"):
    loop.train(_config(model__d_model=32, **common), str(tmp_path / 'a'))
  from lmjax.data.tokenizers import byte_tokenizer_json
  (tmp_path / 'tokenizer.json').write_text(byte_tokenizer_json())
  with pytest.raises(CheckpointError, match='reads tokenizer byte'):  # same ids, other name
    loop.train(_config(data__tokenizer='hf', data__hf_tokenizer=str(tmp_path / 'tokenizer.json'),
                       data__hf_sep_token='<sep>', data__chat_template='plain', **common),
               str(tmp_path / 'b'))
  with pytest.raises(Exception, match='init_params=True is not allowed'):
    _config(train__init_params=True)
