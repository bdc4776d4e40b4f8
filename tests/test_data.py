"""The data path: TFDS builders, tokenizers, the grain pipeline, resumption, sharding, bad input."""
import os
import signal
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import pytest

from lmjax import data, datasets, pipeline, tokenizers
from lmjax.config import ConfigError, default_config, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ['def f(x):\n    return x + 1\n', 'héllo wörld — ünïcode ✓\n' * 3, 'a' * 700,
         'print("hi")\n', '# ' + 'ab cd ' * 50, 'x = [1, 2, 3]\n' * 9, '\u4e2d\u6587 text\n',
         'short', 'class A:\n    pass\n' * 4, 'emoji 🙂 and tabs\t\tend\n']


@pytest.fixture
def corpus(tmp_path):
  """A local corpus of 60 small UTF-8 files of varied lengths, plus its TFDS data dir."""
  root = tmp_path / 'corpus'
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(60):
    text = ''.join(TEXTS[j] for j in rng.integers(0, len(TEXTS), rng.integers(1, 6)))
    (root / f'doc{i:02d}.txt').write_text(text, encoding='utf-8')
  return root


def _config(corpus, tmp_path, **data_fields):
  c = default_config()
  c.data.dataset = 'local_text'
  c.data.paths = str(corpus)
  c.data.data_dir = str(tmp_path / 'tfds')
  c.data.val_percent = 20
  c.data.seq_len = 32
  c.data.batch_size = 4
  c.data.shuffle_rows = 16
  c.data.eval_batches = 2
  for k, v in data_fields.items():
    c.data[k] = v
  return resolve(c)


def test_stdlib_split_is_a_fixed_hash_of_the_path():
  import hashlib
  for rel in ('os.py', 'json/decoder.py', 'email/mime/text.py'):
    assert datasets.is_validation(rel, 5) == (
        int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 100 < 5)
  share = np.mean([datasets.is_validation(f'f{i}.py', 5) for i in range(4000)])
  assert 0.03 < share < 0.07


