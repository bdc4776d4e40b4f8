"""A mixture of experts on 8 simulated CPU devices: the losses, MoE metrics and parameters of 3
steps equal one device's, with the experts split like dense MLPs (the default rules) and split over
fsdp (expert parallelism), for the blocked and ragged dropless forms.

As tests/test_sharding.py, the steps run in a subprocess started with 8 host devices."""
import json

import numpy as np
import pytest

from lmjax.config import default_config, resolve
from lmjax.train.sharding import MeshError, check_mesh

# The one-device reference is blocked; ragged equals blocked on one device (tests/test_moe.py,
# both against the per-expert loop), so ragged runs on the 2×2×2 mesh only.
CASES = [('blocked', (1, 1, 1), False), ('blocked', (2, 2, 2), False),
         ('blocked', (2, 4, 1), True), ('ragged', (2, 2, 2), False)]


def _config(impl, mesh, expert_parallel=False):
  c = default_config()
  c.model.d_model, c.model.n_heads, c.model.n_layers = 64, 8, 2
  c.model.vocab_size = 264
  c.model.moe_experts, c.model.moe_top_k, c.model.moe_impl = 4, 2, impl
  c.model.moe_router = 'deepseek'
  c.data.dataset, c.data.batch_size, c.data.seq_len = 'random', 16, 32
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
  if expert_parallel:
    c.mesh.rules = [['expert', 'fsdp']] + [r for r in c.mesh.rules if r[0] != 'expert']
  return resolve(c)


def _steps():
  import jax
  from lmjax.data import loader
  from lmjax.train import sharding
  from lmjax.train.steps import build_train_step
  out = {}
  for impl, mesh_dims, ep in CASES:
    config = _config(impl, mesh_dims, ep)
    mesh = sharding.make_mesh(config, jax.devices()[:int(np.prod(mesh_dims))])
    step = build_train_step(config, mesh)
    state, schedule = step.init_state(), step.schedule()
    it = loader.train_iterator(loader.load(config), config)
    rows = []
    for _ in range(3):
      state, m = step.fn(state, sharding.put_batch(next(it), sharding.batch_sharding(mesh)),
                         schedule)
      rows.append({k: np.asarray(v).tolist() for k, v in m.items()})
    wi = state.params['block_1']['mlp']['wi']
    out[f'{impl}/{mesh_dims}/{ep}'] = {
        'rows': rows, 'wi': np.asarray(jax.device_get(wi)).tolist(),
        'wi_spec': [a if not isinstance(a, tuple) else list(a) for a in wi.sharding.spec],
        'bias': np.asarray(jax.device_get(
            state.params['block_1']['mlp']['router_bias'])).tolist()}
  return out


@pytest.fixture(scope='module')
def results():
  from tests.test_sharding import on_eight_devices
  return on_eight_devices(__file__)


@pytest.mark.slow
@pytest.mark.parametrize('impl,mesh,ep', CASES[1:])
def test_moe_steps_on_8_devices_equal_one_device(results, impl, mesh, ep):
  one, many = results['blocked/(1, 1, 1)/False'], results[f'{impl}/{mesh}/{ep}']
  for a, b in zip(one['rows'], many['rows']):
    for key in ('loss', 'grad_norm', 'moe_lb_loss', 'moe_z_loss'):
      assert abs(a[key] - b[key]) <= 2e-5 * abs(a[key]), (key, a[key], b[key])
    np.testing.assert_allclose(a['moe_load'], b['moe_load'], atol=1e-6)
  np.testing.assert_allclose(one['wi'], many['wi'], atol=2e-5)
  np.testing.assert_allclose(one['bias'], many['bias'], atol=1e-6)  # the balancing bias moved
  assert np.abs(np.asarray(one['bias'])).max() > 0
  # Experts split like a dense MLP by default, over fsdp with the expert rule.
  assert many['wi_spec'][:3] == (['fsdp', None, 'tensor'] if ep else
                                 [None, 'fsdp', 'tensor'])


@pytest.mark.parametrize('overrides,message', [
    (dict(mesh=(1, 1, 8)), 'config.mesh.tensor=8 does not divide the experts\' width '
     'config.model.moe_d_ff=36'),
    (dict(mesh=(1, 8, 1), expert_parallel=True), "config.mesh.rules puts experts over fsdp of "
     'size 8, which does not divide config.model.moe_experts=4'),
])
def test_meshes_that_cannot_split_the_experts_are_refused(overrides, message):
  c = _config('blocked', (1, 1, 1), overrides.get('expert_parallel', False)).unlock()
  c.model.moe_d_ff = 36
  with pytest.raises(MeshError, match=message.replace('(', r'\(').replace(')', r'\)')):
    check_mesh(c, overrides['mesh'])


if __name__ == '__main__':
  print(json.dumps(_steps()))
