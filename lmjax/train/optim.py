"""AdamW (Loshchilov & Hutter 2019) from optax, learning-rate schedules and the weight-decay mask.

Schedules: linear warmup from 0 to `lr` over `warmup_steps`, then
- cosine: half a cosine from lr to min_lr (Loshchilov & Hutter 2017) at `steps`;
- linear: a straight line from lr to min_lr at `steps`;
- constant: lr until the end;
- wsd (warmup-stable-decay; Hu et al. 2024 "MiniCPM", Hägele et al. 2024): lr until
  steps·(1 - decay_fraction), then down to min_lr at `steps` with `decay_shape` linear, cosine or
  1-sqrt (Hägele et al. 2024, Eq. 1: lr·(1 - sqrt(x)), x the fraction of the cooldown done).
min_lr = min_lr_ratio · lr. Step s of the loop uses schedule(s), s counted from 0.

Under `model.parametrization=mup` the parameters fall in three groups (`param_group`) whose
learning rate, weight decay and Adam ε are the config's times μP's and CompleteP's factors
(lmjax/model/spec.py, Mup), through optax.multi_transform: one AdamW per group.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmjax.model import lora
from lmjax.model.spec import ModelConfig


def schedule(optim_config, steps: int):
  o = optim_config
  peak, low, warm = o.lr, o.lr * o.min_lr_ratio, o.warmup_steps
  warmup = optax.linear_schedule(0.0, peak, max(warm, 1))
  rest = steps - warm
  if o.schedule == 'constant':
    after = optax.constant_schedule(peak)
  elif o.schedule == 'cosine':
    after = optax.cosine_decay_schedule(peak, max(rest, 1), alpha=o.min_lr_ratio)
  elif o.schedule == 'linear':
    after = optax.linear_schedule(peak, low, max(rest, 1))
  elif o.schedule == 'wsd':
    decay_steps = max(int(round(steps * o.decay_fraction)), 1)
    stable = max(rest - decay_steps, 0)
    after = optax.join_schedules(
        [optax.constant_schedule(peak), _decay(o.decay_shape, peak, low, decay_steps)], [stable])
  else:
    raise ValueError(f'config.optim.schedule={o.schedule!r} is not allowed')
  if warm == 0:
    return after
  return optax.join_schedules([warmup, after], [warm])


_KINDS = ('cosine', 'linear', 'constant', 'wsd')
_SHAPES = ('linear', 'cosine', '1-sqrt')


def schedule_params(optim_config, steps: int) -> np.ndarray:
  """The schedule as numbers: [peak, low, warmup, steps, wsd decay steps, kind, decay shape].

  The train step takes these as an argument rather than as constants, so runs that differ only
  in their schedule (the stable run and cooldown branches of a sweep, runs of other lengths)
  compile to the same program and share it through JAX's persistent compilation cache."""
  o = optim_config
  decay = max(int(round(steps * o.decay_fraction)), 1)
  return np.array([o.lr, o.lr * o.min_lr_ratio, o.warmup_steps, steps, decay,
                   _KINDS.index(o.schedule), _SHAPES.index(o.decay_shape)], np.float32)


def lr_at(count, p):
  """`schedule(...)(count)` computed from `schedule_params` (traceable; tested equal)."""
  peak, low, warm, steps, decay = p[0], p[1], p[2], p[3], p[4]
  kind, shape = p[5], p[6]
  count = jnp.asarray(count, jnp.float32)
  u = count - warm                                    # steps after warmup
  rest = jnp.maximum(steps - warm, 1.0)
  frac = jnp.clip(u / rest, 0.0, 1.0)
  cosine = low + (peak - low) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
  linear = peak + (low - peak) * frac
  v = jnp.clip((u - jnp.maximum(steps - warm - decay, 0.0)) / decay, 0.0, 1.0)
  decayed = jnp.select([shape == 0, shape == 1],
                       [peak + (low - peak) * v, low + (peak - low) * 0.5 * (1 + jnp.cos(jnp.pi * v))],
                       low + (peak - low) * (1.0 - jnp.sqrt(v)))
  after = jnp.select([kind == 0, kind == 1, kind == 2], [cosine, linear, peak], decayed)
  warming = peak * jnp.clip(count / jnp.maximum(warm, 1.0), 0.0, 1.0)
  return jnp.where((warm > 0) & (count < warm), warming, after)


