"""Mixture of experts (lmjax/model/moe.py): routing, the grouped matmuls against a per-expert loop,
the auxiliary losses' known values, the one-expert model against the dense one, counts, errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ConfigError, default_config, resolve
from lmjax.model import flops, moe
from lmjax.model.spec import ModelConfig
from lmjax.model.transformer import Transformer, model_config
from lmjax.train.steps import build_model, init_params

N, D, F, E, K = 96, 16, 24, 4, 2


def _config(**model):
  c = default_config()
  c.data.dataset = 'random'
  for k, v in model.items():
    c.model[k] = v
  return resolve(c)


def _experts(rng, gated=True, biases=False):
  ks = jax.random.split(rng, 6)
  w = lambda k, shape: jax.random.normal(k, shape) * 0.3
  return moe.Experts(w(ks[0], (E, D, F)), w(ks[1], (E, D, F)) if gated else None,
                     w(ks[2], (E, F, D)), w(ks[3], (E, F)) if biases else None,
                     w(ks[4], (E, F)) if biases and gated else None,
                     w(ks[5], (E, D)) if biases else None)


def _routing(rng, router='mixtral'):
  logits = jax.random.normal(rng, (N, E)) * 2
  return moe.route(logits, K, router)


@pytest.mark.parametrize('gated,biases', [(True, False), (False, True)])
@pytest.mark.parametrize('form', ['ragged', 'blocked', 'capacity'])
def test_grouped_forms_equal_a_per_expert_loop_forward_and_gradients(form, gated, biases):
  x = jax.random.normal(jax.random.PRNGKey(0), (N, D))
  ex = _experts(jax.random.PRNGKey(1), gated, biases)
  routing = _routing(jax.random.PRNGKey(2))
  assert int(jnp.bincount(routing.experts_NxK.reshape(-1), length=E).min()) > 0
  act = jax.nn.silu if gated else jax.nn.gelu

  def run(fn, x, ex, gates):
    r = routing._replace(gates_NxK=gates)
    if fn == 'ragged':
      return moe.ragged(x, r, ex, act)
    if fn == 'blocked':
      return moe.in_blocks(x, r, ex, act, moe.blocked_slots(r.experts_NxK, E))
    if fn == 'capacity':  # factor E: room for every assignment, nothing dropped
      return moe.in_blocks(x, r, ex, act, moe.capacity_slots(r.experts_NxK, E, float(E)))
    return moe.reference(x, r, ex, act)

  probe = jax.random.normal(jax.random.PRNGKey(3), (N, D))
  loss = lambda fn: lambda *a: jnp.sum(run(fn, *a) * probe)
  args = (x, ex, routing.gates_NxK)
  got, want = jax.jit(lambda *a: run(form, *a))(*args), run('reference', *args)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  g_got = jax.jit(jax.grad(loss(form), argnums=(0, 1, 2)))(*args)
  g_want = jax.grad(loss('reference'), argnums=(0, 1, 2))(*args)
  for a, b in zip(jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_capacity_drops_second_choices_first_and_counts_them():
  # Every token chooses expert 0 first, then expert 1 (tokens 0..7) or 2 (tokens 8..15).
  n = 16
  experts = jnp.stack([jnp.zeros(n, jnp.int32), jnp.where(jnp.arange(n) < 8, 1, 2)], axis=1)
  slots = moe.capacity_slots(experts, 4, 1.0)  # ceil(1.0 · 32 / 4) = 8 slots per expert
  assert slots.rows == 8 and slots.blocks == 4
  slot = np.asarray(slots.slot_A).reshape(n, 2)
  # Expert 0's 8 slots go to the first 8 tokens' first choices; tokens 8..15 lose theirs.
  np.testing.assert_array_equal(slot[:8, 0], np.arange(8))
  assert (slot[8:, 0] >= 32).all()
  np.testing.assert_array_equal(slot[:8, 1], 8 + np.arange(8))
  np.testing.assert_array_equal(slot[8:, 1], 16 + np.arange(8))
  assert float(slots.dropped) == pytest.approx(8 / 32)
  # A dropped assignment contributes nothing: the output is the loop's with its gate zeroed.
  x = jax.random.normal(jax.random.PRNGKey(0), (n, D))
  ex = _experts(jax.random.PRNGKey(1))._replace(
      wi_ExDxF=jax.random.normal(jax.random.PRNGKey(5), (4, D, F)),
      wi_gate_ExDxF=jax.random.normal(jax.random.PRNGKey(6), (4, D, F)),
      wo_ExFxD=jax.random.normal(jax.random.PRNGKey(7), (4, F, D)))
  gates = jnp.full((n, 2), 0.5)
  routing = moe.Routing(experts, gates, jnp.full((n, 4), 0.25))
  got = moe.in_blocks(x, routing, ex, jax.nn.silu, slots)
  kept = gates.at[8:, 0].set(0.0)
  want = moe.reference(x, routing._replace(gates_NxK=kept), ex, jax.nn.silu)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_load_balancing_loss_known_values():
  n, e = 64, 8
  uniform = moe.Routing(jnp.arange(n)[:, None] % e, jnp.ones((n, 1)), jnp.full((n, e), 1 / e))
  assert float(moe.load_balancing_loss(uniform)) == pytest.approx(1.0, abs=1e-6)
  one_hot = jax.nn.one_hot(jnp.zeros(n, jnp.int32), e)
  collapsed = moe.Routing(jnp.zeros((n, 1), jnp.int32), jnp.ones((n, 1)), one_hot)
  assert float(moe.load_balancing_loss(collapsed)) == pytest.approx(e, abs=1e-6)
  # Top-2 spread evenly: f = 1/E, P uniform -> 1; the Mixtral HF form (Σ over choices) is 2.
  even2 = moe.Routing(jnp.stack([jnp.arange(n) % e, (jnp.arange(n) + 1) % e], 1),
                      jnp.full((n, 2), 0.5), jnp.full((n, e), 1 / e))
  assert float(moe.load_balancing_loss(even2)) == pytest.approx(1.0, abs=1e-6)
  # Router z-loss: logits all c -> (c + log E)².
  assert float(moe.router_z_loss(jnp.full((n, e), 0.5))) == pytest.approx(
      (0.5 + np.log(e)) ** 2, rel=1e-6)


def test_routers_by_name():
  logits = jax.random.normal(jax.random.PRNGKey(0), (N, E))
  mixtral = moe.route(logits, K, 'mixtral')
  top, ids = jax.lax.top_k(logits, K)
  np.testing.assert_array_equal(mixtral.experts_NxK, ids)
  np.testing.assert_allclose(mixtral.gates_NxK, jax.nn.softmax(top, -1), rtol=1e-6)
  switch = moe.route(logits, K, 'switch')
  np.testing.assert_allclose(switch.gates_NxK,
                             jnp.take_along_axis(jax.nn.softmax(logits), ids, -1), rtol=1e-6)
  # deepseek: sigmoid affinities; a bias changes the choice, never the gates' normalisation.
  bias = jnp.array([10.0, 10.0, 0.0, 0.0])
  deep = moe.route(logits, K, 'deepseek', bias)
  assert set(np.unique(deep.experts_NxK).tolist()) == {0, 1}
  s = jnp.take_along_axis(jax.nn.sigmoid(logits), deep.experts_NxK, -1)
  np.testing.assert_allclose(deep.gates_NxK, s / s.sum(-1, keepdims=True), rtol=1e-6)
  grad = jax.grad(lambda b: moe.route(logits, K, 'deepseek', b).gates_NxK.sum())(bias)
  assert not np.any(np.asarray(grad))


def test_update_bias_moves_toward_balance():
  params = {'block_0': {'mlp': {'router_bias': jnp.zeros(4), 'wi': jnp.ones(3)}}}
  sown = {'block_0': {'mlp': {'load': (jnp.array([0.5, 0.25, 0.25, 0.0]),)}}}
  new = moe.update_bias(params, sown, 0.01)
  np.testing.assert_allclose(new['block_0']['mlp']['router_bias'], [-0.01, 0.0, 0.0, 0.01])
  assert new['block_0']['mlp']['wi'] is params['block_0']['mlp']['wi']


def _as_moe(dense_params, n_layers):
  """The dense model's params with each MLP as the one expert of a MoE layer (router zero)."""
  out = jax.tree_util.tree_map(lambda x: x, dense_params)
  for i in range(n_layers):
    mlp = out[f'block_{i}']['mlp']
    out[f'block_{i}']['mlp'] = {k: v[None] for k, v in mlp.items()}
    out[f'block_{i}']['mlp']['router'] = jnp.zeros((mlp['wi'].shape[0], 1))
  return out


