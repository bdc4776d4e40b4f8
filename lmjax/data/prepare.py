"""`launch.prepare` as one call: a config's dataset prepared, its tokenizer trained and each split
tokenised once (lmjax/data/loader.py), then each split's statistics reported."""
from __future__ import annotations

import os
import time

from lmjax.data import datasets, loader


def prepare(config, log=print) -> dict:
  """Prepares what `config` (resolved) trains on, logs a table of documents, UTF-8 bytes,
  tokens, tokens per byte and unigram entropy per split, and returns them with the timings.
  DataError when there is nothing to prepare or it cannot be prepared."""
  data_config = config.data
  if data_config.dataset == 'random':
    raise datasets.DataError('config.data.dataset=random has nothing to prepare')
  t0 = time.time()
  with datasets.preparing(data_config):
    prepared = datasets.prepare(data_config)
  t_dataset = time.time() - t0
  t0 = time.time()
  loaded = loader.load(config)
  t_tokens = time.time() - t0
  tok = loaded.tokenizer
  log(f'dataset {data_config.dataset} in {prepared.data_dir} (prepared in {t_dataset:.1f}s)')
  if prepared.skipped_non_utf8:
    log(f'skipped {prepared.skipped_non_utf8} files that are not UTF-8 '
        '(config.data.non_utf8=skip)')
  log(f'tokenizer {tok.name}: {tok.vocab_size} ids; token stores in '
      f'{os.path.dirname(loaded.train.path)} (ready in {t_tokens:.1f}s)')
  log(f'{"split":>6} {"documents":>10} {"bytes":>14} {"tokens":>14} {"tokens/byte":>11}'
      f' {"unigram bits/byte":>17}')
  for split, s in loaded.stats.items():
    log(f'{split:>6} {s["documents"]:>10,} {s["bytes"]:>14,} {s["tokens"]:>14,} '
        f'{s["tokens_per_byte"]:>11.4f} {s["unigram_bits_per_byte"]:>17.3f}')
  return {'dataset': data_config.dataset, 'tokenizer': tok.name, 'vocab_size': tok.vocab_size,
          'prepare_s': round(t_dataset, 2), 'tokens_s': round(t_tokens, 2),
          'stats': loaded.stats}
