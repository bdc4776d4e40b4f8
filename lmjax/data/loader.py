"""The data seam of lmjax: dataset + tokenizer in, iterators of numpy batches out.

`load(config)` prepares the TFDS dataset (lmjax/data/datasets.py), the tokenizer (trained on the
train split when missing, saved beside the prepared data, reused after) and, once per tokenizer,
each split's token store (lmjax/data/token_store.py, with the split's statistics), and returns
`Data`.
`train_iterator(data, config)` gives this process's rows of each step's global batch
(lmjax/data/pipeline.py; its `get_state()`, the step, goes into checkpoints); `eval_batches(data,
config)` the fixed evaluation batches. A batch is a dict of numpy arrays (rows, seq_len):
inputs, targets, positions, segment_ids, weights.

`data.dataset=random` gives uniform random tokens with no file access (for benchmarks);
`data.dataset=chat_jsonl` supervised fine-tuning examples with their loss masks (lmjax/data/
chat.py), packed whole into rows; `preference_jsonl` DPO's pairs (preference_data.py).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from lmjax.data import datasets, pipeline, token_store, tokenizers


@dataclasses.dataclass
class Data:
  tokenizer: object
  train: object = None       # token store of the train split (lmjax.data.token_store.TokenStore)
  eval: object = None        # ... and of the evaluation split
  prepared: object = None    # the prepared dataset (lmjax.data.datasets.Prepared)

  @property
  def stats(self) -> dict:
    """Per split: documents, UTF-8 bytes, tokens (a separator per document included), tokens
    per byte, and the unigram entropy of the bytes in bits per byte."""
    if self.train is None:
      return {}
    return {'train': self.train.stats, 'eval': self.eval.stats}


def _sp_path(data_dir, data_config) -> str:
  """Where a SentencePiece tokenizer of config.data lives: beside the prepared dataset."""
  return os.path.join(data_dir, 'tokenizers',
                      f'sp-{data_config.sp_model}-{data_config.vocab_size}.model')


def _tokenizer(data_config, prepared: datasets.Prepared):
  """The tokenizer of config.data, a SentencePiece one trained on the train split if missing."""
  if data_config.tokenizer in ('byte', 'hf'):
    return load_tokenizer(data_config)
  path = _sp_path(prepared.data_dir, data_config)
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    train = prepared.source(prepared.train_split)
    texts = (_text(train[i], prepared.feature) for i in range(len(train)))
    tokenizers.train_sentencepiece(texts, path, data_config.vocab_size, data_config.sp_model,
                                   data_config.sp_train_bytes)
  return tokenizers.SentencePieceTokenizer(path)


def load_tokenizer(config):
  """The tokenizer a run trained with, without preparing anything (sampling): the byte
  tokenizer, a tokenizer.json, or the SentencePiece model saved beside the prepared dataset.
  `config` is a whole config or its `data`."""
  data_config = config.data if 'data' in config else config
  if data_config.tokenizer == 'byte':
    return tokenizers.ByteTokenizer()
  if data_config.tokenizer == 'hf':
    try:
      return tokenizers.HFTokenizer(data_config.hf_tokenizer, data_config.hf_sep_token)
    except ValueError as e:
      raise datasets.DataError(str(e)) from None
  path = _sp_path(datasets.builder(data_config).data_dir, data_config)
  if not os.path.exists(path):
    raise datasets.DataError(f'the run\'s SentencePiece tokenizer {path} is missing '
                             '(config.data.data_dir): it is trained when the run starts')
  return tokenizers.SentencePieceTokenizer(path)


def _text(record, feature):
  value = record[feature]
  return value.decode('utf-8') if isinstance(value, bytes) else value


def store_path(prepared: datasets.Prepared, tokenizer, split) -> str:
  """Where the token store of `split` tokenised by `tokenizer` lives: beside the prepared
  dataset and its tokenizers."""
  return os.path.join(prepared.data_dir, 'tokens', tokenizer.name, split)


def _store(prepared: datasets.Prepared, split, tokenizer):
  """The token store of `split`, tokenised now if it is missing."""
  path = store_path(prepared, tokenizer, split)
  if token_store.TokenStore.exists(path):
    return token_store.TokenStore(path)
  source, feature = prepared.source(split), prepared.feature
  named = 'path' in source[0]  # local corpora: each document's path, for evaluation by group
  documents = ((source[i][feature], source[i]['path']) if named else source[i][feature]
               for i in range(len(source)))
  try:
    return token_store.build(path, documents, tokenizer)
  except OSError as e:
    raise datasets.DataError(f'cannot write the token store of {split} at {path} '
                             f'({e.strerror or e}); config.data.data_dir must be writable the '
                             'first time a tokenizer is used') from None


def load(config) -> Data:
  """The tokenizer and the token stores of the train and evaluation splits, preparing what is
  missing (one process at a time: concurrent runs wait, then read)."""
  data_config = config.data
  if data_config.dataset == 'random':
    return Data(tokenizer=tokenizers.ByteTokenizer())
  if data_config.dataset == 'chat_jsonl':  # fine-tuning examples, held in memory
    from lmjax.data import chat
    tokenizer = load_tokenizer(data_config)
    return Data(tokenizer, *chat.load(data_config, tokenizer))
  if data_config.dataset == 'preference_jsonl':  # DPO's pairs, held in memory
    from lmjax.data import preference_data
    tokenizer = load_tokenizer(data_config)
    return Data(tokenizer, *preference_data.load(data_config, tokenizer))
  with datasets.preparing(data_config):
    prepared = datasets.prepare(data_config)
    tokenizer = _tokenizer(data_config, prepared)
    return Data(tokenizer, _store(prepared, prepared.train_split, tokenizer),
                _store(prepared, prepared.eval_split, tokenizer), prepared)


def load_split(config, split):
  """(tokenizer, token store) of any prepared split of the configured dataset (evaluation);
  raises DataError naming the splits there are."""
  with datasets.preparing(config.data):
    prepared = datasets.prepare(config.data)
    tokenizer = _tokenizer(config.data, prepared)
    return tokenizer, _store(prepared, split, tokenizer)


class RandomBatches(pipeline.Batches):
  """Uniform random tokens, row r of the run a pure function of (seed, r) like stored data."""

  def __init__(self, config, process_index=0, process_count=1):
    super().__init__(None, config.data.batch_size, process_index, process_count)
    self.seed, self.vocab = config.seed, min(config.model.vocab_size, 256)
    self.length = config.data.seq_len + 1

  def batch(self, step: int) -> dict:
    first = step * self.batch_size + self.offset
    tokens = np.stack([np.random.default_rng([self.seed, (first + i) % 2 ** 62]).integers(
        0, self.vocab, self.length, dtype=np.int32) for i in range(self.rows)])
    return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}


def train_iterator(data: Data, config, process_index=0, process_count=1) -> pipeline.Batches:
  """This process's training batches from step 0 (`set_state` moves it to another step)."""
  if config.data.dataset == 'random':
    return RandomBatches(config, process_index, process_count)
  if config.data.dataset == 'preference_jsonl':
    from lmjax.data import preference_data
    return preference_data.train_batches(data.train, config, process_index, process_count)
  windows = pipeline.rows_of(data.train, config.data.seq_len, config.seed)
  if not windows.count:
    raise datasets.DataError(
        f'the train split of {config.data.dataset} holds {data.train.n_tokens} tokens, fewer '
        f'than one row of data.seq_len + 1 = {config.data.seq_len + 1}')
  return pipeline.Batches(windows, config.data.batch_size, process_index, process_count)


