"""Tokens for training: the byte tokenizer and the default corpus (the Python standard library).

The seam to the rest of lmjax is `batches(config, split, start_step)`, which yields dicts of int32
numpy arrays `inputs` and `targets`, shape (batch_size, seq_len). The train order is a pure
function of (seed, step), so a run restarted at step k sees the batches of an uninterrupted run.

Default corpus: every `*.py` file under the running interpreter's `sysconfig` stdlib directory
(site-packages and dist-packages excluded), read as raw bytes. A file goes to validation when
int(sha1(its path relative to that directory, as posix).hexdigest(), 16) % 100 < val_percent,
so the split is fixed across runs and machines with the same Python. Documents are joined in
sorted path order with the end-of-document token between them.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import sysconfig

import numpy as np

BYTE_EOS = 256  # end-of-document separator; ids 0..255 are the bytes themselves


def tokenizer_vocab_size(name: str) -> int:
  if name == 'byte':
    return 257
  raise ValueError(f'config.data.tokenizer={name!r} is not allowed: one of byte')


def token_bytes(name: str, vocab_size: int) -> np.ndarray:
  """UTF-8 bytes each token id stands for (0 for specials), for bits per byte."""
  if name != 'byte':
    raise ValueError(f'config.data.tokenizer={name!r} is not allowed: one of byte')
  out = np.zeros(vocab_size, np.int32)
  out[:256] = 1
  return out


def stdlib_dir() -> pathlib.Path:
  return pathlib.Path(sysconfig.get_paths()['stdlib'])


def is_validation(relpath: str, val_percent: int) -> bool:
  return int(hashlib.sha1(relpath.encode()).hexdigest(), 16) % 100 < val_percent


@dataclasses.dataclass(frozen=True)
class Corpus:
  train: np.ndarray  # uint16 token stream, documents separated by BYTE_EOS
  validation: np.ndarray
  n_docs: dict
  n_bytes: dict


@functools.lru_cache(maxsize=4)
def python_stdlib(val_percent: int = 5) -> Corpus:
  root = stdlib_dir()
  files = sorted(p for p in root.rglob('*.py') if p.is_file() and not (
      {'site-packages', 'dist-packages'} & set(p.relative_to(root).parts)))
  parts = {'train': [], 'validation': []}
  for path in files:
    rel = path.relative_to(root).as_posix()
    data = np.frombuffer(path.read_bytes(), np.uint8)
    if data.size:
      parts['validation' if is_validation(rel, val_percent) else 'train'].append(data)
  streams, n_docs, n_bytes = {}, {}, {}
  eos = np.array([BYTE_EOS], np.uint16)
  for split, docs in parts.items():
    if not docs:
      raise ValueError(f'python_stdlib: the {split} split of {root} is empty '
                       f'(config.data.val_percent={val_percent})')
    pieces = [x for doc in docs for x in (doc.astype(np.uint16), eos)]
    streams[split] = np.concatenate(pieces)
    n_docs[split] = len(docs)
    n_bytes[split] = int(sum(doc.size for doc in docs))
  return Corpus(streams['train'], streams['validation'], n_docs, n_bytes)


def unigram_entropy_bits_per_byte(stream: np.ndarray) -> float:
  """Entropy of the byte histogram: what a model with no context could reach, in bits per byte."""
  counts = np.bincount(stream[stream < 256], minlength=256).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log2(p)).sum())


def _windows(stream, starts, seq_len):
  idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
  tokens = stream[idx].astype(np.int32)
  return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}


def batches(config, split: str, start_step: int = 0):
  """Yields batches {'inputs', 'targets'} (B, T) int32 from `start_step` on.

  train: windows at offsets drawn from a generator seeded by (seed, step), endless.
  validation: `eval_batches` fixed batches of windows evenly spaced over the split, then stops.
  """
  d = config.data
  b, t = d.batch_size, d.seq_len
  if d.dataset == 'random':
    vocab = config.model.vocab_size
    step = start_step
    while True:
      rng = np.random.default_rng([config.seed, step, split == 'train'])
      tokens = rng.integers(0, min(vocab, 256), (b, t + 1), dtype=np.int32)
      yield {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}
      step += 1
      if split != 'train' and step >= d.eval_batches:
        return
  corpus = python_stdlib(d.val_percent)
  stream = corpus.train if split == 'train' else corpus.validation
  if len(stream) < t + 1:
    raise ValueError(f'config.data.seq_len={t} is longer than the {split} split '
                     f'({len(stream)} tokens)')
  if split == 'train':
    step = start_step
    while True:
      rng = np.random.default_rng([config.seed, step])
      yield _windows(stream, rng.integers(0, len(stream) - t, b), t)
      step += 1
  n = d.eval_batches * b
  starts = np.linspace(0, len(stream) - t - 1, n).astype(np.int64)
  for i in range(start_step, d.eval_batches):
    yield _windows(stream, starts[i * b:(i + 1) * b], t)
