"""Will it fit? `launch.memory` as one call: a config, a mesh and a target in, the compiler's
memory per device beside the analytic estimate (lmjax/train/memory.py), and a verdict out.

The target is a TPU slice (`topology`, libtpu's spelling: v5p:2x2x1, v5e:2x2, ...): libtpu
describes its devices and the TPU compiler itself compiles the step on this machine, no TPU
needed (lmjax/train/topology.py), against the chip's HBM by default. Without one, the mesh's
devices are simulated on the CPU and XLA:CPU stands in for the accelerator's compiler (the path
for GPU targets): buffer sizes carry over, fusion choices and so temporaries may differ.
JAX is started here, once the number of simulated devices is known: call `plan` before
anything else imports JAX.
"""
from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

from lmjax.config import parse_mesh, resolve
from lmjax.core.errors import LmjaxError

UNITS = {'KB': 1e3, 'MB': 1e6, 'GB': 1e9, 'TB': 1e12, 'KIB': 2**10, 'MIB': 2**20, 'GIB': 2**30,
         'TIB': 2**40, 'B': 1}
DEFAULT_MEMORY = '80GB'  # an 80 GB GPU (A100, H100), the usual target of the CPU path


class PlanInputError(LmjaxError, ValueError):
  """A flag of launch.memory that cannot be planned with; one line naming it."""


def parse_bytes(text: str) -> float:
  """'80GB', '16GiB', ... in bytes."""
  t = text.strip().upper().replace(' ', '')
  for unit in sorted(UNITS, key=len, reverse=True):
    if t.endswith(unit):
      try:
        return float(t[:-len(unit)]) * UNITS[unit]
      except ValueError:
        break
  raise PlanInputError(f'--device_memory={text}: expected a size such as 80GB or 16GiB')


class Target(NamedTuple):
  """What the step is compiled for, and what its figures are compared with."""
  devices: list
  memory: float      # bytes per device
  memory_from: str   # where that figure comes from
  compiler: str      # whose memory_analysis() the figures are


class MemoryPlan(NamedTuple):
  """The figures of one plan; `text()` is what launch.memory prints, `fits` its verdict."""
  config: Any
  config_name: str
  mesh: Any
  target: Target
  estimate: Any       # lmjax.train.memory.TrainStepMemory, or None when the compiler refused
  refused: str        # the compiler's own reason when it refused the step for memory

  @property
  def fits(self) -> bool:
    return self.estimate is not None and self.estimate.needed <= self.target.memory

  def text(self) -> str:
    c, mesh = self.config, self.mesh
    est = self.estimate
    params = f'{est.n_params:,} parameters, ' if est else ''
    lines = [f'config {self.config_name}: {params}batch {c.data.batch_size}×{c.data.seq_len} in '
             f'{c.train.grad_accum} micro-batches, mesh data×fsdp×tensor = '
             f'{"×".join(str(mesh.shape[a]) for a in mesh.axis_names)} ({mesh.size} devices)',
             f'figures: {self.target.compiler}']
    if est is None:
      return '\n'.join(lines + [f'verdict: does NOT fit: the compiler refused the step: '
                                f'{self.refused}'])
    mem, state = est.compiled, est.params + est.moments
    gb = lambda n: f'{n / 1e9:8.3f} GB'
    lines += [
        'per device, from compiled.memory_analysis():',
        f'  arguments   {gb(mem.argument_size_in_bytes)}  (train state shards + batch)',
        f'  outputs     {gb(mem.output_size_in_bytes)}  (aliased to donated arguments: '
        f'{gb(mem.alias_size_in_bytes).strip()})',
        f'  temporaries {gb(mem.temp_size_in_bytes)}  (activations, gradients, workspace)',
        'per device, analytic:',
        f'  params      {gb(est.params)}   AdamW moments {gb(est.moments).strip()}   together '
        f'{gb(state).strip()} (3 × 4 bytes × N / devices = {gb(est.adamw_estimate).strip()})',
        f'  activations {gb(est.activations)}  (Korthikanti et al. 2022, no recomputation)',
        f'state: XLA arguments / analytic params+moments = '
        f'{mem.argument_size_in_bytes / state:.3f}',
        self._flops_line(),
        f'verdict: needs {est.needed / 1e9:.2f} GB (arguments + temporaries) of '
        f'{self.target.memory / 1e9:.2f} GB per device ({self.target.memory_from}): '
        f'{"fits" if self.fits else "does NOT fit"}']
    return '\n'.join(lines)


  def _flops_line(self) -> str:
    """The compiler's FLOPs of one step per device beside lmjax's analytic count (matmuls,
    attention over the causal pairs; a mixture of experts' active ones, lmjax/model/flops.py)."""
    from lmjax.model import flops
    from lmjax.model.spec import ModelConfig
    from lmjax.train.steps import xla_flops
    c = self.config
    per_token = flops.exact_flops_per_token(ModelConfig.from_config(c.model), c.data.seq_len,
                                            attention='causal')
    analytic = per_token * c.data.batch_size * c.data.seq_len / self.mesh.size
    loops = (' (a loop body once: scanned layers, micro-batches)'
             if c.model.scan_layers or c.train.grad_accum > 1 else '')
    return (f'flops: the compiler counts {xla_flops(self.estimate.executable) / 1e12:.2f} '
            f'TFLOPs per device per step{loops}; analytic {analytic / 1e12:.2f} (matmuls, '
            'causal attention, active parameters)')


