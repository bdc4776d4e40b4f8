"""Evaluation: ECE against its formula, whole-split counts against the store, launch.eval's bits
per byte against the training loop's, the outputs, launch.sample, and bad inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lmjax.eval import per_token
from tests import xla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic(conf, correct, vocab=10):
  """A batch and step output of len(conf) tokens whose top-1 confidence is `conf` and is right
  where `correct`."""
  n = len(conf)
  targets = np.zeros((1, n), np.int32)
  top_id = np.zeros((1, n, 2), np.int32)
  top_id[0, :, 0] = np.where(correct, 0, 1)
  top_logp = np.stack([np.log(conf), np.log((1 - conf) / 2)], -1)[None]
  batch = {'targets': targets, 'weights': np.ones((1, n)), 'positions': np.zeros((1, n), int)}
  out = {'nats': -np.where(correct, np.log(conf), np.log((1 - conf) / 2))[None],
         'top_id': top_id, 'top_logp': top_logp}
  return batch, out


def test_ece_of_a_calibrated_predictor_is_about_zero():
  rng = np.random.default_rng(0)
  conf = rng.uniform(0.05, 0.999, 400_000)
  tally = per_token.Tally(np.ones(10), 1)
  tally.add(*synthetic(conf, rng.uniform(size=conf.shape) < conf))
  assert tally.report()['ece'] < 0.005


def test_ece_of_an_overconfident_predictor_is_the_formula():
  # Confidence 0.9 everywhere, right 60% of the time: one bin, ECE = |0.6 - 0.9| = 0.3.
  # Half at 0.9 (right 60%) and half at 0.5 (right 50%): ECE = 0.5·0.3 + 0.5·0 = 0.15.
  conf = np.full(1000, 0.9)
  correct = np.arange(1000) % 10 < 6
  tally = per_token.Tally(np.ones(10), 1)
  tally.add(*synthetic(conf, correct))
  report = tally.report()
  assert report['ece'] == pytest.approx(0.3, abs=1e-9)
  assert report['accuracy'] == pytest.approx(0.6)
  tally.add(*synthetic(np.full(1000, 0.5), np.arange(1000) % 2 == 0))
  assert tally.report()['ece'] == pytest.approx(0.15, abs=1e-9)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A tiny run of 20 steps on a corpus in two directories, evaluated at its end."""
  tmp = tmp_path_factory.mktemp('evalrun')
  rng = np.random.default_rng(0)
  for folder in ('pkg', 'docs'):
    (tmp / 'corpus' / folder).mkdir(parents=True)
    for i in range(15):
      ext = '.py' if folder == 'pkg' else '.md'
      words = ' '.join(rng.choice(['def', 'x', 'return', '(', ')', 'é', '\n', 'class'], 80))
      (tmp / 'corpus' / folder / f'f{i}{ext}').write_text(words, encoding='utf-8')
  (tmp / 'corpus' / 'top.txt').write_text('top level file\n' * 20, encoding='utf-8')
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp}/run', '--config.train.steps=20', '--config.train.eval_every=20',
       '--config.data.dataset=local_text', f'--config.data.paths={tmp}/corpus',
       f'--config.data.data_dir={tmp}/tfds', '--config.data.val_percent=40',
       '--config.data.eval_batches=2', '--config.optim.lr=1e-2'],
      cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  return tmp / 'run'


def _eval(*flags):
  return subprocess.run([sys.executable, '-m', 'launch.eval', *flags], cwd=ROOT,
                        capture_output=True, text=True)


@pytest.mark.slow
def test_training_batches_give_the_training_loops_bits_per_byte(run):
  out = _eval(f'--workdir={run}', '--rows=training', '--page_documents=0')
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((run / 'summary.json').read_text())
  report = json.loads((run / 'eval' / 'validation-training_batches-20.json').read_text())
  assert report['bits_per_byte'] == pytest.approx(summary['eval_bpb'], rel=1e-6)
  assert report['loss'] == pytest.approx(summary['eval_loss'], rel=1e-6)


@pytest.mark.slow
def test_whole_split_counts_every_token_once_and_writes_its_outputs(run):
  from lmjax.data import token_store
  out = _eval(f'--workdir={run}', '--page_documents=3', '--batch_size=3')
  assert out.returncode == 0, out.stderr[-2000:]
  report = json.loads((run / 'eval' / 'validation-20.json').read_text())
  [store_dir] = [os.path.join(d, 'validation') for d, subdirs, _ in os.walk(run.parent / 'tfds')
                 if 'validation' in subdirs and d.endswith('byte')]
  store = token_store.TokenStore(store_dir)
  # Every token but the separators (which start documents) is a target exactly once.
  assert report['tokens'] == store.n_tokens - store.n_documents
  assert report['bytes'] == store.stats['bytes']
  assert report['documents'] == store.n_documents
  for grouping in ('directory', 'extension'):
    groups = report['by_group'][grouping]
    assert sum(g['tokens'] for g in groups.values()) == report['tokens']
  assert set(report['by_group']['extension']) <= {'.py', '.md', '.txt'}
  assert sum(report['by_position']['tokens']) == report['tokens']
  assert report['perplexity'] == pytest.approx(np.exp(report['loss']))
  assert 0 <= report['ece'] <= 1
  page = (run / 'eval' / 'validation-20-logprobs.html').read_text(encoding='utf-8')
  assert page.count('<h2>') == 3 and 'title=' in page
  for name in ('reliability', 'position'):
    assert (run / 'eval' / f'validation-20-{name}.png').read_bytes()[:4] == b'\x89PNG'
  # Compared with itself, every piece differs by zero.
  out = _eval(f'--workdir={run}', '--page_documents=1', f'--compare={run}', '--documents=2')
  assert out.returncode == 0, out.stderr[-2000:]
  page = (run / 'eval' / 'validation-20-logprobs.html').read_text(encoding='utf-8')
  assert 'this − other: +0.000' in page and 'this − other: +0.1' not in page


