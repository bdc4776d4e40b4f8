"""TPU devices to compile for on any machine: a topology name such as 'v5p:2x2x1' becomes the
slice's devices, and the HBM each device has.

libtpu (the optional `tpu` extra) describes a slice it is not running on:
`jax.experimental.topologies.get_topology_desc(name, 'tpu')` returns compile-only devices, so
`jax.jit(...).lower(...).compile()` for a mesh of them runs the TPU compiler itself, here on a
CPU machine (MaxText's train_compile does the same). Nothing runs on them.
"""
from __future__ import annotations

import importlib
import math
import os
import re

from lmjax.core.errors import LmjaxError, first_line

# HBM per chip, from Google Cloud TPU's system architecture pages (cloud.google.com/tpu/docs/
# v4, v5e, v5p, v6e; 2026-11). The v5e, v5p and v6e pages write "GB"; HBM comes in binary sizes
# and the v4 page writes GiB, so GiB here. The runtime keeps a little of it for itself.
HBM_PER_CHIP = {
    'v4': 32 * 2**30,   # "HBM2 capacity 32 GiB", two TensorCores per chip
    'v5e': 16 * 2**30,  # "HBM2 capacity 16 GB", one TensorCore
    'v5p': 95 * 2**30,  # "HBM2e capacity 95GB", two TensorCores (one device: megacore)
    'v6e': 32 * 2**30,  # "HBM capacity per chip 32 GB", one TensorCore
}

# libtpu starts up as on a TPU VM: it asks for the VM's accelerator type and workers (printing
# warnings without them), takes /tmp/libtpu_lockfile and logs under /tmp/tpu_logs. None of that
# concerns a compile-only client: these keep it quiet and off the disk, and let it start beside a
# training process that holds the chips. Set only while JAX is kept to the CPU (JAX_PLATFORMS=cpu,
# as launch.memory sets it), so no TPU runtime of this process can start under them.
_QUIET_LIBTPU = {'TPU_WORKER_HOSTNAMES': 'localhost', 'TPU_HOST_BOUNDS': '1,1,1',
                 'TPU_MIN_LOG_LEVEL': '3', 'ALLOW_MULTIPLE_LIBTPU_LOAD': '1'}

_NAME = re.compile(r'^([a-z0-9]+)[=_:]([0-9]+(?:x[0-9]+)*)')  # 'v5p:2x2x1' -> v5p, 2x2x1
EXAMPLES = 'v5p:2x2x1, v5e:2x2, v6e:2x2, v4:2x2x1'


class TopologyError(LmjaxError, ValueError):
  """No devices for a topology name; the message starts with the name."""


def tpu_devices(name: str, import_module=importlib.import_module) -> list:
  """The compile-only devices of the TPU slice `name` (libtpu's spelling: 'v5p:2x2x1')."""
  try:
    import_module('libtpu')
  except ImportError:
    raise TopologyError(f"{name} needs the libtpu package: pip install -e '.[tpu]'") from None
  if os.environ.get('JAX_PLATFORMS') == 'cpu':
    for key, value in _QUIET_LIBTPU.items():
      os.environ.setdefault(key, value)
  from jax.experimental import topologies
  try:
    return list(topologies.get_topology_desc(name, 'tpu').devices)
  except Exception as e:  # jax.errors.JaxRuntimeError: INVALID_ARGUMENT and libtpu's reason
    reason = first_line(e) or type(e).__name__
    raise TopologyError(f'{name} is not a TPU topology libtpu can describe ({reason}); '
                        f'names look like {EXAMPLES}') from None


def hbm_per_device(name: str, n_devices: int) -> float | None:
  """Bytes of HBM per device of the slice `name`, or None for a TPU kind not in HBM_PER_CHIP.

  The chips' HBM over the devices: v4 slices come as one device per TensorCore (two per chip,
  each with half the chip's HBM); v5p's two TensorCores are one device.
  """
  match = _NAME.match(name.lower())
  if not match or match.group(1) not in HBM_PER_CHIP:
    return None
  chips = math.prod(int(x) for x in match.group(2).split('x'))
  return HBM_PER_CHIP[match.group(1)] * chips / n_devices
