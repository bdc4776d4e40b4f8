"""Will it fit? Ahead-of-time compile of the train step for a mesh, without running a step.

  python -m launch.plan --config=experiments/configs/llama_1b.py --mesh=1,8,1 --device_memory=80GB

Simulates the mesh's devices on the CPU (XLA_FLAGS=--xla_force_host_platform_device_count), lowers
and compiles the real train step (`jax.jit(...).lower(...).compile()`) on abstract, sharded state
and batches, and prints per device what `compiled.memory_analysis()` reports (arguments, outputs,
temporaries) beside an analytic estimate: parameters and AdamW moments from their shard shapes,
and activations from Korthikanti et al. 2022 (Eq. 2: 34·s·b·h + 5·a·s²·b bytes per layer at 16
bits, scaled to the compute dtype and divided over tensor parallelism; causal blocks and rematerialisation
not modelled). The verdict compares arguments + temporaries (outputs alias the donated state)
with --device_memory. CPU compilation stands in for the accelerator's: buffer sizes carry over,
fusion choices and so temporaries may differ.
"""
import math
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch.flags_util import fail, load_config_file, parse_flags
from lmjax.config import ConfigError, resolve

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


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  logging.set_verbosity(logging.ERROR)
  mesh_dims = parse_mesh(_MESH.value)
  device_memory = parse_bytes(_MEMORY.value)
  load_config_file(flags.FLAGS['config'].config_filename)
  n = math.prod(mesh_dims)
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={n}')
  os.environ['JAX_PLATFORMS'] = 'cpu'
  raw = _CONFIG.value
  raw.mesh.data, raw.mesh.fsdp, raw.mesh.tensor = mesh_dims
  raw.data.dataset = 'random'  # shapes only: no data is read
  try:
    config = resolve(raw)
  except ConfigError as e:
    fail(str(e))
  import jax
  import jax.numpy as jnp
  from lmjax import flops, sharding
  from lmjax.model import ModelConfig
  from lmjax.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg, state_shardings
  try:
    mesh = sharding.make_mesh(config)
  except sharding.MeshError as e:
    fail(str(e))
  model, tx = build_model_and_optimizer(config)
  shardings = state_shardings(model, tx, config, mesh)
  abstract = jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      jax.eval_shape(lambda: init_state(model, tx, config)), shardings)
  b, t = config.data.batch_size, config.data.seq_len
  bs = sharding.batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=bs)
           for k in ('inputs', 'targets', 'positions', 'segment_ids')}
  batch['weights'] = jax.ShapeDtypeStruct((b, t), jnp.float32, sharding=bs)
  lr = jax.ShapeDtypeStruct(schedule_arg(config).shape, jnp.float32,
                            sharding=sharding.replicated(mesh))
  compiled = make_train_step(model, tx, config, mesh, shardings).lower(abstract, batch,
                                                                     lr).compile()
  mem = compiled.memory_analysis()

  def per_device(tree):
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
               for x in jax.tree_util.tree_leaves(tree))
  params_b = per_device(abstract.params)
  opt_b = per_device(abstract.opt_state)
  m = config.model
  data_par, tensor = mesh_dims[0] * mesh_dims[1], mesh_dims[2]
  scale = jnp.dtype(m.dtype).itemsize / 2
  micro = b / config.train.grad_accum / data_par  # sequences per device per micro-batch
  act_b = m.n_layers * (34 * t * micro * m.d_model / tensor +
                        5 * (m.n_heads / tensor) * t * t * micro) * scale
  counts = flops.param_counts(ModelConfig.from_config(m))
  analytic = 3 * 4 * counts['total'] / n if m.param_dtype == 'float32' else float('nan')
  xla_state = mem.argument_size_in_bytes
  need = mem.argument_size_in_bytes + mem.temp_size_in_bytes
  print(f'config {flags.FLAGS["config"].config_filename}: {counts["total"]:,} parameters, '
        f'batch {b}×{t}, mesh data×fsdp×tensor = {"×".join(map(str, mesh_dims))} ({n} devices)')
  print('per device, from compiled.memory_analysis():')
  print(f'  arguments   {_gb(mem.argument_size_in_bytes)}  (train state shards + batch)')
  print(f'  outputs     {_gb(mem.output_size_in_bytes)}  (aliased to donated arguments: '
        f'{_gb(mem.alias_size_in_bytes).strip()})')
  print(f'  temporaries {_gb(mem.temp_size_in_bytes)}  (activations, gradients, workspace)')
  print('per device, analytic:')
  print(f'  params      {_gb(params_b)}   AdamW moments {_gb(opt_b).strip()}   '
        f'together {_gb(params_b + opt_b).strip()} (3 × 4 bytes × N / devices = '
        f'{_gb(analytic).strip()})')
  print(f'  activations {_gb(act_b)}  (Korthikanti et al. 2022, no recomputation)')
  print(f'state: XLA arguments / analytic params+moments = {xla_state / (params_b + opt_b):.3f}')
  verdict = 'fits' if need <= device_memory else 'does NOT fit'
  print(f'verdict: needs {need / 1e9:.2f} GB (arguments + temporaries) of '
        f'{device_memory / 1e9:.2f} GB per device: {verdict}')
  sys.exit(0 if need <= device_memory else 1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