@pytest.mark.parametrize('preset', ['llama', 'gpt2'])
@pytest.mark.parametrize('form', [dict(moe_impl='blocked'), dict(moe_impl='ragged'),
                                  dict(moe_capacity_factor=1.0)])
def test_one_expert_top_one_is_the_dense_model(preset, form):
  dense = _config(preset=preset)
  one = _config(preset=preset, moe_experts=1, moe_top_k=1, **form)
  params = init_params(build_model(dense), dense, jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 64), 0, 257)
  want = build_model(dense).apply({'params': params}, tokens)
  moe_params = _as_moe(params, dense.model.n_layers)
  got = build_model(one).apply({'params': moe_params}, tokens)
  np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('model', [
    dict(moe_experts=4),
    dict(moe_experts=8, moe_top_k=1, moe_d_ff=32, moe_shared_experts=2, moe_every=2,
         n_layers=4, moe_router='deepseek'),
    dict(preset='gpt2', moe_experts=3, moe_top_k=2, moe_every=2),
    dict(moe_experts=4, scan_layers=True),
])
def test_counts_are_the_parameter_tree_and_active_its_top_k_share(model):
  config = _config(**model)
  cfg = ModelConfig.from_config(config.model)
  params = init_params(build_model(config), config, jax.random.PRNGKey(0))
  counts = flops.param_counts(cfg)
  assert counts.N == flops.count_tree(params)
  moe_blocks = ["['blocks']"] + [f"['block_{i}']" for i in range(cfg.n_layers)
                                   if cfg.moe_layer(i)]
  experts = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(params)
                if "['mlp']['w" in jax.tree_util.keystr(path)  # the routed experts' leaves
                and any(b in jax.tree_util.keystr(path) for b in moe_blocks))
  inactive = experts * (cfg.moe_experts - cfg.moe_top_k) // cfg.moe_experts
  assert counts.N - counts.N_active == inactive
  # FLOPs: a dense model of the same attention with a top_k·moe_d_ff MLP, plus the router.
  dense = dataclasses.replace(cfg, moe_experts=0, d_ff=cfg.moe_d_ff)
  per_layer = 2 * cfg.d_model * cfg.moe_experts + 2 * cfg.d_model * cfg.moe_d_ff * (
      3 if cfg.activation in ('swiglu', 'geglu') else 2) * (
      cfg.moe_top_k + cfg.moe_shared_experts - 1)
  assert flops.forward_matmul_flops_per_token(cfg, 64) == pytest.approx(
      flops.forward_matmul_flops_per_token(dense, 64) + cfg.moe_layers * per_layer
      if cfg.moe_every == 1 else flops.forward_matmul_flops_per_token(cfg, 64))


