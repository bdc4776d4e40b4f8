"""Device meshes and the logical-axis rules that place parameters, optimizer state and batches.

The mesh has axes ('data', 'fsdp', 'tensor') with sizes from `config.mesh` (one may be -1: the rest
of the devices). The model names every parameter dimension with a logical axis
(lmjax/model/transformer.py); `config.mesh.rules` maps logical names to mesh axes, in the style of
the Flax lm1b example and MaxText. Defaults: the batch over (data, fsdp); `embed` over fsdp
(ZeRO-3-like: parameters and optimizer state are split over fsdp and gathered per layer by XLA);
`mlp`, `heads`, `kv_heads` and `vocab` over tensor (Megatron-style tensor parallelism); everything
else replicated. A mixture of experts' weights (E, D, F) carry the logical axis `expert` (rule
default None): they are split like a dense MLP's, over fsdp along D and tensor along F, and every
device holds a slice of every expert. The rule ['expert', 'fsdp'] placed before ['embed', 'fsdp']
splits the experts themselves over fsdp instead (expert parallelism, E divisible by fsdp; the
partitioner moves the tokens, since the dispatch is written for the global batch).

State is created already sharded (`jax.jit` of the initialiser with `out_shardings`), never whole
on one device first. On several hosts each process feeds only its rows of the global batch
(`jax.make_array_from_process_local_data`).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lmjax.core.errors import LmjaxError

AXES = ('data', 'fsdp', 'tensor')
BATCH = ('data', 'fsdp')


class MeshError(LmjaxError, ValueError):
  """A mesh that does not fit the devices or the model; the message names the field."""


def mesh_shape(mesh_config, n_devices: int) -> tuple[int, int, int]:
  sizes = [mesh_config[a] for a in AXES]
  for axis, size in zip(AXES, sizes):
    if size == 0 or size < -1:
      raise MeshError(f'config.mesh.{axis}={size} is not allowed: a positive size or -1')
  if sizes.count(-1) > 1:
    raise MeshError('config.mesh: at most one of data, fsdp, tensor may be -1')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if n_devices % known:
      raise MeshError(f'config.mesh: {n_devices} devices do not divide by the fixed axes '
                      f'(product {known})')
    sizes[sizes.index(-1)] = n_devices // known
  if math.prod(sizes) != n_devices:
    raise MeshError(f'config.mesh: data×fsdp×tensor = {"×".join(map(str, sizes))} = '
                    f'{math.prod(sizes)}, but there are {n_devices} devices')
  return tuple(sizes)


def check_mesh(config, shape):
  """Start-up checks of a mesh against the model and batch; raises MeshError naming the field."""
  data, fsdp, tensor = shape
  m, d = config.model, config.data
  for name, value in (('model.n_heads', m.n_heads), ('model.n_kv_heads', m.n_kv_heads),
                      ('model.d_ff', m.d_ff), ('model.vocab_size', m.vocab_size)):
    if value % tensor:
      raise MeshError(f'config.mesh.tensor={tensor} does not divide config.{name}={value}')
  if m.d_model % fsdp:
    raise MeshError(f'config.mesh.fsdp={fsdp} does not divide config.model.d_model={m.d_model}')
  if m.moe_experts:
    if (m.moe_d_ff or m.d_ff) % tensor:
      raise MeshError(f'config.mesh.tensor={tensor} does not divide the experts\' width '
                      f'config.model.moe_d_ff={m.moe_d_ff or m.d_ff}')
    sizes = dict(zip(AXES, shape))
    for name, axes in rules(config):
      over = math.prod(sizes.get(a, 1) for a in (axes if isinstance(axes, tuple) else (axes,))
                       if a)
      if name == 'expert' and m.moe_experts % over:
        raise MeshError(f'config.mesh.rules puts experts over {axes} of size {over}, which does '
                        f'not divide config.model.moe_experts={m.moe_experts}')
  per_step = d.batch_size // config.train.grad_accum
  if per_step % (data * fsdp):
    raise MeshError(f'config.data.batch_size={d.batch_size} (micro-batches of {per_step}) is '
                    f'not divisible by mesh data×fsdp={data * fsdp}')


def make_mesh(config, devices=None) -> Mesh:
  devices = devices if devices is not None else jax.devices()
  shape = mesh_shape(config.mesh, len(devices))
  check_mesh(config, shape)
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def platform(mesh=None) -> str:
  """cpu, gpu or tpu: of the mesh's devices (which may be a TPU topology compiled for on a CPU
  host, lmjax/train/memory.py), else of JAX's default backend."""
  if mesh is None:
    return jax.default_backend()
  return mesh.devices.flat[0].platform


def rules(config):
  return tuple((name, tuple(axis) if isinstance(axis, (list, tuple)) else axis)
               for name, axis in config.mesh.rules)


def logical_shardings(boxed_tree, mesh, config):
  """NamedShardings for a pytree whose leaves are nn.Partitioned (or plain: replicated). The
  empty placeholders of optax's masked and multi_transform states (μP's groups; boxed when the
  state is made from boxed params) stay bare placeholders: a PartitionSpec is a tuple, and so
  is their empty NamedTuple."""
  placeholder = lambda x: isinstance(x, optax.MaskedNode)
  boxed = lambda x: isinstance(x, nn.Partitioned)
  boxed_tree = jax.tree_util.tree_map(lambda x: x.value if boxed(x) and placeholder(x.value)
                                      else x, boxed_tree, is_leaf=boxed)
  specs = nn.get_partition_spec(boxed_tree)
  return jax.tree_util.tree_map(
      lambda s: s if placeholder(s) else nn.logical_to_mesh_sharding(s, mesh, rules(config)),
      specs, is_leaf=lambda x: placeholder(x) or isinstance(x, P))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put_batch(batch, sharding):
  """This process's rows of a batch -> global jax.Arrays sharded over (data, fsdp)."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
