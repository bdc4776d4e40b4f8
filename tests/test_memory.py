"""lmjax.train.memory: per-device bytes, the AdamW and Korthikanti estimates, the compiled step."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec as P

from lmjax.train import memory, topology
from tests import xla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(mesh):
  spec = lambda *axes: NamedSharding(mesh, P(*axes))
  return dict(w=jax.ShapeDtypeStruct((64, 32), jnp.float32, sharding=spec('fsdp', 'tensor')),
              b=jax.ShapeDtypeStruct((32,), jnp.bfloat16, sharding=spec()),
              x=jax.ShapeDtypeStruct((8, 16), jnp.int32, sharding=spec(('data', 'fsdp'))))


def test_per_device_bytes_of_a_sharded_tree():
  mesh = AbstractMesh((2, 4, 2), ('data', 'fsdp', 'tensor'))
  # w: (64/4)×(32/2) float32; b: 32 bfloat16 replicated; x: (8/8)×16 int32.
  assert memory.per_device_bytes(_tree(mesh)) == 16 * 16 * 4 + 32 * 2 + 1 * 16 * 4
  one = AbstractMesh((1, 1, 1), ('data', 'fsdp', 'tensor'))
  assert memory.per_device_bytes(_tree(one)) == 64 * 32 * 4 + 32 * 2 + 8 * 16 * 4


def _on_eight_devices():
  """Real arrays on a (2, 2, 2) mesh of 8 simulated devices: (estimate, bytes on device 0)."""
  import numpy as np
  from jax.sharding import Mesh
  mesh = Mesh(np.asarray(jax.devices()).reshape(2, 2, 2), ('data', 'fsdp', 'tensor'))
  tree = {k: jax.device_put(jnp.zeros(s.shape, s.dtype), s.sharding)
          for k, s in _tree(mesh).items()}
  on_device0 = sum(leaf.addressable_shards[0].data.nbytes for leaf in tree.values())
  return memory.per_device_bytes(tree), on_device0


@pytest.mark.slow
def test_per_device_bytes_on_eight_simulated_devices():
  env = dict(os.environ, XLA_FLAGS=xla.flags(8), JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  estimate, on_device0 = json.loads(out.stdout.strip().splitlines()[-1])
  assert estimate == on_device0 == 32 * 16 * 4 + 32 * 2 + 2 * 16 * 4


def test_korthikanti_activations_at_hand_computed_values():
  # L=2, h=4, a=2, s=8, b=3 at 16 bits: per layer 34·8·3·4 + 5·2·8²·3 = 3264 + 1920 = 5184.
  kw = dict(n_layers=2, d_model=4, n_heads=2, seq_len=8, micro_batch=3)
  assert memory.activation_bytes(**kw) == 2 * 5184
  assert memory.activation_bytes(**kw, tensor=2) == 5184          # every term over t
  assert memory.activation_bytes(**kw, dtype_bytes=4) == 4 * 5184  # float32: twice 16 bits
  # A 1B-ish shape: 24 layers, h=2048, a=16, s=2048, b=1: 24·(34·2048·2048 + 5·16·2048²) bytes.
  assert memory.activation_bytes(24, 2048, 16, 2048, 1) == 24 * 114 * 2048 ** 2


def test_adamw_state_bytes():
  assert memory.adamw_state_bytes(1_000_000, 8) == 12 * 1_000_000 / 8
  assert math.isnan(memory.adamw_state_bytes(1_000_000, 8, 'bfloat16'))


@pytest.mark.slow
def test_the_compiled_step_holds_the_state_it_should(tiny):
  from lmjax.train import sharding
  from lmjax.config import resolve
  tiny.data.dataset = 'random'
  config = resolve(tiny)
  est = memory.train_step_memory(config, sharding.make_mesh(config, jax.devices()[:1]))
  assert est.n_devices == 1 and est.params == 4 * est.n_params == est.adamw_estimate / 3
  assert 2 * est.params <= est.moments <= 2 * est.params + 1024  # two moments and counters
  state = est.params + est.moments
  assert state <= est.compiled.argument_size_in_bytes <= 1.1 * state  # plus the batch
  assert est.needed == est.compiled.argument_size_in_bytes + est.compiled.temp_size_in_bytes


def test_without_libtpu_a_topology_names_the_extra_to_install():
  def no_libtpu(name):
    raise ModuleNotFoundError(f"No module named '{name}'")
  with pytest.raises(topology.TopologyError) as e:
    topology.tpu_devices('v5p:2x2x1', import_module=no_libtpu)
  assert str(e.value) == "v5p:2x2x1 needs the libtpu package: pip install -e '.[tpu]'"


def test_hbm_per_device_is_the_chips_hbm_over_the_devices():
  gib = 2**30
  assert topology.hbm_per_device('v5p:2x2x1', 4) == 95 * gib
  assert topology.hbm_per_device('v5e:2x2', 4) == 16 * gib
  assert topology.hbm_per_device('v6e:2x2', 4) == 32 * gib
  assert topology.hbm_per_device('v4:2x2x1', 8) == 16 * gib  # a device per TensorCore
  assert topology.hbm_per_device('v9z:2x2', 4) is None


def test_a_topology_gives_tpu_devices():
  pytest.importorskip('libtpu')
  devices = topology.tpu_devices('v5p:2x2x1')
  assert len(devices) == 4 and {d.platform for d in devices} == {'tpu'}
  with pytest.raises(topology.TopologyError, match=r'^nope:2x2 is not a TPU topology'):
    topology.tpu_devices('nope:2x2')


@pytest.mark.slow
def test_the_step_compiled_for_a_tpu_slice_holds_the_state_it_should(tiny):
  """The TPU compiler's own figures, on this CPU machine. head_dim and the fsdp shards are 128
  wide: TPU layouts pad a minor dimension to 128 lanes, so narrower ones (the tiny model's
  head_dim 16) would add padding the analytic bytes do not count."""
  pytest.importorskip('libtpu')
  from lmjax.train import sharding
  from lmjax.config import resolve
  tiny.data.dataset = 'random'
  tiny.model.vocab_size, tiny.model.d_model, tiny.model.n_heads = 264, 512, 4
  tiny.data.seq_len = tiny.model.max_seq_len = 128  # splash attention's multiple
  tiny.mesh.data, tiny.mesh.fsdp, tiny.mesh.tensor = 1, 4, 1
  config = resolve(tiny)
  mesh = sharding.make_mesh(config, topology.tpu_devices('v5p:2x2x1'))
  est = memory.train_step_memory(config, mesh)
  assert est.platform == 'tpu' and est.n_devices == 4
  text = est.executable.as_text()
  assert ':T(8,128)' in text  # the TPU's tiled (8 sublanes × 128) layouts
  # attention_impl=auto is splash on TPU, its forward and both backward kernels with segment
  # ids, run under shard_map over fsdp (the state is initialised without the mesh).
  assert 'tpu_custom_call' in text
  assert all(k in text for k in ('splash_mha_dq_segmented', 'splash_mha_dkv_segmented'))
  assert est.compiled.temp_size_in_bytes > 0
  state = est.params + est.moments
  assert est.params == pytest.approx(est.adamw_estimate / 3, rel=0.01)  # norms replicated
  assert state <= est.compiled.argument_size_in_bytes <= 1.1 * state  # plus the batch


if __name__ == '__main__':
  print(json.dumps(_on_eight_devices()))
