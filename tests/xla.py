"""XLA flags of the test processes. conftest.py turns LLVM's backend optimisations off for the
whole session (its processes and the subprocesses they start): the suite's programs are small
and mostly compiled once, so compiling dominates their time, and unoptimised code computes the
same functions (tests compare numerics within tolerances, or one program against itself). That
takes a quarter less CPU time from the tests that compile much (tests/test_decode.py: 134 s to
91 s), but more from the few that train longer runs in subprocesses (kill-and-resume, async
saves, two processes): those ask for `optimized_env()`."""
import os

FAST_COMPILE = '--xla_backend_optimization_level=0'


def flags(devices: int | None = None, fast_compile=True) -> str:
  """XLA_FLAGS for a test subprocess, with `devices` simulated CPU devices."""
  return ' '.join(([f'--xla_force_host_platform_device_count={devices}'] if devices else [])
                  + ([FAST_COMPILE] if fast_compile else []))


def optimized_env(devices: int | None = None, **extra) -> dict:
  """os.environ for a subprocess that trains for a while: XLA's optimisations on."""
  kept = [f for f in os.environ.get('XLA_FLAGS', '').split()
          if f != FAST_COMPILE and not f.startswith('--xla_force_host_platform_device_count')]
  return {**os.environ, 'XLA_FLAGS': ' '.join(kept + flags(devices, False).split()), **extra}
