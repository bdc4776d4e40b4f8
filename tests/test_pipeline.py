"""Batches by index from the token store: one pass over every window per epoch, segments and
weights, resumption at a step, process shards, seeds."""
import numpy as np
import pytest

from conftest import local_config
from lmjax.config import default_config
from lmjax.data import datasets, loader, pipeline, token_store, tokenizers


def _stream(d):
  """The train split's documents in stored order, each led by the separator."""
  return d.train.read(0, d.train.n_tokens)


def test_every_token_once_per_epoch_up_to_the_final_partial_window(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  tok = d.tokenizer
  source = datasets.prepare(c.data).source('train')
  stream = _stream(d)
  # The stream is the split's documents in stored order, a separator before each.
  np.testing.assert_array_equal(stream, np.concatenate(
      [np.concatenate([[tok.sep_id], tok.encode(source[i]['text'])]) for i in range(len(source))]))
  assert d.train.stats['documents'] == len(source) < len(list(corpus.iterdir()))
  length = c.data.seq_len + 1
  windows = pipeline.Windows(d.train, c.data.seq_len, c.seed)
  assert windows.count == len(stream) // length
  batches = loader.train_iterator(d, c)
  rows = []
  while len(rows) < 2 * windows.count:  # two epochs
    b = next(batches)
    rows.extend(np.concatenate([b['inputs'], b['targets'][:, -1:]], axis=1))
  for epoch in range(2):
    order = [windows.window(epoch * windows.count + i) for i in range(windows.count)]
    assert sorted(order) == list(range(windows.count))  # each window once
    got = np.concatenate([rows[epoch * windows.count + order.index(w)]
                          for w in range(windows.count)])
    np.testing.assert_array_equal(got, stream[:windows.count * length])
  assert order != sorted(order)  # and in a shuffled order
  assert [windows.window(i) for i in range(windows.count)] != order  # another one per epoch


def test_batches_carry_segments_positions_and_boundary_weights(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  batches = loader.train_iterator(d, c)
  first = next(batches)
  assert set(first) == {'inputs', 'targets', 'positions', 'segment_ids', 'weights'}
  assert first['inputs'].shape == (4, 32)
  more = [first, *(next(batches) for _ in range(7))]
  batch = {k: np.concatenate([b[k] for b in more]) for k in first}
  seg, pos, w = batch['segment_ids'], batch['positions'], batch['weights']
  starts = batch['inputs'] == d.tokenizer.sep_id
  assert starts.any()
  assert np.all(pos[starts] == 0) and np.all(pos[:, 0] == 0) and np.all(seg[:, 0] == 1)
  changes = np.diff(seg, axis=1) != 0
  assert np.all(w[:, :-1][changes] == 0) and np.all(pos[:, 1:][changes] == 0)
  assert np.all(w[batch['targets'] == d.tokenizer.sep_id] == 0)
  assert w.mean() > 0.9


def test_the_batch_of_a_step_is_a_function_of_seed_and_step(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  straight = loader.train_iterator(d, c)
  for _ in range(7):
    next(straight)
  assert straight.get_state() == {'step': 7}
  expected = [next(straight) for _ in range(12)]
  resumed = loader.train_iterator(d, c)
  resumed.set_state({'step': 7})
  for a, b in zip(expected, [next(resumed) for _ in range(12)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  with pytest.raises(ValueError, match='older lmjax input pipeline'):
    resumed.set_state({'iterator': 'a grain state'})


def test_processes_read_disjoint_rows_whose_union_is_the_global_batch(corpus, tmp_path):
  """For several steps, and for a resumed iterator; with 1, 2 and 4 processes."""
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  whole = loader.train_iterator(d, c)
  globals_ = [next(whole) for _ in range(6)]
  for count in (2, 4):
    parts = [loader.train_iterator(d, c, p, count) for p in range(count)]
    for step, g in enumerate(globals_):
      if step == 3:  # resume each process at step 3
        parts = [loader.train_iterator(d, c, p, count) for p in range(count)]
        for it in parts:
          it.set_state({'step': 3})
      got = [next(it) for it in parts]
      assert all(x['inputs'].shape[0] == 4 // count for x in got)
      for k in g:
        np.testing.assert_array_equal(np.concatenate([x[k] for x in got]), g[k])


def test_same_seed_same_batches_other_seed_other_batches(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  a = next(loader.train_iterator(d, c))['inputs']
  np.testing.assert_array_equal(a, next(loader.train_iterator(d, c))['inputs'])
  c2 = c.unlock()
  c2.seed = 1
  assert not np.array_equal(a, next(loader.train_iterator(d, c2))['inputs'])


def test_batches_of_a_store_built_from_texts_predict_within_documents_only(tmp_path):
  """A store built from a plain list of texts, no TFDS: every counted target is the next byte of
  its own document, and no target crosses a separator."""
  texts = ['abc', 'hello world', 'x' * 40, 'end.']
  tok = tokenizers.ByteTokenizer()
  store = token_store.build(str(tmp_path / 'store'), texts, tok)
  config = default_config()
  config.data.seq_len, config.data.batch_size = 8, 2
  batches = pipeline.Batches(pipeline.Windows(store, 8, seed=3), batch_size=2)
  for _ in range(6):
    batch = next(batches)
    assert batch['inputs'].shape == batch['targets'].shape == (2, 8)
    np.testing.assert_array_equal(batch['inputs'][:, 1:], batch['targets'][:, :-1])
    counted = batch['weights'] > 0
    assert not np.any(batch['targets'][counted] == tok.sep_id)
    for row in range(2):  # each run of counted targets is a piece of one document
      seg = batch['segment_ids'][row]
      for s in np.unique(seg[counted[row]]):
        piece = bytes(batch['targets'][row][counted[row] & (seg == s)].astype(np.uint8))
        assert any(piece in t.encode() for t in texts)
