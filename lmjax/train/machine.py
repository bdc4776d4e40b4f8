"""Where a run ran: the record `summary.json` keeps under `machine`.

A run is bitwise repeatable on one machine, not across machines: the arch-recipes study, run
twice from fresh clones with the same code, packages and corpus on two CPUs of one kind, gave
losses that differ by as much as seed noise (experiments/README.md, *The same command on another
day*). So a result names the hardware and the numeric libraries it came from, and runs can be
grouped by them (`lmjax.analysis` reads `machine.*` columns from the summaries).
"""
from __future__ import annotations

import platform
from importlib import metadata

import jax

_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy')
# The vector extensions XLA:CPU's kernels choose between, widest first.
_ISAS = ('avx512f', 'avx2', 'avx', 'sse4_2', 'sve', 'asimd')


def _cpuinfo(path: str) -> dict:
  """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
  out = {}
  try:
    with open(path) as f:
      for line in f:
        if not line.strip():
          break
        key, _, value = line.partition(':')
        out[key.strip()] = value.strip()
  except OSError:
    pass
  return out


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
  """The host CPU's model name ('AMD EPYC ...'); platform.processor() where /proc has none."""
  return _cpuinfo(cpuinfo).get('model name') or platform.processor() or platform.machine()


def cpu_isa(cpuinfo: str = '/proc/cpuinfo') -> str | None:
  """The widest vector extension the CPU has ('avx512f', 'avx2', ...), None if unknown."""
  info = _cpuinfo(cpuinfo)
  flags = set((info.get('flags') or info.get('Features') or '').split())
  return next((isa for isa in _ISAS if isa in flags), None)


def _version(name: str) -> str | None:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def describe() -> dict:
  """{cpu, cpu_isa, platform, device_kind, devices, processes, python, and the numeric packages'
  versions}: JSON-ready, the same on every process of a run's machine type."""
  device = jax.devices()[0]
  return dict(cpu=cpu_model(), cpu_isa=cpu_isa(), platform=device.platform,
              device_kind=device.device_kind, devices=jax.device_count(),
              processes=jax.process_count(), python=platform.python_version(),
              **{name: _version(name) for name in _PACKAGES})
