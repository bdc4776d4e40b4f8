"""Will it fit? Ahead-of-time compile of the train step for a mesh, without running a step.

  python -m launch.memory --config=experiments/configs/llama_1b.py --topology=v5p:2x2x2 --mesh=1,8,1
  python -m launch.memory --config=experiments/configs/llama_1b.py --mesh=1,8,1 --device_memory=80GB

With --topology (a TPU slice in libtpu's spelling: v5p:2x2x1, v5e:2x2, v6e:2x2, v4:2x2x1; needs
the `tpu` extra), libtpu describes the slice's devices and the TPU compiler itself compiles the
step for them, on this machine, with no TPU (lmjax/train/topology.py); --device_memory defaults to the
chip's HBM. Without it, the mesh's devices are simulated on the CPU
(XLA_FLAGS=--xla_force_host_platform_device_count) and XLA:CPU stands in for the accelerator's
compiler, as for a GPU target: buffer sizes carry over, fusion choices and so temporaries may
differ.

Prints per device what `compiled.memory_analysis()` reports (arguments, outputs, temporaries)
beside an analytic estimate: parameters and AdamW moments from their shard shapes, activations
after Korthikanti et al. 2022 (lmjax/train/memory.py). The verdict compares arguments + temporaries
(outputs alias the donated state) with the device memory: exit 0 when they fit, 1 when not, 2 on
a bad flag or config. Nothing is written.
"""
import math
import os
import sys
from typing import NamedTuple

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags, parse_mesh
from lmjax.config import ConfigError, resolve
from lmjax.core.errors import EXIT_FAILED, EXIT_OK

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_MESH = flags.DEFINE_string('mesh', None, 'data,fsdp,tensor sizes, e.g. 1,8,1; with --topology '
                            'one may be -1 (the devices left over)')
_TOPOLOGY = flags.DEFINE_string('topology', None, 'A TPU slice to compile for, e.g. v5p:2x2x1 '
                                '(needs libtpu); unset: the mesh on simulated CPU devices')
_MEMORY = flags.DEFINE_string('device_memory', None, 'Memory per device, e.g. 80GB, 16GiB; '
                              'default: the chip\'s HBM with --topology, else 80GB')
flags.mark_flags_as_required(['config', 'mesh'])

UNITS = {'KB': 1e3, 'MB': 1e6, 'GB': 1e9, 'TB': 1e12, 'KIB': 2**10, 'MIB': 2**20, 'GIB': 2**30,
         'TIB': 2**40, 'B': 1}
DEFAULT_MEMORY = '80GB'  # an 80 GB GPU (A100, H100), the usual target of the CPU path


def parse_bytes(text):
  t = text.strip().upper().replace(' ', '')
  for unit in sorted(UNITS, key=len, reverse=True):
    if t.endswith(unit):
      try:
        return float(t[:-len(unit)]) * UNITS[unit]
      except ValueError:
        break
  fail(f'--device_memory={text}: expected a size such as 80GB or 16GiB')


class Target(NamedTuple):
  """What the step is compiled for, and what its figures are compared with."""
  devices: list
  memory: float      # bytes per device
  memory_from: str   # where that figure comes from
  compiler: str      # whose memory_analysis() the figures are


def _gb(n):
  return f'{n / 1e9:8.3f} GB'


def _config(mesh_dims, simulated_devices):
  """The resolved config for the mesh. JAX is kept to the CPU, with `simulated_devices` CPU
  devices (None: one, when compiling for a TPU topology's devices)."""
  load_config_file(flags.FLAGS['config'].config_filename)
  # Before JAX starts: its devices are fixed then.
  if simulated_devices:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={simulated_devices}')
  os.environ['JAX_PLATFORMS'] = 'cpu'
  raw = _CONFIG.value
  raw.mesh.data, raw.mesh.fsdp, raw.mesh.tensor = mesh_dims
  raw.data.dataset = 'random'  # shapes only: no data is read
  try:
    return resolve(raw)
  except ConfigError as e:
    fail(str(e))


