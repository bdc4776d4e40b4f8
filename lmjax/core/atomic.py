"""Atomic file writes, the one way lmjax writes a file that something else may read.

The content goes to a temporary file beside the target (named with the writer's pid, so two
processes never share one), is flushed and fsynced, then renamed over the target. A reader, or a
crash at any moment, sees the old file or the new one, never half of one; a failed write leaves
the old file and no temporary behind.
"""
from __future__ import annotations

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_open(path, mode='w', **open_kwargs):
  """`with atomic_open(path) as f: f.write(...)`: `path` appears whole when the block ends."""
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    with open(tmp, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_json(path, obj, **dump_kwargs) -> str:
  """json.dump(obj) into `path` atomically (dump_kwargs: indent, sort_keys, ...)."""
  with atomic_open(path) as f:
    json.dump(obj, f, **dump_kwargs)
  return path


def write_text(path, text: str) -> str:
  with atomic_open(path) as f:
    f.write(text)
  return path


def write_bytes(path, data: bytes) -> str:
  with atomic_open(path, 'wb') as f:
    f.write(data)
  return path
