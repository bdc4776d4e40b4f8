"""A user's Python file (a config file, a sweep file): import it, call one function it defines.

The one importer of such files; jax-free. A file can raise anything while it is imported or
called, so every failure becomes one PyFileError with a one-line message and the step that failed
(`kind`); callers (lmjax.sweeps, lmjax/core/cli.py) word their own errors from it.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from lmjax.core.errors import LmjaxError, one_line

MISSING = 'missing'          # no such file
NOT_PYTHON = 'not_python'    # not a .py file
IMPORT = 'import'            # importing the file raised
UNDEFINED = 'undefined'      # the file defines no such function
CALL = 'call'                # calling the function raised


class PyFileError(LmjaxError, ValueError):
  """A file that could not be imported or called: `kind` (MISSING, NOT_PYTHON, IMPORT, UNDEFINED,
  CALL), `path` as shown, `function`, and `cause`, the exception raised (IMPORT, UNDEFINED,
  CALL)."""

  def __init__(self, message: str, kind: str, path: str, function: str,
               cause: Exception | None = None):
    super().__init__(message)
    self.kind, self.path, self.function, self.cause = kind, path, function, cause


def call_function(path: str, function: str, *, shown_as: str | None = None,
                  module_name: str | None = None):
  """Imports the .py file at `path` and returns `function()`; raises PyFileError.

  shown_as: the name messages give the file (default `path`); module_name: the module's
  __name__ (default lmjax_file_<function>).
  """
  shown = path if shown_as is None else shown_as

  def error(kind, message, cause=None):
    return PyFileError(f'{shown}: {message}', kind, shown, function, cause)

  if not os.path.isfile(path):
    raise error(MISSING, 'no such file')
  if not path.endswith('.py'):
    raise error(NOT_PYTHON, f'not a Python file (one defining {function}())')
  name = module_name or f'lmjax_file_{function}'
  try:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as `import` does: a dataclass under `from __future__ import
    # annotations` looks its module up in sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 (a user's file can raise anything)
    sys.modules.pop(name, None)
    raise error(IMPORT, f'importing it raised {one_line(e)}', e) from None
  fn = getattr(module, function, None)
  if not callable(fn):
    # What calling it would have raised, for callers that report the exception itself.
    cause = (TypeError(f'{type(fn).__name__!r} object is not callable')
             if hasattr(module, function) else
             AttributeError(f'module {module.__name__!r} has no attribute {function!r}'))
    raise error(UNDEFINED, f'defines no {function}()', cause)
  try:
    return fn()
  except Exception as e:  # noqa: BLE001
    raise error(CALL, f'{function}() raised {one_line(e)}', e) from None
