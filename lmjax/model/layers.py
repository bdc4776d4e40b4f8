"""The building blocks the dense and the mixture-of-experts layers share: parameters with logical
axes, the matmul (with XLA:CPU's faster weight gradient), a dense projection, the base of modules
that pin activation shardings, and the position-wise MLP. Shape letters as in transformer.py."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from lmjax.config import GATED
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


def matmul(x_NxI, w_IxO, out_dtype=None, platform=''):
  """x @ w for 2-D operands, float32 accumulation when `out_dtype` is float32."""
  if (platform or jax.default_backend()) == 'cpu' and x_NxI.dtype == w_IxO.dtype == jnp.float32:
    return _matmul_cpu(x_NxI, w_IxO)
  return jnp.dot(x_NxI, w_IxO, preferred_element_type=out_dtype)


def dense(module, x_NxI, name, shape, axes, std, bias_axes=None, in_scale=None):
  """x @ W (+ b), with W of `shape` flattened to (I, O) for the matmul; `in_scale` (I,)
  multiplies W's rows (a folded norm scale, see Norm)."""
  cfg = module.cfg
  pdt, dt = jnp.dtype(cfg.param_dtype), jnp.dtype(cfg.dtype)
  w = param(module, name, shape, axes, std, pdt)
  n_in = x_NxI.shape[-1]
  w = w.reshape(n_in, -1)
  if in_scale is not None:
    w = w * in_scale[:, None]
  y = matmul(x_NxI, w.astype(dt), platform=cfg.platform)
  if cfg.use_bias:
    b = param(module, name + '_bias', shape[-len(bias_axes):], bias_axes, 0, pdt)
    y = y + b.astype(dt).reshape(-1)
  return y


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


class Mlp(Sharded):
  """Position-wise MLP; swiglu/geglu are gated (Shazeer 2020) and use three matrices."""

  @nn.compact
  def __call__(self, x_NxD, in_scale=None):
    cfg = self.cfg
    d, f, std = cfg.d_model, cfg.d_ff, cfg.init_std * cfg.mup.hidden_std
    act = ACTIVATIONS[cfg.activation]
    up = lambda name: self.constrain(checkpoint_name(
        dense(self, x_NxD, name, (d, f), ('embed', 'mlp'), std, ('mlp',), in_scale), name),
        'act_batch', 'act_mlp')
    h_NxF = act(up('wi'))
    if cfg.activation in GATED:
      h_NxF = h_NxF * up('wi_gate')
    out_NxD = dense(self, h_NxF, 'wo', (f, d), ('mlp', 'embed'), cfg.residual_init_std,
                     ('embed',))
    return checkpoint_name(out_NxD, 'mlp_out')
