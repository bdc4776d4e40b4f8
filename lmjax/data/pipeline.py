"""Training and evaluation batches read from a token store (lmjax/data/token_store.py) by index.

The split's token stream is cut into W = tokens // (seq_len + 1) windows of seq_len + 1 tokens
(the final partial window is left out). Row r of a run is window π_e(r mod W) of epoch
e = r div W, π_e a permutation of the W windows seeded by (seed, e) (grain's stateless
index_shuffle, no table kept), so every token of the split is seen once per epoch in a new
order. The global batch of step s is rows [s·B, (s+1)·B): a pure function of (seed, s). Process
p of P reads only its rows [s·B + p·B/P, s·B + (p+1)·B/P), and the global batch does not depend
on P. A checkpoint's data position is the step (`get_state()` is {'step': s}).

A row of T+1 tokens gives inputs = row[:-1] and targets = row[1:], with segment ids and positions
of the inputs from the store's document offsets: segment ids count the documents within the row
from 1, positions restart at each document and at the row's start. The separator leads each
document, so a target counts (weight 1) only inside its input's document: every token of a
document is predicted from its own context and nothing across a boundary. A store with a loss
mask (`read_mask`: supervised fine-tuning, lmjax/data/chat.py) also zeroes the weight of every
target its mask leaves out, wherever packing puts the document.
"""
from __future__ import annotations

import numpy as np

from grain.experimental import index_shuffle

_ROUNDS = 4  # Feistel rounds of index_shuffle


def epoch_seed(seed: int, epoch: int) -> int:
  """A 32-bit seed per (run seed, epoch)."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class Windows:
  """The windows of seq_len + 1 tokens of one store, and row r's window under the per-epoch
  permutations of `seed`."""

  def __init__(self, store, seq_len: int, seed: int):
    self.store, self.length, self.seed = store, seq_len + 1, seed
    self.count = store.n_tokens // self.length
    self._epoch_seeds = {}

  def window(self, row: int) -> int:
    epoch, i = divmod(row, self.count)
    if epoch not in self._epoch_seeds:
      self._epoch_seeds[epoch] = epoch_seed(self.seed, epoch)
    if self.count == 1:
      return 0
    return index_shuffle(i, max_index=self.count - 1, seed=self._epoch_seeds[epoch],
                         rounds=_ROUNDS)

  def rows(self, first: int, n: int) -> dict:
    """Rows first ... first + n - 1 as the model's batch of n rows."""
    return stream_rows(self.store, [self.window(first + j) * self.length for j in range(n)],
                       self.length)


def stream_rows(store, starts, length: int) -> dict:
  """The model's batch of the stream's tokens [start, start + length) for each start (the
  module docstring: inputs, targets, positions, segment ids, weights)."""
  read_mask = getattr(store, 'read_mask', None)  # a loss mask (fine-tuning data), if any
  rows = []
  for start in starts:
    begins = np.zeros(length, bool)
    begins[0] = True
    begins[store.document_starts(start, length)] = True
    rows.append((store.read(start, length), begins,
                 read_mask(start, length) if read_mask is not None else None))
  return _batch(rows, length)


def _batch(rows, length) -> dict:
  """The model's batch of rows [(tokens, where documents begin, loss mask or None)]."""
  n = len(rows)
  tokens = np.empty((n, length), np.int32)
  segments = np.empty((n, length), np.int32)
  positions = np.empty((n, length), np.int32)
  masks = np.ones((n, length), np.float32)
  index = np.arange(length)
  for j, (row, begins, mask) in enumerate(rows):
    tokens[j] = row
    if mask is not None:
      masks[j] = mask
    segments[j] = np.cumsum(begins)
    positions[j] = index - np.maximum.accumulate(np.where(begins, index, 0))
  return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:], 'positions': positions[:, :-1],
          'segment_ids': segments[:, :-1],
          'weights': (segments[:, 1:] == segments[:, :-1]).astype(np.float32) * masks[:, 1:]}


class Packed(Windows):
  """Rows of whole documents (fine-tuning examples, each at most seq_len + 1 tokens): packed
  greedily in order, as many as fit, the rest of a row padded with separators whose loss mask
  is 0; row r of a run is packed row π_e(r mod W) as for windows. No example is cut, so every
  learned token keeps its prompt in the same row."""

  def __init__(self, store, seq_len: int, seed: int):
    self.store, self.length, self.seed = store, seq_len + 1, seed
    self._epoch_seeds = {}
    bounds = np.append(store.starts, store.n_tokens)
    self.packed, row, used = [], [], 0
    for start, end in zip(bounds[:-1], bounds[1:]):
      size = int(end - start)
      if used + size > self.length and row:
        self.packed.append(row)
        row, used = [], 0
      row.append((int(start), size))
      used += size
    if row:
      self.packed.append(row)
    self.count = len(self.packed)
    self.pad_id = int(store.read(int(store.starts[0]), 1)[0])  # each document's separator

  def rows(self, first: int, n: int) -> dict:
    out = []
    for j in range(n):
      row = self.packed[self.window(first + j)]
      offsets = np.cumsum([0] + [size for _, size in row])  # documents', then padding's start
      pad = self.length - int(offsets[-1])
      begins = np.zeros(self.length, bool)
      begins[offsets[offsets < self.length]] = True  # the padding is a segment of its own
      out.append((np.concatenate([self.store.read(s, k) for s, k in row]
                                 + [np.full(pad, self.pad_id, np.int32)]),
                  begins,
                  np.concatenate([self.store.read_mask(s, k) for s, k in row]
                                 + [np.zeros(pad, np.float32)])))
    return _batch(out, self.length)


def rows_of(store, seq_len: int, seed: int) -> Windows:
  """Packed whole documents for a store that asks for them (fine-tuning examples), else windows
  of the stream."""
  kind = Packed if getattr(store, 'pack_documents', False) else Windows
  return kind(store, seq_len, seed)


class Batches:
  """This process's rows of the global batch of each step, from step `get_state()['step']` on."""

  def __init__(self, windows: Windows, batch_size: int, process_index=0, process_count=1):
    self.windows, self.batch_size = windows, batch_size
    self.rows = batch_size // process_count
    self.offset = process_index * self.rows
    self.step = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = self.batch(self.step)
    self.step += 1
    return batch

  def batch(self, step: int) -> dict:
    return self.windows.rows(step * self.batch_size + self.offset, self.rows)

  def get_state(self) -> dict:
    return {'step': self.step}

  def set_state(self, state: dict):
    if not isinstance(state, dict) or not isinstance(state.get('step'), int):
      raise ValueError(f'a data position is {{"step": int}}, not {str(state)[:80]}: the '
                       'checkpoint was written by an older lmjax input pipeline')
    self.step = state['step']


EVAL_SEED = 0  # the evaluation set is the same for every run seed: losses stay comparable


def eval_batches(store, data_config, process_index=0, process_count=1) -> list:
  """The first `eval_batches` global batches of the split under EVAL_SEED's permutation (fewer
  when the split holds fewer windows): the same batches for every call and every run."""
  windows = rows_of(store, data_config.seq_len, EVAL_SEED)
  n = min(data_config.eval_batches, windows.count // data_config.batch_size)
  batches = Batches(windows, data_config.batch_size, process_index, process_count)
  return [batches.batch(step) for step in range(n)]
