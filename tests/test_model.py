"""The model: parameter counts per variant, the causal mask, a numpy reference, training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import default_config, resolve
from lmjax.data import loader
from lmjax.model import flops
from lmjax.model.spec import ModelConfig
from lmjax.train.steps import (build_model_and_optimizer, init_params, init_state,
                               make_train_step, schedule_arg)

VARIANTS = {
    'vaswani': dict(preset='vaswani'),
    'llama': dict(preset='llama'),
    'gpt2': dict(preset='gpt2'),
    'llama_layernorm': dict(preset='llama', norm='layernorm'),
    'llama_post': dict(preset='llama', norm_position='post'),
    'relu': dict(activation='relu'),
    'gelu': dict(activation='gelu'),
    'silu': dict(activation='silu'),
    'geglu': dict(activation='geglu'),
    'sinusoidal': dict(position='sinusoidal'),
    'learned': dict(position='learned'),
    'nopos': dict(position='none'),
    'gqa': dict(n_kv_heads=2),
    'mqa': dict(n_kv_heads=1),
    'tied_bias': dict(tie_embeddings=True, use_bias=True),
    'untied_bias_layernorm': dict(preset='gpt2', tie_embeddings=False),
    'dropout': dict(dropout=0.1),
    'bfloat16': dict(dtype='bfloat16'),
    'head_dim': dict(head_dim=24, n_kv_heads=2),   # n_heads·head_dim = 96 ≠ d_model = 64
    'norm_eps': dict(norm_eps=1e-2),
}


def config_for(variant, **extra):
  c = default_config()
  for k, v in {**VARIANTS[variant], **extra}.items():
    c.model[k] = v
  return resolve(c)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_param_count_matches_pytree(variant):
  c = config_for(variant)
  model, _ = build_model_and_optimizer(c)
  shapes = jax.eval_shape(lambda: init_params(model, c, jax.random.PRNGKey(0)))
  counts = flops.param_counts(ModelConfig.from_config(c.model))
  assert counts.N == flops.count_tree(shapes)
  assert counts.N_no_emb == counts.N - counts.embedding - counts.position - counts.unembedding


def test_param_count_of_nanogpt_shape():
  # nanoGPT's GPT(n_layer=4, n_head=4, n_embd=256, block_size=256, vocab=256, bias=False)
  # reports 3,279,104 parameters in total (shared/bench), position embedding included.
  from experiments.configs import nanogpt_s
  c = resolve(nanogpt_s.get_config())
  assert flops.param_counts(ModelConfig.from_config(c.model)).N == 3_279_104


# The fast set (-m 'not slow') checks one variant of each property; CI checks them all.
@pytest.mark.parametrize('variant', ['llama', *(pytest.param(v, marks=pytest.mark.slow)
                                              for v in ('vaswani', 'gpt2', 'gqa', 'learned'))])
def test_future_tokens_never_change_earlier_logits(variant):
  c = config_for(variant)
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(1))
  tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 16), 0, 256)
  apply = jax.jit(lambda t: model.apply({'params': params}, t))
  base = np.asarray(apply(tokens))
  for j in (1, 7, 15):
    changed = np.asarray(apply(tokens.at[:, j].set((tokens[:, j] + 1) % 256)))
    np.testing.assert_allclose(changed[:, :j], base[:, :j], rtol=0, atol=1e-6)
    assert np.abs(changed[:, j:] - base[:, j:]).max() > 1e-4


@pytest.mark.parametrize('variant', ['llama', *(pytest.param(v, marks=pytest.mark.slow)
                                              for v in ('vaswani', 'learned'))])
def test_segments_match_separate_documents(variant):
  c = config_for(variant)
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(1))
  a = jax.random.randint(jax.random.PRNGKey(3), (1, 5), 0, 256)
  b = jax.random.randint(jax.random.PRNGKey(4), (1, 7), 0, 256)
  packed = model.apply({'params': params}, jnp.concatenate([a, b], 1),
                       jnp.array([list(range(5)) + list(range(7))]),
                       jnp.array([[1] * 5 + [2] * 7]))
  alone = model.apply({'params': params}, b)
  np.testing.assert_allclose(packed[:, 5:], alone, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- an independent numpy forward
def _np_norm(x, p, kind, eps=1e-5):
  if kind == 'layernorm':
    x = x - x.mean(-1, keepdims=True)
  y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * p['scale']
  return y + p['bias'] if 'bias' in p else y


def _np_dense(x, p, name):
  w = p[name].reshape(x.shape[-1], -1)
  return x @ w + (p[name + '_bias'].reshape(-1) if name + '_bias' in p else 0)


def _np_rope(x, pos, theta):  # x: T x E, rotating halves
  e = x.shape[-1]
  out = np.empty_like(x)
  for t in range(x.shape[0]):
    for i in range(e // 2):
      ang = pos[t] * theta ** (-2 * i / e)
      a, b = x[t, i], x[t, i + e // 2]
      out[t, i], out[t, i + e // 2] = a * np.cos(ang) - b * np.sin(ang), b * np.cos(ang) + a * np.sin(ang)
  return out


def _np_forward(cfg, params, tokens):
  """One sequence, head by head, with plain loops: written independently of lmjax.model.transformer."""
  p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
  t, d, h, k, e = len(tokens), cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  x = p['embed'][tokens]
  pos = np.arange(t)
  if cfg.position == 'sinusoidal':
    pe = np.zeros((t, d))
    for i in range(0, d, 2):
      pe[:, i] = np.sin(pos / 10000 ** (i / d))
      pe[:, i + 1] = np.cos(pos / 10000 ** (i / d))
    x = x * np.sqrt(d) + pe
  elif cfg.position == 'learned':
    x = x + p['pos_embed'][:t]
  act = {'relu': lambda z: np.maximum(z, 0), 'silu': lambda z: z / (1 + np.exp(-z)),
         'swiglu': lambda z: z / (1 + np.exp(-z)),
         'gelu': lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))}
  for i in range(cfg.n_layers):
    bp = p[f'block_{i}']
    def attn(z):
      q = _np_dense(z, bp['attn'], 'query').reshape(t, h, e)
      kk = _np_dense(z, bp['attn'], 'key').reshape(t, k, e)
      v = _np_dense(z, bp['attn'], 'value').reshape(t, k, e)
      heads = []
      for hh in range(h):
        qh, kh, vh = q[:, hh], kk[:, hh // (h // k)], v[:, hh // (h // k)]
        if cfg.position == 'rope':
          qh, kh = _np_rope(qh, pos, cfg.rope_theta), _np_rope(kh, pos, cfg.rope_theta)
        s = qh @ kh.T / np.sqrt(e)
        s = np.where(np.tril(np.ones((t, t))) > 0, s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        heads.append((w / w.sum(-1, keepdims=True)) @ vh)
      return _np_dense(np.concatenate(heads, -1), bp['attn'], 'out')
    def mlp(z):
      u = act[cfg.activation](_np_dense(z, bp['mlp'], 'wi'))
      if cfg.activation == 'swiglu':
        u = u * _np_dense(z, bp['mlp'], 'wi_gate')
      return _np_dense(u, bp['mlp'], 'wo')
    if cfg.norm_position == 'pre':
      x = x + attn(_np_norm(x, bp['attn_norm'], cfg.norm, cfg.norm_eps))
      x = x + mlp(_np_norm(x, bp['mlp_norm'], cfg.norm, cfg.norm_eps))
    else:
      x = _np_norm(x + attn(x), bp['attn_norm'], cfg.norm, cfg.norm_eps)
      x = _np_norm(x + mlp(x), bp['mlp_norm'], cfg.norm, cfg.norm_eps)
  if cfg.norm_position == 'pre':
    x = _np_norm(x, p['final_norm'], cfg.norm, cfg.norm_eps)
  logits = x @ (p['embed'].T if cfg.tie_embeddings else p['unembed'])
  return logits + p.get('unembed_bias', 0)


@pytest.mark.parametrize('variant', ['llama', 'gqa', 'head_dim', *(
    pytest.param(v, marks=pytest.mark.slow) for v in ('vaswani', 'gpt2', 'mqa', 'norm_eps'))])
def test_forward_matches_numpy_reference(variant):
  c = config_for(variant, d_model=32, n_heads=4)
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(5))
  # Non-trivial norm scales and biases, so that every parameter matters.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(len(str(path))), x.shape)
      if getattr(path[-1], 'key', '') in ('scale', 'bias') or str(path[-1].key).endswith('_bias')
      else x, params)
  tokens = np.array([3, 17, 250, 9, 9, 42, 0, 128, 77, 5])
  ours = np.asarray(model.apply({'params': params}, jnp.asarray(tokens)[None]))[0]
  ref = _np_forward(ModelConfig.from_config(c.model), params, tokens)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ each trains
@pytest.mark.slow  # 20 variants, each trained for steps
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_variant_trains(variant):
  c = config_for(variant)
  model, tx = build_model_and_optimizer(c)
  state = init_state(model, tx, c)
  step = make_train_step(model, tx, c)
  losses = []
  for batch in zip(range(30), loader.train_iterator(loader.load(c), c)):
    state, m = step(state, batch[1], schedule_arg(c))
    losses.append(float(m['loss']))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0, losses


def test_cpu_matmul_gradients_match_plain_dot():
  from lmjax.model.transformer import matmul
  x = jax.random.normal(jax.random.PRNGKey(0), (48, 16))
  w = jax.random.normal(jax.random.PRNGKey(1), (16, 24))
  dy = jax.random.normal(jax.random.PRNGKey(2), (48, 24))
  ours, vjp = jax.vjp(matmul, x, w)
  ref, ref_vjp = jax.vjp(jnp.dot, x, w)
  np.testing.assert_allclose(ours, ref, rtol=1e-6)
  for a, b in zip(vjp(dy), ref_vjp(dy)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _loss_and_grads(model, params, batch):
  from lmjax.train.steps import loss_sums
  return jax.jit(jax.value_and_grad(lambda p: loss_sums(p, model, batch)[0]))(params)


# Every policy that runs on CPU (the host-offload ones are refused there: test_config).
@pytest.mark.parametrize('remat', ['save_qkv_proj', *(pytest.param(r, marks=pytest.mark.slow) for r in (
    'full', 'dots', 'minimal', 'save_out_proj', 'save_attention'))])
def test_each_remat_policy_gives_the_loss_and_gradients_of_none(remat):
  c = config_for('llama')
  batch = next(loader.train_iterator(loader.load(c), c))
  model, _ = build_model_and_optimizer(c)
  model_remat, _ = build_model_and_optimizer(config_for('llama', remat=remat))
  params = init_params(model, c, jax.random.PRNGKey(0))
  (l1, g1), (l2, g2) = _loss_and_grads(model, params, batch), _loss_and_grads(model_remat,
                                                                                params, batch)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * float(jnp.abs(b).max()))


# A training step through each attention kernel that runs on CPU (the Pallas ones interpreted).
@pytest.mark.parametrize('impl', ['xla', *(pytest.param(i, marks=pytest.mark.slow)
                                           for i in ('splash', 'pallas_gpu'))])
def test_a_train_step_with_each_kernel_gives_the_loss_of_blocked(impl):
  losses = {}
  for name in ('blocked', impl):
    c = default_config()
    c.data.dataset = 'random'
    c.data.seq_len = c.model.max_seq_len = 128
    c.model.attention_impl = name
    c = resolve(c)
    model, tx = build_model_and_optimizer(c)
    step = make_train_step(model, tx, c)
    state = init_state(model, tx, c)
    batch = next(loader.train_iterator(loader.load(c), c))
    batch['segment_ids'] = np.repeat(np.arange(4), 32)[None].repeat(c.data.batch_size, 0)
    for _ in range(2):
      state, metrics = step(state, batch, schedule_arg(c))
    losses[name] = float(metrics['loss'])
  np.testing.assert_allclose(losses[impl], losses['blocked'], rtol=1e-5)


@pytest.mark.slow  # compiles the model's gradient twice per case
@pytest.mark.parametrize('variant', ['llama', 'vaswani'])
def test_scan_over_layers_matches_the_unrolled_model(variant):
  c = config_for(variant)
  c_scan = config_for(variant, scan_layers=True, remat='dots')
  model, _ = build_model_and_optimizer(c)
  model_scan, _ = build_model_and_optimizer(c_scan)
  params = init_params(model, c, jax.random.PRNGKey(0))
  stacked = {k: v for k, v in params.items() if not k.startswith('block_')}
  stacked['blocks'] = {'block': jax.tree_util.tree_map(
      lambda *xs: jnp.stack(xs), *[params[f'block_{i}'] for i in range(c.model.n_layers)])}
  shapes = jax.eval_shape(lambda: init_params(model_scan, c_scan, jax.random.PRNGKey(0)))
  assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(stacked)
  assert flops.count_tree(shapes) == flops.param_counts(ModelConfig.from_config(c.model)).N
  batch = next(loader.train_iterator(loader.load(c), c))
  (l1, g1), (l2, g2) = _loss_and_grads(model, params, batch), _loss_and_grads(model_scan,
                                                                               stacked, batch)
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  for i in range(c.model.n_layers):
    for a, b in zip(jax.tree_util.tree_leaves(g1[f'block_{i}']),
                    jax.tree_util.tree_leaves(g2['blocks']['block'])):
      np.testing.assert_allclose(a, b[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('remat', ['offload_qkv_proj', 'offload_attention'])
def test_host_offload_policies_are_refused_where_there_is_no_host_offload(remat):
  from lmjax.config import ConfigError
  from lmjax.model.transformer import model_config
  c = config_for('llama', remat=remat, attention_impl='xla')
  with pytest.raises(ConfigError, match=f'config.model.remat={remat} is not allowed on cpu'):
    model_config(c, 'cpu')
  assert model_config(c, 'tpu').remat == remat
