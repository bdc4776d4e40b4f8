"""Preference pairs for DPO (lmjax/train/preference.py): JSONL of {"prompt", "chosen",
"rejected"} (strings), each side rendered as a prompt/completion example (lmjax/data/chat.py:
the plain template or the tokenizer's own, the loss mask on the completion and the token that
ends it), one sequence per row padded with separators whose mask is 0.

`PairStore` holds a split's pairs as arrays (pairs, 2, seq_len + 1) with their masks, and the
reference model's summed log-probabilities of each side once computed (`ref`, set before
training: lmjax/train/start.py). Rows: `Pairs` draws pair π_e(r mod P) for row r of epoch e as
lmjax/data/pipeline.py draws windows; a batch of n pairs is 2n sequences, each pair's chosen
side first, then its rejected side, and their reference log-probabilities (`ref_logps`).
"""
from __future__ import annotations

import numpy as np

from lmjax.data import chat, pipeline


class PairStore:
  """A split's preference pairs: tokens and masks (P, 2, L), L = seq_len + 1."""

  def __init__(self, tokens, mask, sep_id, stats=None):
    self.tokens, self.mask, self.sep_id = tokens, mask, sep_id
    self.n_pairs = len(tokens)
    self.ref = None  # (P, 2) the reference model's summed log-probabilities
    self.stats = stats or {}


def read_jsonl(path, tokenizer, seq_len, template=None) -> PairStore:
  """The pairs of a JSONL file; chat.ChatDataError naming the first bad line."""
  rows = []
  for where, pair in chat.jsonl(path):
    if not isinstance(pair, dict) or not all(
        isinstance(pair.get(k), str) for k in ('prompt', 'chosen', 'rejected')):
      raise chat.ChatDataError(f'{where}: expected "prompt", "chosen" and "rejected" strings')
    rows.append([chat.render({'prompt': pair['prompt'], 'completion': pair[side]},
                             tokenizer, seq_len, f'{where} ({side})', template)
                 for side in ('chosen', 'rejected')])
  if not rows:
    raise chat.ChatDataError(f'{path}: no pairs')
  length = seq_len + 1
  tokens = np.full((len(rows), 2, length), int(tokenizer.sep_id), np.int32)
  mask = np.zeros((len(rows), 2, length), np.float32)
  for i, pair in enumerate(rows):
    for side, (t, m) in enumerate(pair):
      tokens[i, side, :len(t)], mask[i, side, :len(m)] = t, m
  stats = {'documents': len(rows), 'tokens': int(sum(len(t) for p in rows for t, _ in p)),
           'learned_tokens': int(mask.sum())}
  return PairStore(tokens, mask, int(tokenizer.sep_id), stats)


def load(data_config, tokenizer) -> tuple[PairStore, PairStore]:
  """(train, eval) pairs of config.data for data.dataset=preference_jsonl (as chat.load)."""
  template = chat.template_of(data_config)
  seq_len = data_config.seq_len
  train = read_jsonl(data_config.paths, tokenizer, seq_len, template)
  if data_config.eval_paths:
    return train, read_jsonl(data_config.eval_paths, tokenizer, seq_len, template)
  held = chat.held_out(train.n_pairs, data_config.val_percent)
  keep = np.setdiff1d(np.arange(train.n_pairs), held)
  part = lambda idx: PairStore(train.tokens[idx], train.mask[idx], train.sep_id,
                               {'documents': len(idx), 'learned_tokens': int(
                                   train.mask[idx].sum())})
  return part(keep), part(held)


def rows(store: PairStore, pairs) -> dict:
  """The model's batch of `pairs` (indices): 2n sequences, chosen then rejected per pair."""
  tokens = store.tokens[pairs].reshape(-1, store.tokens.shape[-1])
  mask = store.mask[pairs].reshape(-1, store.mask.shape[-1])
  length = tokens.shape[-1]
  out = []
  for t, m in zip(tokens, mask):
    begins = np.zeros(length, bool)
    begins[0] = True
    used = int(np.flatnonzero(m)[-1]) + 1 if m.any() else length
    if used < length:
      begins[used] = True  # the padding is a segment of its own
    out.append((t, begins, m))
  batch = pipeline._batch(out, length)
  if store.ref is not None:
    batch['ref_logps'] = store.ref[pairs].reshape(-1).astype(np.float32)
  return batch


class Pairs(pipeline.Windows):
  """Row r of a run is pair π_e(r mod P) (pipeline.Windows' permutation over pairs)."""

  def __init__(self, store: PairStore, seed: int):
    self.store, self.seed, self.count = store, seed, store.n_pairs
    self._epoch_seeds = {}

  def rows(self, first: int, n: int) -> dict:
    return rows(self.store, [self.window(first + j) for j in range(n)])


def train_batches(store, config, process_index=0, process_count=1) -> pipeline.Batches:
  """This process's pairs of each step: data.batch_size sequences are batch_size / 2 pairs."""
  return pipeline.Batches(Pairs(store, config.seed), config.data.batch_size // 2,
                          process_index, process_count)


def eval_batches(store, data_config, process_index=0, process_count=1) -> list:
  """The first eval_batches batches of pairs under the evaluation seed (fewer if the split
  holds fewer)."""
  pairs = data_config.batch_size // 2
  n = min(data_config.eval_batches, store.n_pairs // pairs)
  batches = pipeline.Batches(Pairs(store, pipeline.EVAL_SEED), pairs, process_index,
                             process_count)
  return [batches.batch(step) for step in range(n)]
