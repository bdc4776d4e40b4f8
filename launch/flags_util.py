"""Start-up helpers shared by the entry points: flags and configs that fail in one line."""
import sys

from absl import flags

from lmjax.core import pyfile
from lmjax.core.exitcodes import EXIT_USAGE


def fail(message, code=EXIT_USAGE):
  """Prints `error: message` on stderr and exits with `code` (2: a bad flag or config)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _first_line(e):
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return lines[-1] if lines else type(e).__name__


def load_config_file(path):
  """Imports a config file and returns its get_config(); fails in one line."""
  try:
    return pyfile.call_function(path, 'get_config', module_name='lmjax_config_file')
  except pyfile.PyFileError as e:
    if e.kind == pyfile.MISSING:
      fail(f'--config={path}: no such file')
    if e.kind == pyfile.NOT_PYTHON:
      fail(f'--config={path}: not a Python config file (one defining get_config())')
    fail(f'--config={path}: loading it raised {type(e.cause).__name__}: {_first_line(e.cause)}')


def _check_override(config, arg):
  path = arg[len('--config.'):].split('=', 1)[0]
  node = config
  for part in path.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      fail(f'{arg.split("=", 1)[0]}: no such config field (config.{path})')
    node = node[part]


def parse_flags(argv):
  """absl flags parser for app.run(flags_parser=...): one-line errors, exit status 2."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # absl and ml_collections raise several types here
    config_arg = next((a for a in argv if a.startswith('--config=')), None)
    if config_arg:
      config = load_config_file(config_arg.split('=', 1)[1])
      for arg in argv:
        if arg.startswith('--config.'):
          _check_override(config, arg)
    fail(_first_line(e))


def parse_mesh(text, allow_rest):
  """--mesh=data,fsdp,tensor as (data, fsdp, tensor); -1 (the devices left over) only where
  the devices are known (`allow_rest`). Fails in one line."""
  try:
    sizes = tuple(int(x) for x in text.split(','))
  except ValueError:
    sizes = ()
  if len(sizes) != 3 or not all(s >= 1 or s == -1 for s in sizes) or sizes.count(-1) > 1:
    fail(f'--mesh={text}: expected three positive sizes data,fsdp,tensor (with --topology one '
         'may be -1), e.g. 1,8,1')
  if -1 in sizes and not allow_rest:
    fail(f'--mesh={text}: -1 needs --topology; without one the sizes are the simulated devices')
  return sizes