def _tpu_target(name, config):
  from importlib.metadata import version
  from lmjax.train import topology
  try:
    devices = topology.tpu_devices(name)
  except topology.TopologyError as e:
    fail(f'--topology={e}')  # its message starts with the name
  from lmjax.train import sharding
  try:
    sharding.mesh_shape(config.mesh, len(devices))
  except sharding.MeshError:
    fail(f'--mesh={_MESH.value}: data×fsdp×tensor must come to the {len(devices)} devices of '
         f'--topology={name} (one size may be -1)')
  kind = f'{len(devices)} × {devices[0].device_kind} devices'
  compiler = f'the TPU compiler\'s (libtpu {version("libtpu")}), for {kind}'
  if _MEMORY.value:
    return Target(devices, parse_bytes(_MEMORY.value), f'--device_memory={_MEMORY.value}',
                  compiler)
  hbm = topology.hbm_per_device(name, len(devices))
  if hbm is None:
    fail(f'--topology={name}: its HBM is not in lmjax/train/topology.py HBM_PER_CHIP; give '
         '--device_memory')
  return Target(devices, hbm, f'{name}\'s HBM: {hbm / 2**30:g} GiB per device', compiler)


def _cpu_target(n_devices):
  import jax
  compiler = (f'XLA:CPU\'s, for {n_devices} simulated CPU devices: a stand-in for the '
              'accelerator\'s compiler (GPU targets use this path); buffer sizes carry over, '
              'fusion choices and so temporaries may differ')
  memory = _MEMORY.value or DEFAULT_MEMORY
  return Target(jax.devices()[:n_devices], parse_bytes(memory), f'--device_memory={memory}',
                compiler)


def _header(config, mesh, target, n_params=None):
  params = f'{n_params:,} parameters, ' if n_params else ''
  print(f'config {flags.FLAGS["config"].config_filename}: {params}'
        f'batch {config.data.batch_size}×{config.data.seq_len} in {config.train.grad_accum} '
        f'micro-batches, mesh data×fsdp×tensor = '
        f'{"×".join(str(mesh.shape[a]) for a in mesh.axis_names)} ({mesh.size} devices)')
  print(f'figures: {target.compiler}')


def _print(est, config, mesh, target):
  mem, state = est.compiled, est.params + est.moments
  _header(config, mesh, target, est.n_params)
  print('per device, from compiled.memory_analysis():')
  print(f'  arguments   {_gb(mem.argument_size_in_bytes)}  (train state shards + batch)')
  print(f'  outputs     {_gb(mem.output_size_in_bytes)}  (aliased to donated arguments: '
        f'{_gb(mem.alias_size_in_bytes).strip()})')
  print(f'  temporaries {_gb(mem.temp_size_in_bytes)}  (activations, gradients, workspace)')
  print('per device, analytic:')
  print(f'  params      {_gb(est.params)}   AdamW moments {_gb(est.moments).strip()}   '
        f'together {_gb(state).strip()} (3 × 4 bytes × N / devices = '
        f'{_gb(est.adamw_estimate).strip()})')
  print(f'  activations {_gb(est.activations)}  (Korthikanti et al. 2022, no recomputation)')
  print(f'state: XLA arguments / analytic params+moments = '
        f'{mem.argument_size_in_bytes / state:.3f}')


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  logging.set_verbosity(logging.ERROR)
  name = _TOPOLOGY.value
  mesh_dims = parse_mesh(_MESH.value, allow_rest=name is not None)
  if _MEMORY.value:
    parse_bytes(_MEMORY.value)  # a bad size fails before anything is compiled
  config = _config(mesh_dims, None if name else math.prod(mesh_dims))
  target = _tpu_target(name, config) if name else _cpu_target(math.prod(mesh_dims))
  from lmjax.train import memory, sharding
  try:
    mesh = sharding.make_mesh(config, target.devices)
  except sharding.MeshError as e:
    fail(str(e))
  try:
    est = memory.train_step_memory(config, mesh)
  except memory.DoesNotFit as e:
    _header(config, mesh, target)
    print(f'verdict: does NOT fit: the compiler refused the step: {e}')
    sys.exit(EXIT_FAILED)
  _print(est, config, mesh, target)
  fits = est.needed <= target.memory
  print(f'verdict: needs {est.needed / 1e9:.2f} GB (arguments + temporaries) of '
        f'{target.memory / 1e9:.2f} GB per device ({target.memory_from}): '
        f'{"fits" if fits else "does NOT fit"}')
  sys.exit(EXIT_OK if fits else EXIT_FAILED)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
