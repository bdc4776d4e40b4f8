"""The data seam of lmjax: dataset + tokenizer in, iterators of numpy batches out.

`load(config)` prepares the TFDS dataset (lmjax/datasets.py) and the tokenizer (trained on the
train split when missing, saved beside the prepared data, reused after), and returns `Data`.
`train_iterator(data, config)` is the grain pipeline of lmjax/pipeline.py, whose
`get_state()`/`set_state()` go into checkpoints; `eval_batches(data, config)` the fixed
evaluation batches. A batch is a dict of numpy arrays (rows, seq_len): inputs, targets,
positions, segment_ids, weights.

`data.dataset=random` gives uniform random tokens with no file access (for benchmarks).
"""
from __future__ import annotations

import dataclasses
import json
import os

import grain
import numpy as np

from lmjax import atomic, datasets, pipeline, tokenizers


@dataclasses.dataclass
class Data:
  tokenizer: object
  train: object = None       # random-access source of the train split
  eval: object = None        # ... and of the evaluation split
  feature: str = 'text'
  stats: dict = dataclasses.field(default_factory=dict)


def _tokenizer(data_config, prepared, train_source, feature):
  if data_config.tokenizer == 'byte':
    return tokenizers.ByteTokenizer()
  folder = os.path.join(prepared.data_dir, 'tokenizers')
  path = os.path.join(folder, f'sp-{data_config.sp_model}-{data_config.vocab_size}.model')
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    texts = (_text(train_source[i], feature) for i in range(len(train_source)))
    tokenizers.train_sentencepiece(texts, path, data_config.vocab_size, data_config.sp_model,
                                   data_config.sp_train_bytes)
  return tokenizers.SentencePieceTokenizer(path)


def _text(record, feature):
  value = record[feature]
  return value.decode('utf-8') if isinstance(value, bytes) else value


def split_statistics(source, tokenizer, feature) -> dict:
  """Documents, UTF-8 bytes, tokens (separators included) of one split, and the entropy of its
  byte histogram in bits per byte: what a model with no context at all could reach."""
  docs = n_bytes = n_tokens = 0
  counts = np.zeros(256, np.int64)
  for i in range(len(source)):
    text = source[i][feature]
    raw = text if isinstance(text, bytes) else text.encode('utf-8')
    docs += 1
    n_bytes += len(raw)
    n_tokens += len(tokenizer.encode(raw)) + 1
    counts += np.bincount(np.frombuffer(raw, np.uint8), minlength=256)
  p = counts[counts > 0] / max(counts.sum(), 1)
  return {'documents': docs, 'bytes': n_bytes, 'tokens': n_tokens,
          'tokens_per_byte': n_tokens / max(n_bytes, 1),
          'unigram_bits_per_byte': float(-(p * np.log2(p)).sum())}


def statistics(data: Data, prepared=None) -> dict:
  """Per-split statistics, cached in a JSON file beside the tokenizer."""
  cache = None
  if prepared is not None:
    cache = os.path.join(prepared.data_dir, 'tokenizers', f'stats-{data.tokenizer.name}.json')
    if os.path.exists(cache):
      with open(cache) as f:
        return json.load(f)
  out = {split: split_statistics(src, data.tokenizer, data.feature)
         for split, src in (('train', data.train), ('eval', data.eval))}
  if cache:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    atomic.write_json(cache, out, indent=2)
  return out


def load(config, with_stats=True) -> Data:
  data_config = config.data
  if data_config.dataset == 'random':
    return Data(tokenizer=tokenizers.ByteTokenizer())
  with datasets.preparing(data_config):  # one process prepares; concurrent runs wait, then read
    prepared = datasets.prepare(data_config)
    train_split, eval_split = datasets.splits(data_config)
    feature = data_config.text_feature if data_config.dataset not in datasets.LOCAL else 'text'
    train = datasets.data_source(prepared, train_split)
    eval_ = datasets.data_source(prepared, eval_split)
    if feature not in train[0]:
      raise datasets.DataError(f'config.data.text_feature={feature!r} is not a feature of '
                               f'{data_config.dataset}: one of {", ".join(train[0])}')
    data = Data(_tokenizer(data_config, prepared, train, feature), train, eval_, feature)
  if with_stats:
    data.stats = statistics(data, prepared)
  return data


class _RandomBatch:
  def __init__(self, config):
    self.seed, self.vocab = config.seed, min(config.model.vocab_size, 256)
    self.shape = (config.data.batch_size, config.data.seq_len + 1)

  def __call__(self, index):
    tokens = np.random.default_rng([self.seed, index]).integers(0, self.vocab, self.shape,
                                                                dtype=np.int32)
    return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}


def train_iterator(data: Data, config, process_index=0, process_count=1):
  """A grain DatasetIterator of this process's training batches (with get_state/set_state)."""
  if config.data.dataset == 'random':
    return iter(grain.MapDataset.range(0, 2 ** 62).map(_RandomBatch(config)).to_iter_dataset())
  return iter(pipeline.train_dataset(data.train, data.tokenizer, config.data, config.seed,
                                     process_index, process_count, data.feature))


def eval_batches(data: Data, config, process_index=0, process_count=1) -> list:
  data_config = config.data
  if data_config.dataset == 'random':
    return [_RandomBatch(config)(-1 - i) for i in range(data_config.eval_batches)]
  out = pipeline.eval_batches(data.eval, data.tokenizer, data_config, process_index,
                              process_count, data.feature)
  if not out:
    raise datasets.DataError(
        f'the evaluation split of {data_config.dataset} holds fewer tokens than one batch of '
        f'data.batch_size={data_config.batch_size} × (data.seq_len + 1)='
        f'{data_config.seq_len + 1}')
  return out


def epochs_seen(data: Data, config, steps: int) -> float:
  """Passes over the train split after `steps` steps (rows consume seq_len + 1 tokens each)."""
  per_epoch = data.stats.get('train', {}).get('tokens')
  if not per_epoch:
    return float('nan')
  return steps * config.data.batch_size * (config.data.seq_len + 1) / per_epoch

