"""The building blocks the dense and the mixture-of-experts layers share: parameters with logical
axes, the matmul (with XLA:CPU's faster weight gradient), a dense projection, the base of modules
that pin activation shardings, and the position-wise MLP. Shape letters as in transformer.py."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from lmjax.config import GATED, lora_matches
from lmjax.model.quantize import qat_matmul
from lmjax.model.spec import ModelConfig

# The MLP's nonlinearity by `model.activation` (gated units apply it to their first projection).
ACTIVATIONS = {'relu': jax.nn.relu, 'gelu': jax.nn.gelu, 'silu': jax.nn.silu,
               'swiglu': jax.nn.silu, 'geglu': jax.nn.gelu}


def param(module, name, shape, axes, std, dtype):
  """A parameter with logical axes `axes`, initialised N(0, std²); std 0: zeros, None: ones."""
  init = nn.initializers.normal(std) if std else (
      nn.initializers.ones if std is None else nn.initializers.zeros)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


@jax.custom_vjp
def _matmul_cpu(x_NxI, w_IxO):
  return jnp.dot(x_NxI, w_IxO)


def _matmul_cpu_fwd(x_NxI, w_IxO):
  return jnp.dot(x_NxI, w_IxO), (x_NxI, w_IxO)


def _matmul_cpu_bwd(res, dy_NxO):
  # XLA:CPU runs dot(xᵀ, dy) contracting the leading (token) axis of both operands at about 2/3
  # of its speed on a row-major xᵀ; the barrier keeps the transpose materialised (a cheap copy)
  # instead of folded into the dot. Measured +10-30% on the weight-gradient dots of nanoGPT-S.
  x_NxI, w_IxO = res
  x_IxN = jax.lax.optimization_barrier(x_NxI.T)
  return jnp.dot(dy_NxO, w_IxO.T), jnp.dot(x_IxN, dy_NxO)


_matmul_cpu.defvjp(_matmul_cpu_fwd, _matmul_cpu_bwd)


def matmul(x_NxI, w_IxO, out_dtype=None, platform='', quantize='none'):
  """x @ w for 2-D operands, float32 accumulation when `out_dtype` is float32; `quantize`
  int8: qwix's int8 matmuls forward and backward (lmjax/model/quantize.py)."""
  if quantize == 'int8':
    return qat_matmul(x_NxI, w_IxO, out_dtype)
  if (platform or jax.default_backend()) == 'cpu' and x_NxI.dtype == w_IxO.dtype == jnp.float32:
    return _matmul_cpu(x_NxI, w_IxO)
  return jnp.dot(x_NxI, w_IxO, preferred_element_type=out_dtype)


def dense(module, x_NxI, name, shape, axes, std, bias_axes=None, in_scale=None,
          deterministic=True):
  """x @ W (+ b), with W of `shape` flattened to (I, O) for the matmul; `in_scale` (I,)
  multiplies W's rows (a folded norm scale, see Norm); plus a low-rank adapter's output where
  the projection is a LoRA target (lmjax/model/lora.py)."""
  cfg = module.cfg
  pdt, dt = jnp.dtype(cfg.param_dtype), jnp.dtype(cfg.dtype)
  w = param(module, name, shape, axes, std, pdt)
  n_in = x_NxI.shape[-1]
  w = w.reshape(n_in, -1)
  if in_scale is not None:
    w = w * in_scale[:, None]
  y = matmul(x_NxI, w.astype(dt), platform=cfg.platform, quantize=cfg.quantize)
  if cfg.use_bias:
    b = param(module, name + '_bias', shape[-len(bias_axes):], bias_axes, 0, pdt)
    y = y + b.astype(dt).reshape(-1)
  adapted = lora_delta(module, x_NxI, name, shape, axes, in_scale, deterministic)
  return y if adapted is None else y + adapted