def _decay(shape, peak, low, n):
  if shape == 'linear':
    return optax.linear_schedule(peak, low, n)
  if shape == 'cosine':
    return optax.cosine_decay_schedule(peak, n, alpha=low / peak)

  def one_minus_sqrt(step):
    x = jnp.clip(step / n, 0.0, 1.0)
    return low + (peak - low) * (1.0 - jnp.sqrt(x))
  return one_minus_sqrt


def decay_mask(params, optim_config):
  """True for leaves that get weight decay. Norm scales/biases, biases and embeddings by flags."""
  o = optim_config

  def decays(path, _):
    # Dict keys only: boxed (nn.Partitioned) params add an attribute step to the path.
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    leaf, module = names[-1], names[-2] if len(names) > 1 else ''
    if 'norm' in module:
      return bool(o.decay_norms)
    if leaf.endswith('bias'):
      return bool(o.decay_biases)
    if leaf in ('embed', 'pos_embed', 'unembed'):
      return bool(o.decay_embeddings)
    return True
  return jax.tree_util.tree_map_with_path(decays, params)


# μP's groups: the matrices inside the blocks are its hidden weights; the blocks' other
# parameters (norm scales, biases) are vectors; the rest are the input and output layers.
HIDDEN = ('query', 'key', 'value', 'out', 'wi', 'wi_gate', 'wo')
GROUPS = ('io', 'hidden', 'block_vector')


def param_group(path) -> str:
  """io | hidden | block_vector for the parameter at a tree path (module doc)."""
  names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
  if not any(n.startswith('block') for n in names[:-1]):
    return 'io'
  return 'hidden' if names[-1] in HIDDEN else 'block_vector'


def group_factors(model_config) -> dict:
  """{group: (lr factor, weight-decay factor)} of a model's parametrization (all 1 under sp)."""
  m = ModelConfig.from_config(model_config).mup
  return {'io': (1.0, 1.0), 'hidden': (m.hidden_lr, m.hidden_decay),
          'block_vector': (m.vector_lr, 1.0)}


def describe(model_config, optim_config) -> str:
  """The banner's line of a mup model: each group's peak learning rate by parameter name."""
  cfg = ModelConfig.from_config(model_config)
  m, o, f = cfg.mup, optim_config, group_factors(model_config)
  base = (f'base d_model {cfg.mup_base_d_model or cfg.d_model}, head_dim '
          f'{cfg.mup_base_head_dim or cfg.head_dim}, n_layers {m.base_layers}')
  return (f'μP ({base}; m_N = {m.width:g}, m_L = {m.depth:g}, α = {m.alpha:g}): peak lr '
          f'{o.lr:.3g} for embed, pos_embed, unembed, final_norm; '
          f'{o.lr * f["hidden"][0]:.3g} for {", ".join(HIDDEN)} (weight decay '
          f'{o.weight_decay * f["hidden"][1]:.3g}); {o.lr * f["block_vector"][0]:.3g} for the '
          f'blocks\' norms and biases; Adam eps {o.eps * m.eps:.3g}; output logits × '
          f'{m.logits:.3g}, residual branches × {m.residual:.3g}, attention '
          f'{m.attention * cfg.head_dim ** -0.5:.3g} (sqrt(E_base)/E)')


def optimizer(optim_config, steps: int, lr=None, model_config=None
              ) -> optax.GradientTransformation:
  """AdamW with clipping; `lr` (a function of the update count) replaces the config's
  schedule, e.g. `lambda c: lr_at(c, params)` inside a traced train step. A mup
  `model_config` gives each parameter group its own AdamW (module doc)."""
  o = optim_config
  lr = lr or schedule(o, steps)
  if model_config is None or model_config.parametrization != 'mup':
    adamw = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                        mask=lambda p: decay_mask(p, o))
  else:
    eps = o.eps * ModelConfig.from_config(model_config).mup.eps
    adamw = optax.multi_transform(
        {group: optax.adamw(lambda count, f=lr_f: lr(count) * f, b1=o.b1, b2=o.b2, eps=eps,
                            weight_decay=o.weight_decay * wd_f,
                            mask=lambda p: decay_mask(p, o))
         for group, (lr_f, wd_f) in group_factors(model_config).items()},
        lambda params: jax.tree_util.tree_map_with_path(lambda path, _: param_group(path),
                                                        params))
  if model_config is not None and lora.has_adapters(model_config):
    # Adapters (lmjax/model/lora.py) train; the base stays as it is, with no optimizer state.
    adamw = optax.multi_transform(
        {'adapter': adamw, 'frozen': optax.set_to_zero()},
        lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: 'adapter' if lora.is_adapter(_names(path)) else 'frozen', params))
  if o.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), adamw)
  return adamw


def _names(path) -> tuple:
  return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
