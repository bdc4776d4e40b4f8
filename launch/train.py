"""Train a model: python -m launch.train --config=experiments/configs/small.py --workdir=DIR.

Overrides: --config.model.preset=llama --config.train.steps=500 ... The config is resolved and
validated before anything is written; a bad value exits with status 2 and the workdir untouched.
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags
from lmjax.config import ConfigError, resolve

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: config.json, metrics.jsonl, '
                               'tb/, summary.json.')
flags.mark_flags_as_required(['config', 'workdir'])

def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}: use --config.a.b=value for overrides')
  logging.set_verbosity(logging.WARNING)
  load_config_file(flags.FLAGS['config'].config_filename)  # a missing or broken file exits here
  try:
    config = resolve(_CONFIG.value)
  except ConfigError as e:
    fail(str(e))
  workdir = _WORKDIR.value
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    fail(f'--workdir={workdir} is a file, not a directory')
  if os.path.exists(os.path.join(workdir, 'summary.json')):
    print(f'{workdir} holds a finished run (summary.json); nothing to do.')
    return
  if os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    fail(f'--workdir={workdir} holds an unfinished run; choose a new --workdir (resuming needs '
         'checkpoints, which this version does not write)')
  os.makedirs(workdir, exist_ok=True)
  from lmjax.train import train  # jax is imported only once the config is known to be good
  train(config, workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