def lora_delta(module, x_NxI, name, shape, axes, in_scale=None, deterministic=True):
  """(α/r)·dropout(x)·A·B of projection `name` of `module`, whose weight has `shape` and `axes`,
  or None where it is not a LoRA target (lmjax/model/lora.py). A (in.., r) is drawn
  U(−1/√in, 1/√in) as PEFT draws it, B (r, out..) starts at 0. `in_scale` is a folded norm
  scale, applied to the adapter's input as the weight's rows get it (`dense`)."""
  cfg = module.cfg
  if not cfg.lora_rank or not lora_matches(cfg.lora_targets, f'{module.name}/{name}'):
    return None
  n_in, k = x_NxI.shape[-1], 0
  while math.prod(shape[:k]) != n_in:  # the weight's input axes
    k += 1
  r, pdt, dt = cfg.lora_rank, jnp.dtype(cfg.param_dtype), jnp.dtype(cfg.dtype)
  init_a = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform',
                                            in_axis=tuple(range(k)), out_axis=-1)
  a = module.param(name + '_lora_a', nn.with_logical_partitioning(init_a, (*axes[:k], None)),
                   (*shape[:k], r), pdt).reshape(n_in, r)
  b = module.param(name + '_lora_b', nn.with_logical_partitioning(
      nn.initializers.zeros, (None, *axes[k:])), (r, *shape[k:]), pdt).reshape(r, -1)
  x = x_NxI if in_scale is None else x_NxI * in_scale.astype(x_NxI.dtype)
  if cfg.lora_dropout:
    x = nn.Dropout(cfg.lora_dropout)(x, deterministic=deterministic)
  h = matmul(x, a.astype(dt), platform=cfg.platform)
  return matmul(h, b.astype(dt), platform=cfg.platform) * jnp.asarray(
      cfg.lora_alpha / cfg.lora_rank, dt)


class Sharded(nn.Module):
  """Base of the modules below: the mesh and logical-axis rules for activation constraints."""
  cfg: ModelConfig
  mesh: Any = None
  rules: tuple = ()

  def constrain(self, x, *names):
    """x with its sharding pinned by logical axis names (a no-op without a mesh)."""
    if self.mesh is None or self.mesh.size == 1:
      return x
    return nn.with_logical_constraint(x, names, mesh=self.mesh, rules=self.rules)

  @property
  def tensor_parallel(self) -> bool:
    return self.mesh is not None and self.mesh.shape.get('tensor', 1) > 1


class Adapter(Sharded):
  """A bottleneck adapter (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP",
  Fig. 2): y + up(act(down(y))) on a sublayer's output y before its residual addition, with a
  width-m bottleneck and biases; `up` starts at 0, so the block starts as it was. Trained alone
  on a frozen base (lmjax/model/lora.py)."""

  @nn.compact
  def __call__(self, y_NxD):
    cfg = self.cfg
    d, m = cfg.d_model, cfg.adapter_dim
    pdt, dt = jnp.dtype(cfg.param_dtype), jnp.dtype(cfg.dtype)
    down = param(self, 'down', (d, m), ('embed', None), cfg.init_std, pdt)
    up = param(self, 'up', (m, d), (None, 'embed'), 0, pdt)
    h = matmul(y_NxD, down.astype(dt), platform=cfg.platform)
    h = ACTIVATIONS['gelu'](h + param(self, 'down_bias', (m,), (None,), 0, pdt).astype(dt))
    out = matmul(h, up.astype(dt), platform=cfg.platform)
    return y_NxD + out + param(self, 'up_bias', (d,), ('embed',), 0, pdt).astype(dt)


class Mlp(Sharded):
  """Position-wise MLP; swiglu/geglu are gated (Shazeer 2020) and use three matrices.
  `deterministic`: no LoRA dropout (lmjax/model/lora.py)."""
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_NxD, in_scale=None):
    cfg = self.cfg
    d, f, std = cfg.d_model, cfg.d_ff, cfg.init_std * cfg.mup.hidden_std
    act = ACTIVATIONS[cfg.activation]
    up = lambda name: self.constrain(checkpoint_name(
        dense(self, x_NxD, name, (d, f), ('embed', 'mlp'), std, ('mlp',), in_scale,
              self.deterministic), name), 'act_batch', 'act_mlp')
    h_NxF = act(up('wi'))
    if cfg.activation in GATED:
      h_NxF = h_NxF * up('wi_gate')
    out_NxD = dense(self, h_NxF, 'wo', (f, d), ('mlp', 'embed'), cfg.residual_init_std,
                     ('embed',), deterministic=self.deterministic)
    return checkpoint_name(out_NxD, 'mlp_out')