def test_scanned_moe_layers_equal_unrolled_ones():
  unrolled, scanned = _config(moe_experts=4), _config(moe_experts=4, scan_layers=True)
  params = init_params(build_model(unrolled), unrolled, jax.random.PRNGKey(0))
  stacked = {k: v for k, v in params.items() if not k.startswith('block_')}
  stacked['blocks'] = {'block': jax.tree_util.tree_map(
      lambda *xs: jnp.stack(xs), *[params[f'block_{i}'] for i in range(2)])}
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 64), 0, 257)
  a, sown_a = build_model(unrolled).apply({'params': params}, tokens, mutable=['moe'])
  b, sown_b = build_model(scanned).apply({'params': stacked}, tokens, mutable=['moe'])
  np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  ma, mb = moe.metrics(sown_a['moe']), moe.metrics(sown_b['moe'])
  np.testing.assert_allclose(ma['moe_load'], mb['moe_load'], atol=1e-7)
  np.testing.assert_allclose(ma['moe_lb_loss'], mb['moe_lb_loss'], rtol=1e-5)


@pytest.mark.parametrize('field,value,message', [
    ('moe_top_k', 5, 'config.model.moe_top_k=5 is not allowed: an integer in [1, '
     'model.moe_experts=4]'),
    ('moe_router', 'hash', "config.model.moe_router='hash' is not allowed: one of mixtral, "
     'switch, deepseek'),
    ('moe_every', 3, 'config.model.moe_every=3 is not allowed: an integer in [1, '
     'model.n_layers=2]'),
    ('moe_capacity_factor', -1.0, 'config.model.moe_capacity_factor=-1.0 is not allowed: a '
     'number >= 0'),
    ('parametrization', 'mup', "config.model.parametrization='mup' is not allowed: sp with "
     'model.moe_experts > 0'),
    ('moe_impl', 'dense', "config.model.moe_impl='dense' is not allowed: one of auto, ragged, "
     'blocked'),
])
def test_bad_moe_fields_are_one_line_errors(field, value, message):
  with pytest.raises(ConfigError) as e:
    _config(moe_experts=4, **{field: value})
  assert str(e.value).startswith(message) and '\n' not in str(e.value)


def test_kv_cache_decoding_of_a_moe_model_equals_decoding_without_a_cache():
  from lmjax.infer import decode
  config = _config(moe_experts=4, moe_router='deepseek')
  model = Transformer(model_config(config, 'cpu'))
  params = init_params(model, config, jax.random.PRNGKey(0))
  prompts = [[256, 5, 9, 12], [256, 40]]
  greedy = decode.Sampler(temperature=0)
  cached = decode.Decoder(model, 12, greedy)(params, prompts)
  uncached = decode.Decoder(model, 12, greedy, cache=False)(params, prompts)
  np.testing.assert_array_equal(cached.tokens, uncached.tokens)
  np.testing.assert_allclose(cached.logprobs, uncached.logprobs, atol=1e-4)


@pytest.mark.parametrize('how', [dict(remat='full'), dict(remat='minimal'), dict(chunk=128)])
def test_remat_and_the_chunked_loss_leave_a_moe_step_unchanged(how):
  from lmjax.train.steps import loss_sums
  plain = _config(moe_experts=4, moe_router='switch')
  other = _config(moe_experts=4, moe_router='switch', remat=how.get('remat', 'none'))
  params = init_params(build_model(plain), plain, jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 65), 0, 257)
  batch = {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}

  def grads(config, chunk=0):
    fn = lambda p: loss_sums(p, build_model(config), batch, chunk=chunk)
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)

  (want, (_, _, sown_a)), g_want = grads(plain)
  (got, (_, _, sown_b)), g_got = grads(other, how.get('chunk', 0))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
  np.testing.assert_array_equal(moe.metrics(sown_a)['moe_load'], moe.metrics(sown_b)['moe_load'])
