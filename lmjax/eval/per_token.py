"""Evaluation of a trained model over a whole split (python -m launch.eval), token by token.

The split's token stream (lmjax/data/token_store.py) is read in windows of seq_len + 1 tokens with a
stride of seq_len, in order, so every token after the first is predicted exactly once, from the
tokens of its own document within its window (segment ids and positions as in training); the
last window is moved back to end at the stream's end and counts only targets not yet counted.
`documents=K` stops after the first K documents. `rows='training'` instead uses the training
loop's evaluation batches (lmjax/data/loader.py), so the two can be compared.

What `Tally` adds up, over target tokens with weight 1 (a document's separator is never a target):
- nats: the mean cross-entropy, perplexity exp(nats), bits per token nats / ln 2, and bits per
  byte: summed nats / ln 2 over the summed UTF-8 bytes of the predicted tokens (byte-weighted,
  exact for the byte and SentencePiece tokenizers, whose pieces add up to the text's bytes);
- accuracy of the argmax prediction;
- calibration of the top-1 prediction (Guo et al. 2017, "On Calibration of Modern Neural
  Networks", Eq. 3): with predictions binned by confidence into M equal bins,
  ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|; the bins make the reliability diagram;
- the loss by position in the context (the token's `positions`: how many tokens of its document
  the model saw), and by document, grouped by the documents' names where the dataset has them
  (local corpora: top-level directory and file extension).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.data import pipeline
from lmjax.train import sharding

TOP = 5         # alternatives kept per token (the log-prob page)
ECE_BINS = 15   # Guo et al. 2017 use M = 15


class EvalError(LmjaxError, ValueError):
  """A split too small to evaluate, or an option out of range; the message names the flag."""


def split_rows(store, seq_len: int, documents: int = 0):
  """(row starts, first counted target of each row) over the stream: windows of seq_len + 1,
  stride seq_len, up to the end of the first `documents` documents (0: all)."""
  end = store.n_tokens
  if documents and documents < store.n_documents:
    end = int(store.starts[documents])
  if end < seq_len + 1:
    raise EvalError(f'the split holds {end} tokens, fewer than one row of data.seq_len + 1 = '
                    f'{seq_len + 1}' + (f' (--documents={documents})' if documents else ''))
  starts = list(range(0, end - seq_len, seq_len))
  counted = [s + 1 for s in starts]
  if starts[-1] + seq_len + 1 < end:  # the tail: a window ending at `end`
    starts.append(end - seq_len - 1)
    counted.append(counted[-1] + seq_len)
  return starts, counted, end


def batches_of_split(store, seq_len, batch_size, documents=0):
  """Batches of `batch_size` rows (the last padded with weight-0 rows), each with `target_index`,
  the stream index of every target (-1 for a padded row)."""
  starts, counted, end = split_rows(store, seq_len, documents)
  for i in range(0, len(starts), batch_size):
    chunk = starts[i:i + batch_size]
    batch = pipeline.stream_rows(store, chunk, seq_len + 1)
    index = np.asarray(chunk)[:, None] + 1 + np.arange(seq_len)
    first = np.asarray(counted[i:i + batch_size])[:, None]
    batch['weights'] = batch['weights'] * ((index >= first) & (index < end))
    batch['target_index'] = index
    pad = batch_size - len(chunk)
    if pad:
      batch = {k: np.concatenate([v, np.repeat(v[:1], pad, 0)]) for k, v in batch.items()}
      batch['weights'][-pad:] = 0
      batch['target_index'][-pad:] = -1
    yield batch


def make_token_step(model, mesh=None, param_shardings=None):
  """params, batch -> per target token: nats, and the TOP most likely tokens with their
  log-probabilities (the first is the argmax), from float32 logits."""
  def fn(params, batch):
    logits_BxTxV = model.apply({'params': params}, batch['inputs'], batch['positions'],
                               batch['segment_ids'])
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
    nats_BxT = -jnp.take_along_axis(logp_BxTxV, batch['targets'][..., None], -1)[..., 0]
    top_logp, top_id = jax.lax.top_k(logp_BxTxV, min(TOP, logp_BxTxV.shape[-1]))
    return {'nats': nats_BxT, 'top_id': top_id, 'top_logp': top_logp}
  if mesh is None:
    return jax.jit(fn)
  return jax.jit(fn, in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


class Tally:
  """Running sums over evaluated tokens (module docstring)."""

  def __init__(self, token_bytes, seq_len, n_documents=0, doc_starts=None, page_documents=0):
    self.token_bytes = np.asarray(token_bytes, np.float64)
    self.nats = self.tokens = self.bytes = self.correct = 0.0
    self.bin_count, self.bin_conf, self.bin_correct = (np.zeros(ECE_BINS) for _ in range(3))
    self.pos_nats, self.pos_count = np.zeros(seq_len), np.zeros(seq_len)
    self.doc_starts = doc_starts
    self.doc_nats, self.doc_tokens, self.doc_bytes = (np.zeros(n_documents) for _ in range(3))
    self.page_documents, self.page = page_documents, []

  def add(self, batch, out):
    w = np.asarray(batch['weights'], bool)
    targets = batch['targets'][w]
    nats = np.asarray(out['nats'], np.float64)[w]
    top_id, top_logp = np.asarray(out['top_id'])[w], np.asarray(out['top_logp'])[w]
    nbytes = self.token_bytes[targets]
    conf, correct = np.exp(top_logp[:, 0].astype(np.float64)), top_id[:, 0] == targets
    self.nats += nats.sum()
    self.tokens += len(nats)
    self.bytes += nbytes.sum()
    self.correct += correct.sum()
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    np.add.at(self.bin_count, bins, 1)
    np.add.at(self.bin_conf, bins, conf)
    np.add.at(self.bin_correct, bins, correct)
    pos = batch['positions'][w]
    np.add.at(self.pos_nats, pos, nats)
    np.add.at(self.pos_count, pos, 1)
    if self.doc_starts is not None and 'target_index' in batch:
      index = batch['target_index'][w]
      doc = np.searchsorted(self.doc_starts, index, side='right') - 1
      np.add.at(self.doc_nats, doc, nats)
      np.add.at(self.doc_tokens, doc, 1)
      np.add.at(self.doc_bytes, doc, nbytes)
      keep = doc < self.page_documents
      if keep.any():
        self.page.append({'doc': doc[keep], 'index': index[keep], 'token': targets[keep],
                          'nats': nats[keep], 'top_id': top_id[keep],
                          'top_logp': top_logp[keep]})

  def page_tokens(self) -> dict:
    """The page documents' tokens in stream order: doc, index, token, nats, top_id, top_logp."""
    if not self.page:
      return {}
    out = {k: np.concatenate([p[k] for p in self.page]) for k in self.page[0]}
    order = np.argsort(out['index'], kind='stable')
    return {k: v[order] for k, v in out.items()}

  def report(self, names=None) -> dict:
    if not self.tokens:
      raise EvalError('no target tokens were evaluated')
    loss = self.nats / self.tokens
    acc = self.bin_correct / np.maximum(self.bin_count, 1)
    conf = self.bin_conf / np.maximum(self.bin_count, 1)
    ece = float((self.bin_count / self.tokens * np.abs(acc - conf)).sum())
    seen = self.pos_count > 0
    out = {'tokens': int(self.tokens), 'bytes': int(self.bytes), 'loss': loss,
           'perplexity': math.exp(min(loss, 700)), 'bits_per_token': loss / math.log(2),
           'bits_per_byte': self.nats / math.log(2) / self.bytes if self.bytes else None,
           'accuracy': self.correct / self.tokens, 'ece': ece,
           'calibration': {'bins': ECE_BINS, 'count': self.bin_count.astype(int).tolist(),
                           'confidence': conf.tolist(), 'accuracy': acc.tolist()},
           'by_position': {'position': np.flatnonzero(seen).tolist(),
                           'loss': (self.pos_nats[seen] / self.pos_count[seen]).tolist(),
                           'tokens': self.pos_count[seen].astype(int).tolist()}}
    if self.doc_starts is not None:
      out['documents'] = int((self.doc_tokens > 0).sum())
      if names is not None:
        out['by_group'] = {kind: self._groups([tag(names[d]) for d in range(len(names))])
                           for kind, tag in GROUPINGS.items()}
    return out

  def _groups(self, tags) -> dict:
    groups = {}
    for d in np.flatnonzero(self.doc_tokens):
      g = groups.setdefault(tags[d], [0.0, 0.0, 0.0, 0])
      g[0] += self.doc_nats[d]
      g[1] += self.doc_tokens[d]
      g[2] += self.doc_bytes[d]
      g[3] += 1
    return {tag: {'loss': n / t, 'bits_per_byte': n / math.log(2) / b if b else None,
                  'tokens': int(t), 'documents': docs}
            for tag, (n, t, b, docs) in sorted(groups.items(), key=lambda kv: -kv[1][1])}


def top_directory(name: str) -> str:
  parts = name.split('/')
  return parts[0] + '/' if len(parts) > 1 else '(top level)'


def extension(name: str) -> str:
  return os.path.splitext(name)[1] or '(none)'


GROUPINGS = {'directory': top_directory, 'extension': extension}


def run(token_step, params, batches, tally: Tally, progress=None) -> Tally:
  """Adds every batch's tokens to `tally`; `progress(i)` after each batch."""
  keys = ('inputs', 'targets', 'positions', 'segment_ids')
  for i, batch in enumerate(batches):
    out = jax.device_get(token_step(params, {k: batch[k] for k in keys}))
    tally.add(batch, out)
    if progress:
      progress(i)
  return tally
