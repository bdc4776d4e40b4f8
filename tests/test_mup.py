"""μP and CompleteP (lmjax/model/spec.py, Mup): exactly sp at the base shape; the init, the
per-group learning rates, weight decay and ε, and the multipliers away from it."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from lmjax.config import ConfigError, default_config, resolve
from lmjax.data import loader
from lmjax.model import hf as convert
from lmjax.model.spec import ModelConfig
from lmjax.train import optim
from lmjax.train.steps import (build_model_and_optimizer, init_params, init_state,
                               make_train_step, schedule_arg)


def _config(**model):
  c = default_config()
  c.data.dataset, c.data.seq_len, c.data.batch_size = 'random', 32, 4
  c.model.update(model)
  return resolve(c)


def _mup(**model):
  return _config(**{'parametrization': 'mup', **model})


@pytest.mark.slow
@pytest.mark.parametrize('preset', ['llama', 'gpt2'])
def test_mup_at_its_base_shape_trains_bit_for_bit_as_sp(preset):
  """20 steps on the default corpus: the same losses and parameters, bit for bit."""
  runs = []
  for model in ({}, dict(parametrization='mup', mup_base_d_model=64, mup_base_head_dim=16,
                         mup_base_n_layers=2)):
    c = default_config()
    c.train.steps = 20
    c.model.update(preset=preset, **model)
    c = resolve(c)
    net, tx = build_model_and_optimizer(c)
    state, step = init_state(net, tx, c), make_train_step(net, tx, c)
    losses = []
    for _, batch in zip(range(20), loader.train_iterator(loader.load(c), c)):
      state, m = step(state, batch, schedule_arg(c))
      losses.append(float(m['loss']))
    runs.append((losses, jax.tree_util.tree_leaves(state.params)))
  (sp, sp_params), (mup, mup_params) = runs
  assert sp == mup and len(sp) == 20
  assert all(np.array_equal(a, b) for a, b in zip(sp_params, mup_params))


def test_groups_get_their_learning_rate_decay_and_eps():
  """A first AdamW step on unit gradients moves each parameter by lr·factor (ε tiny): the hidden
  matrices by lr/m_N·m_L^(α-1), the blocks' vectors by lr·m_L^(α-1), the rest by lr; weight
  decay on hidden matrices is lr_hidden·(λ·m_N)·w, i.e. lr·λ·w as at the base width."""
  c = _mup(d_model=128, n_heads=4, n_layers=4, mup_base_d_model=32, mup_base_n_layers=2,
           mup_depth_alpha=0.5)
  m = ModelConfig.from_config(c.model).mup
  assert (m.width, m.depth, m.alpha) == (4, 2, 0.5)
  net, _ = build_model_and_optimizer(c)
  params = init_params(net, c, jax.random.PRNGKey(0))
  lr = c.optim.lr
  factor = {'io': (1.0, 1.0), 'hidden': (0.25 * 2 ** -0.5, 4.0), 'block_vector': (2 ** -0.5, 1.0)}
  for decay in (0.0, 0.1):
    o = ConfigDict(c.optim.to_dict() | {'weight_decay': decay, 'grad_clip': 0.0})
    tx = optim.optimizer(o, 10, lambda count: lr, c.model)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    decays = optim.decay_mask(params, o)

    def check(path, u, p, d):
      f, wd_f = factor[optim.param_group(path)]
      expected = -lr * f / (1 + c.optim.eps * m.eps) - (lr * f * decay * wd_f * p if d else 0)
      np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-9, err_msg=str(path))
    jax.tree_util.tree_map_with_path(check, updates, params, decays)
  groups = {'/'.join(k.key for k in path): optim.param_group(path)
            for path, _ in jax.tree_util.tree_leaves_with_path(params)}
  assert groups['embed'] == groups['unembed'] == groups['final_norm/scale'] == 'io'
  assert groups['block_0/attn/query'] == groups['block_3/mlp/wo'] == 'hidden'
  assert groups['block_1/attn_norm/scale'] == 'block_vector'


def test_init_shrinks_hidden_matrices_only():
  """Hidden matrices' init std × m_N^-1/2 (the residual projections from the base depth's
  GPT-2 σ/sqrt(2·L_base)); embeddings and unembedding keep init_std."""
  c = _mup(d_model=256, n_heads=4, n_layers=4, mup_base_d_model=64, mup_base_n_layers=2)
  net, _ = build_model_and_optimizer(c)
  p = init_params(net, c, jax.random.PRNGKey(0))
  std = lambda x: float(np.std(np.asarray(x)))
  assert std(p['block_0']['attn']['query']) == pytest.approx(0.02 / 2, rel=0.03)
  assert std(p['block_0']['mlp']['wi']) == pytest.approx(0.02 / 2, rel=0.03)
  assert std(p['block_2']['mlp']['wo']) == pytest.approx(0.02 / math.sqrt(4) / 2, rel=0.03)
  assert std(p['embed']) == pytest.approx(0.02, rel=0.03)
  assert std(p['unembed']) == pytest.approx(0.02, rel=0.03)


@pytest.mark.parametrize('tie', [False, True])
def test_multipliers_equal_sp_with_the_factors_in_the_weights(tie):
  """The mup model's logits equal the sp model's on weights scaled by hand: query × (E/E_base)^-½,
  attention out and MLP out × m_L^-α, unembedding × 1/m_N (tied: the logits divided)."""
  fields = dict(d_model=64, n_heads=2, n_layers=4, vocab_size=64, tie_embeddings=tie)
  mup = _mup(**fields, mup_base_d_model=16, mup_base_head_dim=8, mup_base_n_layers=1)
  sp = _config(**fields)
  net, _ = build_model_and_optimizer(mup)
  sp_net, _ = build_model_and_optimizer(sp)
  params = jax.tree_util.tree_map(np.asarray, init_params(net, mup, jax.random.PRNGKey(1)))
  scaled = jax.tree_util.tree_map(np.copy, params)
  for i in range(4):
    scaled[f'block_{i}']['attn']['query'] *= (32 / 8) ** -0.5
    scaled[f'block_{i}']['attn']['out'] *= 4.0 ** -1
    scaled[f'block_{i}']['mlp']['wo'] *= 4.0 ** -1
  if not tie:
    scaled['unembed'] /= 4
  tokens = np.random.default_rng(0).integers(0, 64, (2, 32))
  ours = np.asarray(net.apply({'params': params}, tokens))
  theirs = np.asarray(sp_net.apply({'params': scaled}, tokens)) / (4 if tie else 1)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
  if not tie:  # the Hugging Face export folds the same factors
    folded = convert.fold_mup(mup.model.to_dict(), params)
    for a, b in zip(jax.tree_util.tree_leaves(folded), jax.tree_util.tree_leaves(scaled)):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sinusoidal_embeddings_keep_the_base_widths_scale():
  """vaswani's embeddings × sqrt(d_model) become × sqrt(base d_model) = sqrt(16): the mup
  model's logits equal the sp model's with the embedding table halved in the input and the
  factors of the test above in the weights."""
  fields = dict(preset='vaswani', d_model=64, n_heads=2, n_layers=1, vocab_size=64)
  mup, sp = _mup(**fields, mup_base_d_model=16, mup_base_head_dim=32), _config(**fields)
  net, sp_net = build_model_and_optimizer(mup)[0], build_model_and_optimizer(sp)[0]
  params = jax.tree_util.tree_map(np.asarray, init_params(net, mup, jax.random.PRNGKey(1)))
  tokens = np.random.default_rng(0).integers(0, 64, (2, 32))
  ours = np.asarray(net.apply({'params': params}, tokens))
  # tied: the input is (E·x)·sqrt(16) and the logits (h·Eᵀ)/4, so sp sees the table halved
  # in the input and the logits are checked for the input's effect only through the ratio 4
  halved = jax.tree_util.tree_map(np.copy, params)
  halved['embed'] = params['embed'] * 0.5
  theirs_in = np.asarray(sp_net.apply({'params': halved}, tokens))  # output uses halved table
  np.testing.assert_allclose(ours, theirs_in * 2 / 4, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('field, value, message', [
    ('parametrization', 'ntk', "config.model.parametrization='ntk' is not allowed: one of sp, "
                               'mup'),
    ('mup_base_d_model', -1, "config.model.mup_base_d_model=-1 is not allowed: 0 .the model's "
                             'own. or a positive integer'),
    ('mup_depth_alpha', 0.2, 'config.model.mup_depth_alpha=0.2 is not allowed: a number in '
                             r'\[0.5, 1\]'),
])
def test_bad_mup_fields_name_the_field(field, value, message):
  with pytest.raises(ConfigError, match=message):
    _mup(**{field: value})


def test_base_shape_fields_need_mup():
  with pytest.raises(ConfigError, match='config.model.mup_base_d_model=32 is not allowed: 0 '
                                        'unless model.parametrization=mup'):
    _config(mup_base_d_model=32)


def test_the_banner_names_each_groups_learning_rate():
  c = _mup(d_model=128, n_heads=4, mup_base_d_model=32, mup_base_head_dim=32)
  line = optim.describe(c.model, c.optim)
  assert 'm_N = 4' in line and 'peak lr 0.003 for embed' in line
  assert '0.00075 for query, key, value, out, wi, wi_gate, wo (weight decay 0.4)' in line
  assert 'output logits × 0.25' in line


def test_a_mup_state_shards_and_restores_like_sp():
  """μP's optimizer state (one AdamW per group, optax.multi_transform) gets shardings, an
  abstract state for restores, and trains a step on a mesh."""
  from lmjax.train import sharding
  from lmjax.train.steps import build_train_step
  c = _mup(d_model=64, n_heads=4, mup_base_d_model=32, mup_base_head_dim=8)
  mesh = sharding.make_mesh(c)
  step = build_train_step(c, mesh)
  abstract = step.abstract_state()
  state = step.init_state()
  assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(state)
  batch = {k: jnp.zeros((4, 32), jnp.int32) for k in ('inputs', 'targets', 'positions',
                                                       'segment_ids')}
  batch['weights'] = jnp.ones((4, 32), jnp.float32)
  state, metrics = step.fn(state, batch, step.schedule())
  assert np.isfinite(float(metrics['loss']))