def test_local_text_prepares_both_splits_and_counts(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  texts = sorted(p.read_text(encoding='utf-8') for p in corpus.iterdir())
  got = sorted(data._text(src[i], 'text') for src in (d.train, d.eval) for i in range(len(src)))
  assert got == texts
  assert d.stats['train']['documents'] + d.stats['eval']['documents'] == 60
  assert d.stats['train']['bytes'] + d.stats['eval']['bytes'] == sum(
      len(t.encode()) for t in texts)


def test_packing_never_loses_or_duplicates_a_byte(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  tok = d.tokenizer
  order = list(grain.MapDataset.range(len(d.train)).seed(c.seed).shuffle())
  expected = np.concatenate(
      [np.concatenate([[tok.sep_id], tok.encode(data._text(d.train[i], 'text'))])
       for i in order])
  rows = iter(pipeline.packed_train_rows(d.train, tok, c.data, c.seed))
  got = []
  while sum(map(len, got)) < len(expected):
    row = next(rows)
    got.append(row['tokens'][row['tokens_segment_ids'] > 0])
  stream = np.concatenate(got)[:len(expected)]
  np.testing.assert_array_equal(stream, expected)
  # Separators removed, the bytes are the corpus's documents in shuffled order.
  body = bytes(stream[stream != tok.sep_id].astype(np.uint8))
  assert body == b''.join(data._text(d.train[i], 'text').encode() for i in order)


def test_batches_carry_segments_positions_and_boundary_weights(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  batch = next(data.train_iterator(d, c))
  assert set(batch) == {'inputs', 'targets', 'positions', 'segment_ids', 'weights'}
  assert batch['inputs'].shape == (4, 32)
  seg, pos, w = batch['segment_ids'], batch['positions'], batch['weights']
  starts = batch['inputs'] == d.tokenizer.sep_id
  assert starts.any()
  assert np.all(pos[starts] == 0)
  changes = np.diff(seg, axis=1) != 0
  assert np.all(w[:, :-1][changes] == 0) and np.all(pos[:, 1:][changes] == 0)
  assert w.mean() > 0.9


def test_packed_rows_do_not_attend_across_documents(corpus, tmp_path):
  """A real packed row gives every document the logits it has alone."""
  c = _config(corpus, tmp_path)
  d = data.load(c)
  from lmjax.steps import build_model_and_optimizer, init_params
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(0))
  batch = next(data.train_iterator(d, c))
  row = {k: v[:1] for k, v in batch.items()}
  packed = model.apply({'params': params}, row['inputs'], row['positions'], row['segment_ids'])
  seg = row['segment_ids'][0]
  checked = 0
  for s in np.unique(seg[seg > 0]):
    idx = np.where(seg == s)[0]
    alone = model.apply({'params': params}, row['inputs'][:, idx], row['positions'][:, idx])
    np.testing.assert_allclose(packed[0, idx], alone[0], rtol=2e-5, atol=2e-5)
    checked += 1
  assert checked >= 2


def test_restored_iterator_continues_exactly(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  straight = data.train_iterator(d, c)
  for _ in range(7):
    next(straight)
  state = straight.get_state()
  expected = [next(straight) for _ in range(12)]
  resumed = data.train_iterator(d, c)
  resumed.set_state(state)
  for a, b in zip(expected, [next(resumed) for _ in range(12)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_two_processes_get_disjoint_halves_of_the_global_batch(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  whole = data.train_iterator(d, c)
  halves = [data.train_iterator(d, c, p, 2) for p in range(2)]
  for _ in range(5):
    g = next(whole)
    a, b = next(halves[0]), next(halves[1])
    for k in g:
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k])
    assert a['inputs'].shape[0] == b['inputs'].shape[0] == 2


def test_same_seed_same_batches_other_seed_other_batches(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  a = next(data.train_iterator(d, c))['inputs']
  np.testing.assert_array_equal(a, next(data.train_iterator(d, c))['inputs'])
  c2 = c.unlock()
  c2.seed = 1
  assert not np.array_equal(a, next(data.train_iterator(d, c2))['inputs'])


def test_eval_batches_are_fixed(corpus, tmp_path):
  c = _config(corpus, tmp_path)
  d = data.load(c)
  first, again = data.eval_batches(d, c), data.eval_batches(d, c)
  assert len(first) == 2
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['targets'], b['targets'])


@pytest.mark.parametrize('model_type', ['bpe', 'unigram'])
def test_sentencepiece_round_trips_and_counts_bytes_exactly(tmp_path, model_type):
  path = str(tmp_path / f'sp-{model_type}.model')
  texts = [TEXTS[i % len(TEXTS)] * (1 + i % 3) for i in range(200)]
  tok = tokenizers.train_sentencepiece(texts, path, 400, model_type)
  assert 300 < tok.vocab_size <= 400 and tok.sep_id == 1
  table = tok.token_bytes()
  for text in TEXTS + ['never seen: \u00e6\u00f8\u00e5 \U0001f680 \x00\x7f', '  lead and trail  ']:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert table[ids].sum() == len(text.encode('utf-8'))
  assert len(tok.encode('def f(x):\n    return x + 1\n')) < len('def f(x):\n    return x + 1\n')


def test_sentencepiece_tokenizer_is_trained_once_and_reused(corpus, tmp_path):
  c = _config(corpus, tmp_path, tokenizer='sentencepiece', vocab_size=400)
  d = data.load(c)
  path = d.tokenizer.path
  mtime = os.path.getmtime(path)
  assert data.load(c).tokenizer.path == path and os.path.getmtime(path) == mtime
  batch = next(data.train_iterator(d, c))
  assert batch['inputs'].max() < 400
  assert d.stats['train']['tokens_per_byte'] < 0.9


def test_byte_tokenizer_bytes_per_token():
  tb = tokenizers.ByteTokenizer().token_bytes()
  assert tb[:256].sum() == 256 and tb[256] == 0


# --------------------------------------------------------------------------------- bad input
def test_unknown_dataset_missing_directory_empty_corpus(tmp_path):
  c = default_config()
  c.data.data_dir = str(tmp_path / 'tfds')
  c.data.dataset = 'surely_not_a_dataset'
  with pytest.raises(datasets.DataError, match='neither one of python_stdlib, local_text'):
    data.load(resolve(c))
  c.data.dataset, c.data.paths = 'local_text', str(tmp_path / 'missing')
  with pytest.raises(datasets.DataError, match='does not exist'):
    data.load(resolve(c))
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'a.txt').write_text('   \n')
  c.data.paths = str(tmp_path / 'empty')
  with pytest.raises(datasets.DataError, match='split .* is empty'):
    data.load(resolve(c))


def test_non_utf8_files_are_skipped_and_counted_or_fail(corpus, tmp_path):
  (corpus / 'latin1.txt').write_bytes('caf\xe9 cr\xe8me'.encode('latin-1'))
  c = _config(corpus, tmp_path)
  b = datasets.prepare(c.data)
  assert b.info.metadata['skipped_non_utf8'] == 1
  c = _config(corpus, tmp_path / 'other', non_utf8='fail')
  with pytest.raises(datasets.DataError, match='latin1.txt is not UTF-8'):
    datasets.prepare(c.data)


def test_vocabulary_too_small_for_sentencepiece():
  c = default_config()
  c.data.tokenizer, c.data.vocab_size = 'sentencepiece', 200
  with pytest.raises(ConfigError, match='config.data.vocab_size=200'):
    resolve(c)
  with pytest.raises(ValueError, match='too small'):
    tokenizers.train_sentencepiece(['abc'], '/nonexistent/x.model', 100)


def test_validation_split_smaller_than_one_batch(corpus, tmp_path):
  c = _config(corpus, tmp_path).unlock()
  c.data.batch_size, c.data.seq_len = 64, 64
  c.model.max_seq_len = 64
  with pytest.raises(datasets.DataError, match='fewer tokens than one batch'):
    data.eval_batches(data.load(c), c)


def test_offline_catalogue_dataset_names_the_way_out(tmp_path):
  c = default_config()
  c.data.data_dir, c.data.dataset = str(tmp_path / 'tfds'), 'tiny_shakespeare'
  t0 = time.time()
  with pytest.raises(datasets.DataError, match='local_text'):
    datasets.prepare(resolve(c).data)
  assert time.time() - t0 < 60


def test_killed_prepare_leaves_nothing_a_later_run_reads(corpus, tmp_path):
  for i in range(400):  # enough files that preparing takes a moment
    (corpus / f'extra{i:03d}.txt').write_text(f'document {i}\n' * 200)
  c = _config(corpus, tmp_path)
  code = ('import sys; from lmjax import datasets; from lmjax.config import default_config;'
          'c = default_config(); c.data.dataset = "local_text"; c.data.paths = sys.argv[1];'
          'c.data.data_dir = sys.argv[2]; c.data.val_percent = 20; datasets.prepare(c.data)')
  proc = subprocess.Popen([sys.executable, '-c', code, str(corpus), c.data.data_dir], cwd=ROOT)
  deadline = time.time() + 60
  while time.time() < deadline and proc.poll() is None:
    if any('incomplete' in name for _, dirs, _ in os.walk(c.data.data_dir) for name in dirs):
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not datasets.builder(c.data).is_prepared()
  d = data.load(c)
  assert d.stats['train']['documents'] + d.stats['eval']['documents'] == 460
