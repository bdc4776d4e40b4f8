"""Meshes of 8 simulated CPU devices: the same losses as one device, the shardings the rules say.

The checks run in a subprocess started with XLA_FLAGS=--xla_force_host_platform_device_count=8
(JAX fixes its devices at start-up); it prints JSON that the tests read.
"""
import json
import os
import subprocess
import sys

import pytest

from lmjax.config import default_config, resolve
from lmjax.train.sharding import MeshError, check_mesh, mesh_shape
from tests import xla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESHES = [(8, 1, 1), (1, 8, 1), (1, 1, 8), (2, 2, 2)]


def _config(preset, mesh=(1, 1, 1)):
  c = default_config()
  c.model.preset = preset
  c.model.d_model, c.model.n_heads, c.model.n_layers = 64, 8, 2
  c.model.vocab_size = 264  # divisible by 8 for tensor parallelism over the vocabulary
  c.data.dataset = 'random'
  c.data.batch_size = 16
  c.data.seq_len = 32
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
  return resolve(c)


def _losses_on_meshes():
  import jax
  import numpy as np
  from lmjax.data import loader
  from lmjax.train import sharding
  from lmjax.train.steps import build_train_step
  out = {}
  for preset in ('vaswani', 'llama'):
    for mesh_dims in [(1, 1, 1)] + MESHES:
      config = _config(preset, mesh_dims)
      devices = jax.devices()[:int(np.prod(mesh_dims))]
      mesh = sharding.make_mesh(config, devices)
      train_step = build_train_step(config, mesh)
      state, schedule = train_step.init_state(), train_step.schedule()
      it = loader.train_iterator(loader.load(config), config)
      losses = []
      for _ in range(5):
        state, m = train_step.fn(state, sharding.put_batch(next(it), sharding.batch_sharding(mesh)),
                                 schedule)
        losses.append(float(m['loss']))
      specs = {}
      for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = jax.tree_util.keystr(path)
        spec = [list(a) if isinstance(a, tuple) else a for a in leaf.sharding.spec]
        specs[name] = [spec + [None] * (len(leaf.shape) - len(spec)), list(leaf.shape),
                       leaf.addressable_shards[0].data.size]
      out[f'{preset}/{mesh_dims}'] = {'losses': losses, 'specs': specs}
  return out


