"""Memory per device of the train step: what the compiler allots, beside an analytic estimate.

`train_step_memory(config, mesh)` compiles the real train step ahead of time for a mesh
(`jax.jit(...).lower(...).compile()` on abstract, sharded state and batch, as MaxText's
train_compile does) without running it, and returns `compiled.memory_analysis()` with the
estimates of the pure functions below. The mesh's devices pick the compiler: compile-only TPU
devices of a topology (lmjax/train/topology.py) give the TPU compiler's own figures; simulated CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count) give XLA:CPU's, a stand-in for a GPU's:
buffer sizes carry over to the accelerator, fusion choices and so temporaries may differ.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lmjax.core.errors import first_line
from lmjax.model import flops
from lmjax.train.steps import build_train_step

ADAMW_BYTES_PER_PARAM = 3 * 4  # float32 parameter and two float32 moments (Loshchilov & Hutter)


def per_device_bytes(tree) -> int:
  """Bytes of one device's shards of a pytree of sharded arrays or ShapeDtypeStructs."""
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
             for x in jax.tree_util.tree_leaves(tree))


def adamw_state_bytes(n_params: int, n_devices: int, param_dtype='float32') -> float:
  """Parameters and AdamW moments per device, 3 × 4 bytes × N / devices, when the parameters
  are float32 and evenly sharded (NaN for other parameter dtypes)."""
  if jnp.dtype(param_dtype) != jnp.float32:
    return float('nan')
  return ADAMW_BYTES_PER_PARAM * n_params / n_devices


def activation_bytes(n_layers, d_model, n_heads, seq_len, micro_batch, tensor=1,
                     dtype_bytes=2) -> float:
  """Activations kept for the backward pass, per device, without recomputation.

  Korthikanti et al. 2022, Eq. 2: 34·s·b·h + 5·a·s²·b bytes per layer at 16 bits (s sequence
  length, b micro-batch per device, h d_model, a heads), all divided by the tensor-parallel size
  t as with tensor and sequence parallelism (their Table 2), and scaled to the compute dtype.
  Causal block skipping and rematerialisation are not modelled.
  """
  per_layer = (34 * seq_len * micro_batch * d_model / tensor
               + 5 * (n_heads / tensor) * seq_len * seq_len * micro_batch)
  return n_layers * per_layer * (dtype_bytes / 2)


class DoesNotFit(Exception):
  """The compiler refused the step for want of memory. The TPU compiler knows the device's HBM
  and stops with RESOURCE_EXHAUSTED (CompileTimeHbmOom) when the temporaries exceed it, so there
  are no figures to analyse; the message is its own first line."""


class TrainStepMemory(NamedTuple):
  compiled: Any          # compiled.memory_analysis(): argument, output, alias, temp sizes
  params: int            # bytes of one device's parameter shards
  moments: int           # bytes of one device's optimizer-state shards
  activations: float     # activation_bytes()
  adamw_estimate: float  # adamw_state_bytes(): what params + moments should come to
  n_params: int
  n_devices: int
  platform: str          # the devices' platform, whose compiler made `compiled`: 'tpu', 'cpu'
  executable: Any        # the jax.stages.Compiled step: as_text(), cost_analysis()

  @property
  def needed(self) -> int:
    """Arguments + temporaries: the outputs alias the donated state, so they add nothing."""
    return self.compiled.argument_size_in_bytes + self.compiled.temp_size_in_bytes


def train_step_memory(config, mesh) -> TrainStepMemory:
  """Compiles the train step of a resolved config for `mesh` and accounts for its memory;
  raises DoesNotFit when the compiler itself finds it too big for the devices."""
  train_step = build_train_step(config, mesh)  # the kernels of the mesh's platform
  state = train_step.abstract_state()
  try:
    compiled = train_step.lower(state).compile()
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    raise DoesNotFit(first_line(e)) from None
  m, shape = config.model, dict(mesh.shape)
  data_par = shape['data'] * shape['fsdp']
  micro = config.data.batch_size / config.train.grad_accum / data_par  # sequences per device
  n_params = flops.config_counts(config).N
  return TrainStepMemory(
      compiled=compiled.memory_analysis(), params=per_device_bytes(state.params),
      moments=per_device_bytes(state.opt_state),
      activations=activation_bytes(m.n_layers, m.d_model, m.n_heads, config.data.seq_len,
                                   micro, shape['tensor'], jnp.dtype(m.dtype).itemsize),
      adamw_estimate=adamw_state_bytes(n_params, mesh.size, m.param_dtype),
      n_params=n_params, n_devices=mesh.size, platform=mesh.devices.flat[0].platform,
      executable=compiled)
