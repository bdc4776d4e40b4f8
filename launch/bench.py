"""Training-throughput benchmark: python -m launch.bench [--configs=S,M,small] [--steps=20].

Each config runs in a fresh subprocess (so peak memory is its own): the real train step on
synthetic tokens (config `random` data) or the config's corpus, `warmup` untimed steps, then
`steps` individually timed steps. Prints one JSON line per config (tokens/s from the median step
time, step time, compile time, MFU, peak memory, the input pipeline's own rate over
`pipeline_batches` batches for 1 and 2 processes) and a table. The measuring is
lmjax/train/throughput.py.
"""
import json
import os
import subprocess
import sys

from absl import flags

from lmjax.config import resolve
from lmjax.core.cli import ConfigFileError, load_config_file, run
from lmjax.core.errors import LmjaxError
from lmjax.train import throughput

CONFIGS = {
    'S': 'experiments/configs/nanogpt_s.py',
    'M': 'experiments/configs/nanogpt_m.py',
    'tiny': 'experiments/configs/tiny.py',
    'small': 'experiments/configs/small.py',
}
_CONFIGS = flags.DEFINE_list('configs', ['S', 'M', 'small'], f'names ({", ".join(CONFIGS)}) or '
                             'config file paths')
_STEPS = flags.DEFINE_integer('steps', 20, 'timed steps')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'untimed steps after compiling')
_PIPELINE_BATCHES = flags.DEFINE_integer('pipeline_batches', 200, 'batches timed for the input '
                                         'pipeline alone, per process count')
_CHILD = flags.DEFINE_string('child', None, 'internal: run one config in this process')


class BenchError(LmjaxError, RuntimeError):
  """A config that is unknown, or whose benchmark process failed."""


def _config(name):
  path = CONFIGS.get(name, name)
  if not os.path.isfile(path):
    raise ConfigFileError(f'--configs: {name!r} is neither one of {", ".join(CONFIGS)} nor a '
                          'config file')
  return resolve(load_config_file(path))


def main():
  if _CHILD.value:
    print(json.dumps(throughput.measure(_config(_CHILD.value), _CHILD.value, _STEPS.value,
                                        _WARMUP.value, _PIPELINE_BATCHES.value)), flush=True)
    return
  rows = []
  for name in _CONFIGS.value:
    _config(name)  # fail early on a bad name
    out = subprocess.run([sys.executable, '-m', 'launch.bench', f'--child={name}',
                          f'--steps={_STEPS.value}', f'--warmup={_WARMUP.value}',
                          f'--pipeline_batches={_PIPELINE_BATCHES.value}'],
                         capture_output=True, text=True)
    if out.returncode:
      raise BenchError(f'bench {name} failed: {out.stderr.strip()[-300:]}')
    rows.append(json.loads(out.stdout.strip().rsplit('\n', 1)[-1]))
    print(json.dumps(rows[-1]), flush=True)
  print(throughput.table(rows), file=sys.stderr)


if __name__ == '__main__':
  run(main)