def eval_batches(data: Data, config, process_index=0, process_count=1) -> list:
  data_config = config.data
  if data_config.dataset == 'random':
    rows = RandomBatches(config, process_index, process_count)
    return [rows.batch(-1 - i) for i in range(data_config.eval_batches)]
  if data_config.dataset == 'preference_jsonl':
    from lmjax.data import preference_data
    out = preference_data.eval_batches(data.eval, data_config, process_index, process_count)
  else:
    out = pipeline.eval_batches(data.eval, data_config, process_index, process_count)
  if not out:
    raise datasets.DataError(
        f'the evaluation split of {data_config.dataset} holds fewer tokens than one batch of '
        f'data.batch_size={data_config.batch_size} × (data.seq_len + 1)='
        f'{data_config.seq_len + 1}')
  return out


def epochs_seen(data: Data, config, steps: int) -> float:
  """Passes over the train split's windows (packed rows, pairs) after `steps` steps."""
  pairs = getattr(data.train, 'n_pairs', 0)
  if pairs:
    return steps * (config.data.batch_size // 2) / pairs
  if getattr(data.train, 'pack_documents', False):
    if not getattr(data.train, 'packed_rows', 0):
      data.train.packed_rows = pipeline.Packed(data.train, config.data.seq_len, 0).count
    return steps * config.data.batch_size / data.train.packed_rows
  tokens = data.stats.get('train', {}).get('tokens')
  windows = tokens // (config.data.seq_len + 1) if tokens else 0
  if not windows:
    return float('nan')
  return steps * config.data.batch_size / windows