def plan(raw_config, mesh_text: str, topology: str | None = None,
         device_memory: str | None = None, config_name: str = '') -> MemoryPlan:
  """Compiles the train step of `raw_config` (a config file's ConfigDict, unresolved) on the
  mesh `mesh_text` ('data,fsdp,tensor') of `topology`'s devices or of simulated CPU devices,
  against `device_memory` ('80GB'; default: the chip's HBM, else 80GB)."""
  sizes = parse_mesh(mesh_text, allow_rest=topology is not None)
  if device_memory:
    parse_bytes(device_memory)  # a bad size fails before anything is compiled
  n_simulated = None if topology else math.prod(sizes.values())
  if n_simulated:  # before JAX starts: its devices are fixed then
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={n_simulated}')
  os.environ['JAX_PLATFORMS'] = 'cpu'
  raw_config.mesh.update(sizes)
  raw_config.data.dataset = 'random'  # shapes only: no data is read
  config = resolve(raw_config)
  target = (_tpu_target(topology, config, mesh_text, device_memory) if topology
            else _cpu_target(n_simulated, device_memory))
  from lmjax.train import memory, sharding
  try:
    mesh = sharding.make_mesh(config, target.devices)
  except sharding.MeshError as e:
    raise PlanInputError(str(e)) from None
  try:
    return MemoryPlan(config, config_name, mesh, target,
                      memory.train_step_memory(config, mesh), '')
  except memory.DoesNotFit as e:
    return MemoryPlan(config, config_name, mesh, target, None, str(e))


def _tpu_target(name, config, mesh_text, device_memory) -> Target:
  from importlib.metadata import version

  from lmjax.train import topology  # jax-free until libtpu is found
  try:
    devices = topology.tpu_devices(name)
  except topology.TopologyError as e:
    raise PlanInputError(f'--topology={e}') from None  # its message starts with the name
  from lmjax.train import sharding
  try:
    sharding.mesh_shape(config.mesh, len(devices))
  except sharding.MeshError:
    raise PlanInputError(f'--mesh={mesh_text}: data×fsdp×tensor must come to the '
                         f'{len(devices)} devices of --topology={name} (one size may be -1)') \
        from None
  kind = f'{len(devices)} × {devices[0].device_kind} devices'
  compiler = f'the TPU compiler\'s (libtpu {version("libtpu")}), for {kind}'
  if device_memory:
    return Target(devices, parse_bytes(device_memory), f'--device_memory={device_memory}',
                  compiler)
  hbm = topology.hbm_per_device(name, len(devices))
  if hbm is None:
    raise PlanInputError(f'--topology={name}: its HBM is not in lmjax/train/topology.py '
                         'HBM_PER_CHIP; give --device_memory')
  return Target(devices, hbm, f'{name}\'s HBM: {hbm / 2**30:g} GiB per device', compiler)


def _cpu_target(n_devices, device_memory) -> Target:
  import jax
  compiler = (f'XLA:CPU\'s, for {n_devices} simulated CPU devices: a stand-in for the '
              'accelerator\'s compiler (GPU targets use this path); buffer sizes carry over, '
              'fusion choices and so temporaries may differ')
  memory = device_memory or DEFAULT_MEMORY
  return Target(jax.devices()[:n_devices], parse_bytes(memory), f'--device_memory={memory}',
                compiler)

