"""Prepare a dataset, its tokenizer and its token stores, and print their statistics.

  python -m launch.prepare --config=experiments/configs/small.py \
      [--config.data.tokenizer=sentencepiece --config.data.vocab_size=4096]

Prepares the TFDS dataset (once; later calls reuse it), trains the tokenizer when it is missing,
tokenises each split once per tokenizer into a token store (lmjax/data/token_store.py), then
prints per split: documents, UTF-8 bytes, tokens (a separator per document included), tokens per
byte, and how long each stage took, and the same as one JSON line. Training runs do the same on
start-up; this does it ahead. The work is lmjax/data/prepare.py.
"""
import json

from absl import flags, logging
from ml_collections import config_flags

from lmjax.config import resolve
from lmjax.core.cli import config_value, run
from lmjax.data.prepare import prepare

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
flags.mark_flags_as_required(['config'])


def main():
  logging.set_verbosity(logging.WARNING)
  print(json.dumps(prepare(resolve(config_value(_CONFIG)))))


if __name__ == '__main__':
  run(main)
