"""JAX's persistent compilation cache for a training process: a resumed or repeated run loads its
compiled train step from disk instead of compiling it again.

`config.train.compile_cache`: 'auto' uses $JAX_COMPILATION_CACHE_DIR when set (the sweep
launchers set it to SWEEP_DIR/jax_cache, shared by the sweep's runs), else a `jax_cache`
directory beside the run directory, shared by the runs kept together there; 'none' turns it off;
anything else is the cache directory. The cache is process-wide and fixed at the first compile,
so `launch.train` enables it; library callers may call `enable` themselves before compiling.
Every compile is cached (no minimum compile time), so small programs such as the evaluation step
load from it too. `hits()` counts loads from the cache in this process (JAX's monitoring event).
"""
from __future__ import annotations

import os

import jax

from lmjax.core.rundir import RunDir, make_dirs

_HIT_EVENT = '/jax/compilation_cache/cache_hits'
_hits = []


def directory(setting: str, workdir: str) -> str | None:
  """The cache directory `config.train.compile_cache` names for a run in `workdir`, or None."""
  if setting == 'none':
    return None
  if setting == 'auto':
    return (os.environ.get('JAX_COMPILATION_CACHE_DIR')
            or RunDir(workdir).shared_cache)
  return setting


def enable(path: str) -> list[str]:
  """Caches this process's compiled programs in `path`; returns the directories it made for it
  (OSError when it cannot)."""
  made = make_dirs(path)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  if not _hits:
    _hits.append(0)
    jax.monitoring.register_event_listener(_count)
  return made


def _count(event, **kwargs):
  del kwargs
  if event == _HIT_EVENT:
    _hits[0] += 1


def hits() -> int:
  """Programs loaded from the persistent cache so far in this process (0 when not enabled)."""
  return _hits[0] if _hits else 0