@pytest.mark.slow
@pytest.mark.parametrize('flags,message', [
    (['--workdir=/nonexistent/run'], '--workdir=/nonexistent/run: no such directory'),
    (['--step=7'], '--step=7: no checkpoint at that step'),
    (['--split=nope'], '--split=nope'),
    (['--documents=-1'], '--documents=-1 is not allowed'),
])
def test_bad_eval_input_is_one_line_and_writes_nothing(run, flags, message):
  before = sorted(os.listdir(run))
  if not any(f.startswith('--workdir') for f in flags):
    flags = [f'--workdir={run}', *flags]
  out = _eval(*flags)
  assert out.returncode == 2
  assert out.stderr.strip().count('\n') == 0 and message in out.stderr, out.stderr
  assert sorted(os.listdir(run)) == before


@pytest.mark.slow
def test_sample_greedy_with_and_without_cache_and_bad_flags(run):
  def sample(*flags):
    return subprocess.run([sys.executable, '-m', 'launch.sample', f'--workdir={run}', *flags],
                          cwd=ROOT, capture_output=True, text=True)
  outs = []
  for cache in ('--cache', '--nocache'):
    path = run.parent / f'samples{cache}.jsonl'
    out = sample('--prompt=def ', '--prompt=class x(', '--temperature=0', '--max_new_tokens=12',
                 cache, f'--output={path}')
    assert out.returncode == 0, out.stderr[-2000:]
    outs.append([json.loads(line) for line in path.read_text().splitlines()])
  assert [r['tokens'] for r in outs[0]] == [r['tokens'] for r in outs[1]]
  assert outs[0][1]['prompt'] == 'class x(' and len(outs[0][1]['logprobs']) == len(
      outs[0][1]['tokens'])
  out = sample('--prompt=a', '--top_p=0')
  assert out.returncode == 2 and '--top_p=0.0 is not allowed' in out.stderr
  out = sample()
  assert out.returncode == 2 and 'no prompt' in out.stderr
  # An --output that is a directory: one line, before any decoding, nothing written.
  before = sorted(os.listdir(run.parent)), sorted(os.listdir(run))
  out = sample('--prompt=a', f'--output={run.parent}')
  assert out.returncode == 2 and out.stderr.strip().count('\n') == 0, out.stderr
  assert f'--output={run.parent} is a directory' in out.stderr
  assert (sorted(os.listdir(run.parent)), sorted(os.listdir(run))) == before
  # Diverse beam search: each group's best text in the row, the best of them as its text.
  from lmjax.infer.samples import continue_run
  _, rows = continue_run(str(run), ['def '], max_new_tokens=8, beam=4, beam_groups=2,
                         diversity=2.0)
  assert rows[0]['beam_groups'] == 2 and len(rows[0]['group_texts']) == 2
  assert rows[0]['text'] in rows[0]['group_texts']


@pytest.mark.slow
def test_a_notebooks_matplotlib_backend_is_left_as_it_was(run):
  # As in a notebook: the kernel's backend chosen first, then lmjax.analysis evaluates a run and
  # draws its figures (on the Agg canvas, lmjax/core/figures.py), never through pyplot.
  code = ('import sys, matplotlib; matplotlib.use("svg"); import lmjax.analysis; '
          f'r = lmjax.analysis.evaluate({str(run)!r}, documents=2, page_documents=1, '
          'log=lambda *a: None); '
          'print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules, r["tokens"] > 0)')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ['svg', 'False', 'True']


@pytest.mark.slow
def test_a_sharded_evaluation_gives_the_unsharded_numbers(run):
  reports = []
  for mesh, env in ((None, {}), ('1,2,1', {'XLA_FLAGS': xla.flags(2)})):
    out = subprocess.run([sys.executable, '-m', 'launch.eval', f'--workdir={run}',
                          '--documents=4', '--page_documents=0',
                          *([f'--mesh={mesh}'] if mesh else [])],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    reports.append(json.loads((run / 'eval' / 'validation-20.json').read_text()))
  assert reports[0]['tokens'] == reports[1]['tokens']
  for k in ('loss', 'bits_per_byte', 'accuracy', 'ece'):
    assert reports[1][k] == pytest.approx(reports[0][k], rel=1e-5, abs=1e-7), k


@pytest.mark.slow
def test_exported_params_evaluate_like_their_checkpoint(run, tmp_path):
  from lmjax.train import checkpoint, trained
  checkpoint.export_params(str(tmp_path / 'params'), trained.load(str(run)).params)
  reports = []
  for flag in ('--step=20', f'--params={tmp_path}/params'):
    out = _eval(f'--workdir={run}', '--documents=3', '--page_documents=0', flag)
    assert out.returncode == 0, out.stderr[-2000:]
    name = 'validation-20.json' if flag == '--step=20' else 'validation-params.json'
    reports.append(json.loads((run / 'eval' / name).read_text()))
  assert reports[0]['loss'] == reports[1]['loss'] and reports[1]['step'] == -1
  out = _eval(f'--workdir={run}', f'--params={tmp_path}/missing')
  assert out.returncode == 2 and 'no such directory' in out.stderr
