"""What every entry point shares (launch/, `python -m experiments.arch_recipes`, benchmarks/):
`run(main)`, which makes an entry point's `main` one library call whose LmjaxError becomes its
one line on stderr and its exit code (lmjax/core/errors.py), and flags and config files that
fail in one line with exit status 2."""
import os
import signal
import sys

from absl import app, flags

from lmjax.core import pyfile
from lmjax.core.errors import (EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE, LmjaxError, first_line,
                               one_line)


class ConfigFileError(LmjaxError, ValueError):
  """A --config file that is missing, not Python, or raises while it loads; one line."""


def fail(message, code=EXIT_USAGE, label='error'):
  """Prints `label: message` on stderr and exits with `code` (2: a bad flag or config)."""
  print(f'{label}: {message}' if label else message, file=sys.stderr, flush=True)
  # The line is the last word: what threads print as the interpreter shuts down (tensorstore's
  # callbacks into an event loop closed by a failed read) goes nowhere.
  os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
  sys.exit(code)


def run(main):
  """absl's app.run for an entry point whose work is `main()`, a library call returning the
  exit status (None: 0). Positional arguments are refused; an LmjaxError prints its one line
  and exits with its code; flags that do not parse fail in one line (`parse_flags`)."""
  def absl_main(argv):
    if len(argv) > 1:
      fail(f'unexpected arguments {argv[1:]}: flags are --name=value (config fields '
           '--config.a.b=value)')
    try:
      return main() or EXIT_OK
    except LmjaxError as e:
      if e.exit_code == EXIT_PREEMPTED:  # saved and leaving: a repeated SIGTERM (srun forwards
        for sig in (signal.SIGTERM, signal.SIGINT):  # the one SLURM sent its step) must not
          signal.signal(sig, signal.SIG_IGN)  # turn exit 75 into a death by signal (143)
      fail(e.one_line(), e.exit_code, e.label)
  app.run(absl_main, flags_parser=parse_flags)


def load_config_file(path):
  """Imports a config file and returns its get_config(); ConfigFileError in one line."""
  try:
    return pyfile.call_function(path, 'get_config', module_name='lmjax_config_file')
  except pyfile.PyFileError as e:
    if e.kind == pyfile.MISSING:
      raise ConfigFileError(f'--config={path}: no such file') from None
    if e.kind == pyfile.NOT_PYTHON:
      raise ConfigFileError(f'--config={path}: not a Python config file (one defining '
                            'get_config())') from None
    raise ConfigFileError(f'--config={path}: loading it raised {one_line(e.cause)}') from None


def config_value(flag):
  """The ConfigDict of a `config_flags.DEFINE_config_file` flag, its file loaded first
  (`load_config_file`: a broken file is one line, not absl's traceback)."""
  load_config_file(flags.FLAGS[flag.name].config_filename)
  return flag.value


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
      try:
        config = load_config_file(config_arg.split('=', 1)[1])
      except ConfigFileError as bad:
        fail(bad.one_line())
      for arg in argv:
        if arg.startswith('--config.'):
          _check_override(config, arg)
    fail(first_line(e) or type(e).__name__)
