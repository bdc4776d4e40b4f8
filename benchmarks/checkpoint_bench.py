"""How long a checkpoint save blocks the training loop (synchronous vs asynchronous), how long a
restore takes, and what the arrays' digests (lmjax/train/digests.py) cost of each.

  python benchmarks/checkpoint_bench.py [--config=experiments/configs/small.py] [--saves=5]

Builds the config's train state (params + AdamW state) and data iterator, then for each mode
saves `--saves` checkpoints into a temporary directory, timing how long `save()` holds the
caller (the loop's stall) and how long until the checkpoint is complete on disk, then restores
the last one `--saves` times. Prints one JSON line per mode, with the state's size, the median
times, and the median time of computing the digests alone (part of every save and restore).
"""
import argparse
import json
import statistics
import tempfile
import time

import jax
from ml_collections import ConfigDict

from lmjax.config import resolve
from lmjax.core.cli import load_config_file
from lmjax.core.errors import first_line
from lmjax.data import loader
from lmjax.train import digests
from lmjax.train.checkpoint import Checkpoints, abstract_like
from lmjax.train.steps import build_model_and_optimizer, init_state


def main():
  ap = argparse.ArgumentParser(description=first_line(__doc__))
  ap.add_argument('--config', default='experiments/configs/small.py')
  ap.add_argument('--saves', type=int, default=5)
  args = ap.parse_args()
  config = resolve(load_config_file(args.config))
  model, tx = build_model_and_optimizer(config)
  state = init_state(model, tx, config)
  it = loader.train_iterator(loader.load(config), config)
  next(it)
  size = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
  for async_save in (False, True):
    ck_config = ConfigDict(dict(config.checkpoint.to_dict(), async_save=async_save,
                                max_to_keep=2))
    with tempfile.TemporaryDirectory() as workdir:
      ckpt = Checkpoints(workdir, ck_config)
      blocked, complete = [], []
      for i in range(1, args.saves + 1):
        t0 = time.perf_counter()
        ckpt.save(i, state, it, {'step': i})
        blocked.append(time.perf_counter() - t0)
        ckpt.wait()
        complete.append(time.perf_counter() - t0)
      ckpt.close()
      restored = []
      for _ in range(args.saves):
        reader = Checkpoints(workdir, ck_config, read_only=True)
        t0 = time.perf_counter()
        jax.block_until_ready(reader.restore(args.saves, abstract_like(state), it)[0])
        restored.append(time.perf_counter() - t0)
        reader.close()
    digest = []
    for _ in range(args.saves):
      t0 = time.perf_counter()
      digests.digests(state)
      digest.append(time.perf_counter() - t0)
    print(json.dumps({'mode': 'async' if async_save else 'sync', 'state_mb': round(size / 2**20, 1),
                      'blocks_loop_ms_median': _ms(blocked), 'complete_ms_median': _ms(complete),
                      'restore_ms_median': _ms(restored), 'digests_ms_median': _ms(digest),
                      'blocks_loop_ms': [round(b * 1e3, 1) for b in blocked]}))


def _ms(times):
  return round(statistics.median(times) * 1e3, 1)


if __name__ == '__main__':
  main()
