"""The token store: the stream of a split's documents, read back by any window, built atomically."""
import json
import os

import numpy as np
import pytest

from lmjax.data import token_store, tokenizers

TEXTS = ['abc', 'hello world', 'x' * 40, 'ünïcode ✓', '', 'end.', 'z' * 9]


def _stream(texts, tok):
  return np.concatenate([np.concatenate([[tok.sep_id], tok.encode(t)]) for t in texts])


def test_any_window_reads_back_the_stream_across_records_and_shards(tmp_path, monkeypatch):
  monkeypatch.setattr(token_store, 'CHUNK', 7)  # many records, several shards, a short last one
  monkeypatch.setattr(token_store, 'SHARD_RECORDS', 3)
  tok = tokenizers.ByteTokenizer()
  store = token_store.build(str(tmp_path / 'store'), TEXTS, tok)
  expected = _stream(TEXTS, tok)
  assert store.n_tokens == len(expected) and store.meta['records'] == -(-len(expected) // 7)
  assert len([n for n in os.listdir(tmp_path / 'store') if n.endswith('.array_record')]) == \
      -(-store.meta['records'] // 3)
  for start in range(len(expected)):
    for length in (1, 6, 7, 8, 20):
      if start + length <= len(expected):
        np.testing.assert_array_equal(store.read(start, length), expected[start:start + length])
  with pytest.raises(IndexError):
    store.read(len(expected) - 2, 3)
  lengths = [1 + len(tok.encode(t)) for t in TEXTS]
  np.testing.assert_array_equal(store.starts, np.cumsum([0] + lengths[:-1]))
  np.testing.assert_array_equal(store.document_starts(3, 20),
                                [s - 3 for s in store.starts if 3 <= s < 23])
  assert store.stats['documents'] == len(TEXTS) and store.stats['tokens'] == len(expected)
  assert store.stats['bytes'] == sum(len(t.encode()) for t in TEXTS)
  assert store.dtype == np.uint16


def test_a_failed_build_leaves_no_store(tmp_path):
  def texts():
    yield 'one document'
    raise KeyboardInterrupt  # killed half-way
  with pytest.raises(KeyboardInterrupt):
    token_store.build(str(tmp_path / 'store'), texts(), tokenizers.ByteTokenizer())
  assert not token_store.TokenStore.exists(str(tmp_path / 'store'))
  assert os.listdir(tmp_path) == []  # nor its temporary directory
  store = token_store.build(str(tmp_path / 'store'), TEXTS, tokenizers.ByteTokenizer())
  assert json.loads((tmp_path / 'store' / 'meta.json').read_text())['tokens'] == store.n_tokens


def test_named_documents_keep_their_names_and_unnamed_have_none(tmp_path):
  tok = tokenizers.ByteTokenizer()
  named = token_store.build(str(tmp_path / 'named'), [('ab', 'pkg/a.py'), ('cde', 'b.txt')], tok)
  assert named.names() == ['pkg/a.py', 'b.txt'] and named.n_documents == 2
  assert list(named.starts) == [0, 3]
  assert token_store.build(str(tmp_path / 'plain'), ['ab', 'cde'], tok).names() is None
