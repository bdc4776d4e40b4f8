"""Compiler flags a training run sets for its platform, before JAX starts a backend.

XLA reads `XLA_FLAGS` and libtpu reads `LIBTPU_INIT_ARGS` once, when the backend starts, so
`launch.train` calls `apply()` before it imports anything that touches a device. Only flags the
user has not set are added (a user's `--xla_x=...` wins, whatever its value); `--xla_defaults=none`
adds nothing. Every flag here is known to the jaxlib and libtpu this project pins:
tests/test_platform_flags.py starts XLA with the GPU set (an unknown flag is fatal) and compiles
for TPU topologies with the TPU set.

GPU: the latency-hiding scheduler, so collectives overlap compute, with the combine thresholds and
pipelined FSDP collectives of MaxText's GPU recipes and NVIDIA's JAX-Toolbox guide
(rosetta/docs/GPU_performance.md). The thresholds are bytes per combined collective: 1 GiB of
all-reduce, 128 MiB of all-gather and 64 MiB of reduce-scatter, the recipes' figures for one node
of 8 GPUs; on more nodes set smaller ones yourself.

TPU: asynchronous collective fusion, so all-gathers and reduce-scatters of FSDP run beside the
matmuls (MaxText's TPU recipes). Their `..._fuse_all_gather` flag is left out: libtpu 0.0.52
refuses it beside the others on every TPU but v5e ("Continuation fusion for AllGather ... not
supported/recommended on platforms other than TPU v5e").
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

GPU_XLA_FLAGS = (
    '--xla_gpu_enable_latency_hiding_scheduler=true',
    '--xla_gpu_all_reduce_combine_threshold_bytes=1073741824',
    '--xla_gpu_all_gather_combine_threshold_bytes=134217728',
    '--xla_gpu_reduce_scatter_combine_threshold_bytes=67108864',
    '--xla_gpu_enable_pipelined_all_gather=true',
    '--xla_gpu_enable_pipelined_reduce_scatter=true',
    '--xla_gpu_enable_pipelined_all_reduce=true',
    '--xla_gpu_enable_while_loop_double_buffering=true',
)
TPU_LIBTPU_ARGS = (
    '--xla_tpu_enable_async_collective_fusion=true',
    '--xla_tpu_enable_async_collective_fusion_multiple_steps=true',
    '--xla_tpu_overlap_compute_collective_tc=true',
    '--xla_enable_async_all_gather=true',
)
DEFAULTS = {'gpu': ('XLA_FLAGS', GPU_XLA_FLAGS), 'tpu': ('LIBTPU_INIT_ARGS', TPU_LIBTPU_ARGS)}
CHOICES = ('auto', 'gpu', 'tpu', 'none')


def detect_platform(environ=os.environ) -> str:
  """'gpu', 'tpu' or 'cpu': the platform JAX will start, judged without starting it.

  JAX_PLATFORMS decides when set; otherwise a TPU VM shows /dev/accel* or /dev/vfio devices and
  has libtpu, and a CUDA machine shows /dev/nvidia* and has a jax CUDA plugin.
  """
  first = environ.get('JAX_PLATFORMS', '').split(',')[0].strip().lower()
  if first:
    return {'cuda': 'gpu', 'rocm': 'gpu'}.get(first, first)
  def has(*modules):
    return any(importlib.util.find_spec(m) for m in modules)
  if (glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*')) and has('libtpu'):
    return 'tpu'
  if glob.glob('/dev/nvidia[0-9]*') and has('jax_cuda12_plugin', 'jax_cuda13_plugin'):
    return 'gpu'
  return 'cpu'


def _flag_name(flag: str) -> str:
  return flag.split('=', 1)[0].lstrip('-')


def apply(choice: str = 'auto', environ=os.environ) -> tuple[str, str, list]:
  """Adds the defaults of the platform (`choice`, or the detected one for 'auto') to the
  environment variable its compiler reads, skipping flags already there. Returns
  (platform, variable, the flags added); nothing is added for 'none' or the CPU."""
  if choice not in CHOICES:
    raise ValueError(f'--xla_defaults={choice}: one of {", ".join(CHOICES)}')
  if choice == 'none':  # nothing to add, whenever it is called
    return 'none', '', []
  bridge = sys.modules.get('jax._src.xla_bridge')
  if environ is os.environ and bridge is not None and bridge.backends_are_initialized():
    raise RuntimeError('platform_flags.apply() after a JAX backend started: its flags would be '
                       'ignored')
  platform = detect_platform(environ) if choice == 'auto' else choice
  if platform not in DEFAULTS:
    return platform, '', []
  variable, defaults = DEFAULTS[platform]
  present = {_flag_name(f) for f in environ.get(variable, '').split()}
  added = [f for f in defaults if _flag_name(f) not in present]
  if added:
    environ[variable] = ' '.join([environ.get(variable, ''), *added]).strip()
  return platform, variable, added


def describe(platform: str, variable: str, added: list) -> str:
  """The banner's line about what apply() did."""
  if platform == 'none':
    return 'platform flags: none (--xla_defaults=none)'
  if not variable:
    return f'platform flags: none for {platform}'
  if not added:
    return f'platform flags: {variable} already sets all of lmjax\'s {platform} defaults'
  return (f'platform flags ({platform} defaults, skipped with --xla_defaults=none): {variable} += '
          f'{" ".join(added)}')
