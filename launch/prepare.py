"""Prepare a dataset, its tokenizer and its token stores, and print their statistics.

  python -m launch.prepare --config=experiments/configs/small.py \
      [--config.data.tokenizer=sentencepiece --config.data.vocab_size=4096]

Prepares the TFDS dataset (once; later calls reuse it), trains the tokenizer when it is missing,
tokenises each split once per tokenizer into a token store (lmjax/data/token_store.py), then prints
per split: documents, UTF-8 bytes, tokens (a separator per document included), tokens per byte,
and how long each stage took. Training runs do the same on start-up; this does it ahead.
"""
import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags
from lmjax.config import ConfigError, resolve

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
flags.mark_flags_as_required(['config'])


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}: use --config.a.b=value for overrides')
  logging.set_verbosity(logging.WARNING)
  load_config_file(flags.FLAGS['config'].config_filename)
  try:
    config = resolve(_CONFIG.value)
  except ConfigError as e:
    fail(str(e))
  from lmjax.data import datasets, loader
  data_config = config.data
  if data_config.dataset == 'random':
    fail('config.data.dataset=random has nothing to prepare')
  try:
    t0 = time.time()
    prepared = datasets.prepare(data_config)
    t_dataset = time.time() - t0
    t0 = time.time()
    loaded = loader.load(config)
    t_tokens = time.time() - t0
  except datasets.DataError as e:
    fail(str(e))
  stats = loaded.stats
  tok = loaded.tokenizer
  print(f'dataset {data_config.dataset} in {prepared.data_dir} (prepared in {t_dataset:.1f}s)')
  skipped = prepared.info.metadata.get('skipped_non_utf8') if prepared.info.metadata else None
  if skipped:
    print(f'skipped {skipped} files that are not UTF-8 (config.data.non_utf8=skip)')
  print(f'tokenizer {tok.name}: {tok.vocab_size} ids; token stores in '
        f'{os.path.dirname(loaded.train.path)} (ready in {t_tokens:.1f}s)')
  print(f'{"split":>6} {"documents":>10} {"bytes":>14} {"tokens":>14} {"tokens/byte":>11}'
        f' {"unigram bits/byte":>17}')
  for split, s in stats.items():
    print(f'{split:>6} {s["documents"]:>10,} {s["bytes"]:>14,} {s["tokens"]:>14,} '
          f'{s["tokens_per_byte"]:>11.4f} {s["unigram_bits_per_byte"]:>17.3f}')
  print(json.dumps({'dataset': data_config.dataset, 'tokenizer': tok.name,
                    'vocab_size': tok.vocab_size,
                    'prepare_s': round(t_dataset, 2), 'tokens_s': round(t_tokens, 2),
                    'stats': stats}))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
