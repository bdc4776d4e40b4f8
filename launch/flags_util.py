"""What every entry point shares: flags and configs that fail in one line, and `run`, which
makes a launcher's `main` one library call whose LmjaxError becomes one line on stderr and its
exit code (lmjax/core/errors.py)."""
import sys

from absl import app, flags

from lmjax.core import pyfile
from lmjax.core.errors import EXIT_OK, EXIT_USAGE, LmjaxError, first_line, one_line


def fail(message, code=EXIT_USAGE, label='error'):
  """Prints `label: message` on stderr and exits with `code` (2: a bad flag or config)."""
  print(f'{label}: {message}' if label else message, file=sys.stderr)
  sys.exit(code)


def run(call):
  """absl's app.run for an entry point whose work is `call()`, a library call returning the
  exit status (None: 0). Positional arguments are refused; an LmjaxError prints its one line
  and exits with its code; flags that do not parse fail in one line (`parse_flags`)."""
  def main(argv):
    if len(argv) > 1:
      fail(f'unexpected arguments {argv[1:]}: flags are --name=value (config fields '
           '--config.a.b=value)')
    try:
      return call() or EXIT_OK
    except LmjaxError as e:
      fail(e.one_line(), e.exit_code, e.label)
  app.run(main, flags_parser=parse_flags)


def load_config_file(path):
  """Imports a config file and returns its get_config(); fails in one line."""
  try:
    return pyfile.call_function(path, 'get_config', module_name='lmjax_config_file')
  except pyfile.PyFileError as e:
    if e.kind == pyfile.MISSING:
      fail(f'--config={path}: no such file')
    if e.kind == pyfile.NOT_PYTHON:
      fail(f'--config={path}: not a Python config file (one defining get_config())')
    fail(f'--config={path}: loading it raised {one_line(e.cause)}')


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
    fail(first_line(e) or type(e).__name__)


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
