"""A split tokenised once: the token stream of its documents in array_record shards, with the
offsets where documents start.

The stream is, for each document of the split in its stored order, the separator and then the
document's tokens (lmjax/data/tokenizers.py), so document d occupies [starts[d], starts[d + 1]).
It is cut into records of `CHUNK` tokens (the last one shorter), `SHARD_RECORDS` records per
array_record file, written with group_size 1 so that any record is read on its own; a window of
the stream reads the one or two records it overlaps. `starts.npy` holds the document offsets
(int64, memory-mapped when read), `meta.json` the sizes, the token dtype (uint16 while the
vocabulary fits it, else uint32) and the split's statistics (lmjax/data/loader.py prints them).

`build` tokenises in one pass and writes into a temporary directory renamed into place when
complete, so a killed build leaves nothing a later run would read. Levanter and MaxText train
from such caches too; this one is keyed by dataset, tokenizer and split
(DATA_DIR/.../tokens/<tokenizer>/<split>/, beside the prepared TFDS dataset).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

CHUNK = 1 << 13          # tokens per record (random reads of ~0.1 ms, compressed)
SHARD_RECORDS = 8192     # records per array_record file (64 Mi tokens)
FORMAT = 1


class _Stats:
  """Documents, UTF-8 bytes, tokens and the byte histogram of a split, counted while it is
  tokenised."""

  def __init__(self):
    self.documents = self.bytes = self.tokens = 0
    self.counts = np.zeros(256, np.int64)

  def add(self, raw: bytes, n_tokens: int):
    self.documents += 1
    self.bytes += len(raw)
    self.tokens += n_tokens
    self.counts += np.bincount(np.frombuffer(raw, np.uint8), minlength=256)

  def result(self) -> dict:
    """A split's statistics: the unigram entropy of the bytes is what a model with no context at
    all could reach, in bits per byte."""
    p = self.counts[self.counts > 0] / max(self.counts.sum(), 1)
    return {'documents': self.documents, 'bytes': self.bytes, 'tokens': self.tokens,
            'tokens_per_byte': self.tokens / max(self.bytes, 1),
            'unigram_bits_per_byte': float(-(p * np.log2(p)).sum())}


class _Writer:
  """Appends tokens, writing full records of CHUNK tokens to a new shard every SHARD_RECORDS."""

  def __init__(self, folder, dtype):
    self.folder, self.dtype = folder, dtype
    self.pending, self.n_pending, self.records, self.shard = [], 0, 0, None

  def append(self, tokens: np.ndarray):
    self.pending.append(tokens.astype(self.dtype))
    self.n_pending += len(tokens)
    if self.n_pending >= CHUNK:
      flat = np.concatenate(self.pending)
      n_full = len(flat) // CHUNK * CHUNK
      for i in range(0, n_full, CHUNK):
        self._write(flat[i:i + CHUNK])
      self.pending, self.n_pending = [flat[n_full:]], len(flat) - n_full

  def _write(self, record: np.ndarray):
    from array_record.python.array_record_module import ArrayRecordWriter
    if self.records % SHARD_RECORDS == 0:
      self.close_shard()
      name = f'tokens-{self.records // SHARD_RECORDS:05d}.array_record'
      self.shard = ArrayRecordWriter(os.path.join(self.folder, name), 'group_size:1')
    self.shard.write(record.tobytes())
    self.records += 1

  def close_shard(self):
    if self.shard is not None:
      self.shard.close()
      self.shard = None

  def close(self):
    if self.n_pending:
      self._write(np.concatenate(self.pending))
    self.close_shard()


def token_dtype(vocab_size: int):
  return np.uint16 if vocab_size <= 2 ** 16 else np.uint32


def build(path: str, texts, tokenizer) -> 'TokenStore':
  """Tokenises `texts` (an iterable of str or UTF-8 bytes, one per document, or of (text, name)
  pairs) into a store at `path`; returns it opened. Names (a document's path in a local corpus)
  are kept in names.json for evaluation by group."""
  tmp = f'{path}.tmp-{os.getpid()}'
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    _write(tmp, texts, tokenizer)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  os.rename(tmp, path)
  return TokenStore(path)


def _write(tmp, texts, tokenizer):
  dtype = token_dtype(tokenizer.vocab_size)
  writer, stats, starts, offset = _Writer(tmp, dtype), _Stats(), [], 0
  sep = np.array([tokenizer.sep_id], np.int64)
  names = []
  for text in texts:
    if isinstance(text, tuple):
      text, name = text
      names.append(name if isinstance(name, str) else name.decode('utf-8'))
    raw = text if isinstance(text, bytes) else text.encode('utf-8')
    ids = np.concatenate([sep, np.asarray(tokenizer.encode(raw), np.int64)])
    starts.append(offset)
    offset += len(ids)
    writer.append(ids)
    stats.add(raw, len(ids))
  writer.close()
  np.save(os.path.join(tmp, 'starts.npy'), np.asarray(starts, np.int64))
  if names:
    with open(os.path.join(tmp, 'names.json'), 'w') as f:
      json.dump(names, f)
  meta = {'format': FORMAT, 'tokens': offset, 'documents': len(starts), 'records': writer.records,
          'chunk': CHUNK, 'shard_records': SHARD_RECORDS, 'dtype': np.dtype(dtype).name,
          'tokenizer': tokenizer.name, 'vocab_size': tokenizer.vocab_size,
          'sep_id': tokenizer.sep_id, 'stats': stats.result()}
  with open(os.path.join(tmp, 'meta.json'), 'w') as f:
    json.dump(meta, f, indent=2, sort_keys=True)


class TokenStore:
  """Random access to a built store: `read(start, length)` tokens of the stream, and
  `starts` the offsets of its documents."""

  def __init__(self, path: str):
    import grain
    self.path = path
    with open(os.path.join(path, 'meta.json')) as f:
      self.meta = json.load(f)
    self.n_tokens, self.chunk = self.meta['tokens'], self.meta['chunk']
    self.dtype = np.dtype(self.meta['dtype'])
    self.starts = np.load(os.path.join(path, 'starts.npy'), mmap_mode='r')
    shards = sorted(n for n in os.listdir(path) if n.endswith('.array_record'))
    self._records = grain.sources.ArrayRecordDataSource(
        [os.path.join(path, n) for n in shards])

  @staticmethod
  def exists(path: str) -> bool:
    return os.path.exists(os.path.join(path, 'meta.json'))

  @property
  def stats(self) -> dict:
    return self.meta['stats']

  @property
  def n_documents(self) -> int:
    return len(self.starts)

  def names(self) -> list | None:
    """Each document's name (its path in a local corpus), or None when the dataset has none."""
    path = os.path.join(self.path, 'names.json')
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def _record(self, i: int) -> np.ndarray:
    return np.frombuffer(self._records[i], self.dtype)

  def read(self, start: int, length: int) -> np.ndarray:
    """Tokens [start, start + length) of the stream, as int32."""
    if start < 0 or start + length > self.n_tokens:
      raise IndexError(f'tokens [{start}, {start + length}) of a stream of {self.n_tokens}')
    first, last = start // self.chunk, (start + length - 1) // self.chunk
    parts = [self._record(i) for i in range(first, last + 1)]
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    offset = start - first * self.chunk
    return flat[offset:offset + length].astype(np.int32)

  def document_starts(self, start: int, length: int) -> np.ndarray:
    """Offsets, relative to `start`, of the documents that begin in [start, start + length)."""
    lo, hi = np.searchsorted(self.starts, [start, start + length], side='left')
    return np.asarray(self.starts[lo:hi]) - start


class ArrayStore:
  """A token stream held in memory, with a loss mask per token: what supervised fine-tuning
  packs (lmjax/data/chat.py). The interface of TokenStore that the pipeline reads (`read`,
  `document_starts`, `starts`, `n_tokens`), and `read_mask`, which the pipeline multiplies into
  the targets' weights."""

  pack_documents = True  # the pipeline packs whole documents (pipeline.Packed)

  def __init__(self, tokens, starts, mask=None):
    self.stats = {}
    self.tokens = np.asarray(tokens, np.int32)
    self.starts = np.asarray(starts, np.int64)
    self.mask = None if mask is None else np.asarray(mask, np.float32)
    self.n_tokens = len(self.tokens)
    if self.mask is not None and self.mask.shape != self.tokens.shape:
      raise ValueError(f'{self.mask.shape} mask values for {self.tokens.shape} tokens')

  @property
  def n_documents(self) -> int:
    return len(self.starts)

  def names(self):
    return None

  def _check(self, start, length):
    if start < 0 or start + length > self.n_tokens:
      raise IndexError(f'tokens [{start}, {start + length}) of a stream of {self.n_tokens}')

  def read(self, start: int, length: int) -> np.ndarray:
    self._check(start, length)
    return self.tokens[start:start + length]

  def read_mask(self, start: int, length: int) -> np.ndarray:
    """The loss mask of tokens [start, start + length) (1 everywhere without one)."""
    self._check(start, length)
    if self.mask is None:
      return np.ones(length, np.float32)
    return self.mask[start:start + length]

  def document_starts(self, start: int, length: int) -> np.ndarray:
    lo, hi = np.searchsorted(self.starts, [start, start + length], side='left')
    return self.starts[lo:hi] - start