def on_eight_devices(script):
  """The JSON that `script` (a test file whose __main__ prints it last) prints when run with 8
  simulated CPU devices."""
  env = dict(os.environ, XLA_FLAGS=xla.flags(8), JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def results():  # the tests using it are marked slow: 8 simulated devices in a subprocess
  return on_eight_devices(__file__)


@pytest.mark.slow
@pytest.mark.parametrize('preset', ['vaswani', 'llama'])
@pytest.mark.parametrize('mesh', MESHES)
def test_five_steps_match_one_device(results, preset, mesh):
  single = results[f'{preset}/(1, 1, 1)']['losses']
  sharded = results[f'{preset}/{mesh}']['losses']
  # float32 sums in a different order across devices: agreement to ~1e-6 relative per step,
  # drifting a little over 5 AdamW steps.
  for a, b in zip(single, sharded):
    assert abs(a - b) <= 2e-5 * abs(a), (single, sharded)


@pytest.mark.slow
def test_shardings_follow_the_rules(results):
  specs = results['llama/(2, 2, 2)']['specs']
  # (embed, heads, head_dim), (embed, mlp), (vocab, embed), (mlp, embed), (norm,)
  assert specs[".params['block_0']['attn']['query']"][0] == ['fsdp', 'tensor', None]
  assert specs[".params['block_0']['attn']['key']"][0] == ['fsdp', 'tensor', None]
  assert specs[".params['block_0']['attn']['out']"][0] == ['tensor', None, 'fsdp']
  wi = specs[".params['block_0']['mlp']['wi']"]
  assert wi[0] == ['fsdp', 'tensor']
  assert specs[".params['block_0']['mlp']['wo']"][0] == ['tensor', 'fsdp']
  assert specs[".params['embed']"][0] == ['tensor', 'fsdp']
  assert specs[".params['unembed']"][0] == ['fsdp', 'tensor']
  assert specs[".params['final_norm']['scale']"][0] == [None]
  assert specs['.step'][0] == []
  # The optimizer's moments are sharded like their parameters.
  mu = [k for k in specs if 'mu' in k and "['block_0']['mlp']['wi']" in k]
  assert mu and specs[mu[0]][0] == wi[0]


@pytest.mark.slow
def test_no_large_parameter_is_replicated_under_fsdp(results):
  for name, (spec, shape, local) in results['llama/(1, 8, 1)']['specs'].items():
    total = 1
    for s in shape:
      total *= s
    if total >= 64 * 64:
      assert local * 8 == total, (name, spec, shape)


@pytest.mark.parametrize('mesh, field', [
    ((3, 1, 1), 'config.mesh'),
    ((1, 1, 3), 'config.mesh'),
])
def test_mesh_product_must_equal_device_count(mesh, field):
  c = _config('llama', mesh)
  with pytest.raises(MeshError, match=field):
    mesh_shape(c.mesh, 8)


@pytest.mark.parametrize('overrides, message', [
    (dict(tensor=3), 'config.mesh.tensor=3 does not divide config.model.n_heads=8'),
    (dict(tensor=16), 'does not divide config.model.n_heads=8'),
    (dict(data=32), 'config.data.batch_size=16 .* not divisible by mesh data×fsdp=32'),
])
def test_mesh_must_fit_the_model_and_batch(overrides, message):
  c = _config('llama')
  shape = [1, 1, 1]
  for axis, size in overrides.items():
    shape[('data', 'fsdp', 'tensor').index(axis)] = size
  with pytest.raises(MeshError, match=message):
    check_mesh(c, tuple(shape))


def test_d_ff_not_divisible_by_tensor():
  c = _config('llama')
  c = c.unlock()
  c.model.d_ff = 100
  with pytest.raises(MeshError, match='config.model.d_ff=100'):
    check_mesh(c, (1, 1, 8))


def _block_collectives(tensor_parallel_form=True):
  """Collective ops, by kind, in the compiled forward+backward of one llama block on a
  (1, 1, 2) mesh; with `tensor_parallel_form` False, the block as it is built without a mesh
  (one fused q/k/v matmul, no activation constraints), placed on the same mesh."""
  import re
  from collections import Counter
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from lmjax.train import sharding
  from lmjax.model.transformer import Block, model_config
  config = _config('llama', (1, 1, 2))
  mesh = sharding.make_mesh(config, jax.devices()[:2])
  cfg = model_config(config, 'cpu')
  block = Block(cfg, mesh, sharding.rules(config)) if tensor_parallel_form else Block(cfg)
  b, t, d = 16, config.data.seq_len, cfg.d_model
  x = jnp.ones((b * t, d))
  pos = jnp.broadcast_to(jnp.arange(t), (b, t))
  boxed = jax.eval_shape(lambda: block.init(jax.random.PRNGKey(0), x, pos, None, True))
  shardings = sharding.logical_shardings(boxed, mesh, config)
  params = jax.jit(lambda: nn.meta.unbox(block.init(jax.random.PRNGKey(0), x, pos, None, True)),
                   out_shardings=shardings)()
  x = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      ('data', 'fsdp'))))
  grad = jax.jit(jax.grad(lambda p, x: block.apply(p, x, pos, None, True).sum(), (0, 1)))
  text = grad.lower(params, x).compile().as_text()
  kinds = re.findall(r'= \S+ (all-to-all|collective-permute|all-gather|all-reduce|'
                     r'reduce-scatter)(?:-start)?\(', text)
  return dict(Counter(kinds))


@pytest.mark.slow
def test_tensor_parallel_block_has_no_all_to_all(results):
  tp, fused = results['collectives'], results['collectives_fused']
  assert tp.get('all-to-all', 0) == 0 and tp.get('collective-permute', 0) == 0, tp
  assert tp.get('all-reduce', 0) > 0  # Megatron's: after the out and down projections
  # The form without a mesh concatenates q/k/v weights sharded over `tensor`: it does pay.
  assert fused.get('all-to-all', 0) + fused.get('collective-permute', 0) > 0, fused


if __name__ == '__main__':
  out = _losses_on_meshes()
  out['collectives'] = _block_collectives()
  out['collectives_fused'] = _block_collectives(tensor_parallel_form=False)
  print(json.dumps(out))
