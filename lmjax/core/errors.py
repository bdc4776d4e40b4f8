"""The one error base of lmjax, the exit codes of its entry points, and the one way an exception
becomes one line.

Every error a user can cause (a config value, a flag, a path, a dataset, a checkpoint, a sweep
or runs file) is an `LmjaxError`: its message names the field and what is allowed, and
`one_line()` is that message's first line, never an IndexError on an empty one. Each entry point
maps it to its `exit_code` in one place (lmjax/core/cli.py). Jax-free: the sweep launchers
read the codes of the runs they start without importing JAX.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1      # launch.sweep: some runs are not done; launch.memory: does not fit
EXIT_USAGE = 2       # a bad flag, config, path, dataset, checkpoint or sweep file; nothing written
EXIT_NONFINITE = 3   # the loss or gradient norm went non-finite; the last good checkpoint is kept
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after saving; run again to resume


def first_line(text) -> str:
  """The first line of `text` that is not blank, stripped ('' when there is none)."""
  text = str(text).strip()
  return text.splitlines()[0].strip() if text else ''


def one_line(e: BaseException, limit: int | None = None) -> str:
  """`Type: first line of its message` (the type alone for an empty message), at most `limit`
  characters of message: for errors of other libraries quoted inside lmjax's own."""
  line = first_line(e)
  if limit is not None and len(line) > limit:
    line = line[:limit]
  return f'{type(e).__name__}: {line}' if line else type(e).__name__


class LmjaxError(Exception):
  """An error a user can cause; the message is one line naming what to change. Subclasses keep
  the builtin base they had (ValueError, RuntimeError) beside this one."""
  exit_code = EXIT_USAGE
  label = 'error'  # how an entry point prefixes the line on stderr

  def one_line(self) -> str:
    return first_line(self) or type(self).__name__
