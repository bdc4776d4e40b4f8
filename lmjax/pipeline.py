"""The grain input pipeline: shuffle, tokenise, pack, batch, and this process's rows.

train: documents in a global order shuffled per epoch by `seed` (grain's index shuffle over the
random-access TFDS source, repeated without end) → [separator] + tokens → concatenated and cut
into rows of seq_len + 1 tokens (grain's concat-then-split packing, which records segment ids and
positions that restart at each document and at each row) → rows shuffled within windows of
`shuffle_rows` (a long document fills many consecutive rows; without this a small batch would
hold one document) → batches of `batch_size` rows → the rows of this process. Every process builds the same global batch and keeps rows
[p·B/P, (p+1)·B/P), so the data a run sees does not depend on how many hosts feed it.

A row of T+1 tokens gives inputs = row[:-1] and targets = row[1:], with segment ids and positions
of the inputs. A target counts (weight 1) only inside its input's document: the separator leads
each document, so every byte of a document is predicted from its own context and nothing is
predicted across a boundary.

The iterator's `get_state()` / `set_state()` (grain's) restore the exact position: a run resumed
at step k sees the batches k, k+1, ... of the uninterrupted run.
"""
from __future__ import annotations

import grain
import grain.experimental as gexp
import numpy as np


class _Tokenize:
  def __init__(self, tokenizer, feature):
    self.tokenizer, self.feature = tokenizer, feature

  def __call__(self, record):
    ids = self.tokenizer.encode(record[self.feature])
    return {'tokens': np.concatenate([[self.tokenizer.sep_id], ids]).astype(np.int32)}


class _ToModel:
  """Packed rows (B, T+1) -> the model's batch, restricted to this process's rows."""

  def __init__(self, process_index, process_count):
    self.index, self.count = process_index, process_count

  def __call__(self, batch):
    rows = batch['tokens'].shape[0] // self.count
    sl = slice(self.index * rows, (self.index + 1) * rows)
    tokens, seg = batch['tokens'][sl], batch['tokens_segment_ids'][sl]
    return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:],
            'positions': batch['tokens_positions'][sl, :-1].astype(np.int32),
            'segment_ids': seg[:, :-1].astype(np.int32),
            'weights': ((seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)).astype(np.float32)}


def _packed(docs: grain.MapDataset, tokenizer, feature, seq_len, threads):
  tokens = docs.map(_Tokenize(tokenizer, feature))
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2 * threads, 1))
  return gexp.ConcatThenSplitIterDataset(tokens.to_iter_dataset(options),
                                         length_struct={'tokens': seq_len + 1})


def _rows(docs, tokenizer, data_config, seed, feature):
  rows = _packed(docs, tokenizer, feature, data_config.seq_len, data_config.workers)
  if data_config.shuffle_rows > 1:
    rows = gexp.WindowShuffleIterDataset(rows, window_size=data_config.shuffle_rows, seed=seed)
  return rows


def packed_train_rows(source, tokenizer, data_config, seed, feature='text'):
  """The packed rows of the train split, epoch after epoch, before the row shuffle."""
  docs = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  return _packed(docs, tokenizer, feature, data_config.seq_len, data_config.workers)


def train_dataset(source, tokenizer, data_config, seed, process_index=0, process_count=1,
                  feature='text'):
  docs = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  rows = _rows(docs, tokenizer, data_config, seed, feature)
  return rows.batch(data_config.batch_size, drop_remainder=True).map(
      _ToModel(process_index, process_count))


EVAL_SEED = 0  # the evaluation set is the same for every run seed: losses stay comparable


def eval_batches(source, tokenizer, data_config, process_index=0, process_count=1,
                 feature='text'):
  """`eval_batches` batches of the split, shuffled like train data but with a fixed seed and a
  single pass: the same batches for every call and every run."""
  docs = grain.MapDataset.source(source).seed(EVAL_SEED).shuffle()
  batches = _rows(docs, tokenizer, data_config, EVAL_SEED, feature).batch(
      data_config.batch_size, drop_remainder=True).map(_ToModel(process_index, process_count))
  out = []
  for batch in batches:
    out.append(batch)
    if len(out) == data_config.eval_batches:
      break
  return out
