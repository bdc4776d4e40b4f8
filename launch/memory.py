"""Will it fit? Ahead-of-time compile of the train step for a mesh, without running a step.

  python -m launch.memory --config=experiments/configs/llama_1b.py --mesh=1,8,1 --device_memory=80GB

Simulates the mesh's devices on the CPU (XLA_FLAGS=--xla_force_host_platform_device_count),
compiles the real train step for them and prints per device what `compiled.memory_analysis()`
reports (arguments, outputs, temporaries) beside an analytic estimate: parameters and AdamW
moments from their shard shapes, activations after Korthikanti et al. 2022 (lmjax/memory.py).
The verdict compares arguments + temporaries (outputs alias the donated state) with
--device_memory: exit 0 when they fit, 1 when not, 2 on a bad flag or config. CPU compilation
stands in for the accelerator's: buffer sizes carry over, fusion choices and so temporaries may
differ.
"""
import math
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags
from lmjax.config import ConfigError, resolve
from lmjax.exitcodes import EXIT_FAILED, EXIT_OK

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=False)
_MESH = flags.DEFINE_string('mesh', None, 'data,fsdp,tensor sizes, e.g. 1,8,1')
_MEMORY = flags.DEFINE_string('device_memory', '80GB', 'Memory per device, e.g. 80GB, 16GiB.')
flags.mark_flags_as_required(['config', 'mesh'])

UNITS = {'KB': 1e3, 'MB': 1e6, 'GB': 1e9, 'TB': 1e12, 'KIB': 2**10, 'MIB': 2**20, 'GIB': 2**30,
         'TIB': 2**40, 'B': 1}


def parse_bytes(text):
  t = text.strip().upper().replace(' ', '')
  for unit in sorted(UNITS, key=len, reverse=True):
    if t.endswith(unit):
      try:
        return float(t[:-len(unit)]) * UNITS[unit]
      except ValueError:
        break
  fail(f'--device_memory={text}: expected a size such as 80GB or 16GiB')


def parse_mesh(text):
  try:
    sizes = tuple(int(x) for x in text.split(','))
  except ValueError:
    sizes = ()
  if len(sizes) != 3 or min(sizes) < 1:
    fail(f'--mesh={text}: expected three positive sizes data,fsdp,tensor, e.g. 1,8,1')
  return sizes


def _gb(n):
  return f'{n / 1e9:8.3f} GB'


def _config(mesh_dims):
  """The resolved config for the mesh, with JAX set up to simulate its devices on the CPU."""
  load_config_file(flags.FLAGS['config'].config_filename)
  # Before JAX starts: its devices are fixed then.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={math.prod(mesh_dims)}')
  os.environ['JAX_PLATFORMS'] = 'cpu'
  raw = _CONFIG.value
  raw.mesh.data, raw.mesh.fsdp, raw.mesh.tensor = mesh_dims
  raw.data.dataset = 'random'  # shapes only: no data is read
  try:
    return resolve(raw)
  except ConfigError as e:
    fail(str(e))


def _print(est, config, mesh_dims):
  mem, state = est.compiled, est.params + est.moments
  print(f'config {flags.FLAGS["config"].config_filename}: {est.n_params:,} parameters, '
        f'batch {config.data.batch_size}×{config.data.seq_len}, mesh data×fsdp×tensor = '
        f'{"×".join(map(str, mesh_dims))} ({est.n_devices} devices)')
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
  mesh_dims = parse_mesh(_MESH.value)
  device_memory = parse_bytes(_MEMORY.value)
  config = _config(mesh_dims)
  from lmjax import memory, sharding
  try:
    mesh = sharding.make_mesh(config)
  except sharding.MeshError as e:
    fail(str(e))
  est = memory.train_step_memory(config, mesh)
  _print(est, config, mesh_dims)
  fits = est.needed <= device_memory
  print(f'verdict: needs {est.needed / 1e9:.2f} GB (arguments + temporaries) of '
        f'{device_memory / 1e9:.2f} GB per device: {"fits" if fits else "does NOT fit"}')
  sys.exit(EXIT_OK if fits else EXIT_FAILED)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
