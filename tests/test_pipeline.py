"""The grain pipeline: packing, segments and weights, resumption, process shards, seeds."""
import grain
import numpy as np

from conftest import local_config
from lmjax import data, pipeline, tokenizers
from lmjax.config import default_config


def test_packing_never_loses_or_duplicates_a_byte(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
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
  c = local_config(corpus, tmp_path)
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


def test_restored_iterator_continues_exactly(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
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
  c = local_config(corpus, tmp_path)
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
  c = local_config(corpus, tmp_path)
  d = data.load(c)
  a = next(data.train_iterator(d, c))['inputs']
  np.testing.assert_array_equal(a, next(data.train_iterator(d, c))['inputs'])
  c2 = c.unlock()
  c2.seed = 1
  assert not np.array_equal(a, next(data.train_iterator(d, c2))['inputs'])


def test_pipeline_on_an_in_memory_source_predicts_within_documents_only():
  """pipeline.train_dataset on a plain list of records, no TFDS: every target is the next byte
  of its own document, and no target crosses a separator."""
  docs = [{'text': t} for t in ('abc', 'hello world', 'x' * 40, 'end.')]
  config = default_config().data
  config.seq_len, config.batch_size, config.shuffle_rows = 8, 2, 0
  batches = iter(pipeline.train_dataset(docs, tokenizers.ByteTokenizer(), config, seed=3))
  texts = {d['text'].encode() for d in docs}
  for _ in range(6):
    batch = next(batches)
    assert batch['inputs'].shape == batch['targets'].shape == (2, 8)
    np.testing.assert_array_equal(batch['inputs'][:, 1:], batch['targets'][:, :-1])
    counted = batch['weights'] > 0
    assert not np.any(batch['targets'][counted] == tokenizers.ByteTokenizer.sep_id)
    for row in range(2):  # each run of counted targets is a piece of one document
      seg = batch['segment_ids'][row]
      for s in np.unique(seg[counted[row]]):
        piece = bytes(batch['targets'][row][counted[row] & (seg == s)].astype(np.uint8))
        assert any(piece in t for t in texts)
