"""Low-rank adapters (LoRA, Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A targeted projection y = x·W becomes y = x·W + (α/r)·dropout(x)·A·B with A (in, r), B (r, out):
A drawn as PEFT draws it (Kaiming-uniform with a = √5: U(−1/√in, 1/√in)), B = 0, so at
initialisation the model is the base model exactly (the delta is x·A·0 = 0, added bit for bit).
Training updates A and B alone (the base is frozen: lmjax/train/optim.py labels every other leaf
`frozen`, and the loss stops their gradient): r·(in + out) parameters per projection, 2r/d of a
d×d matrix's. `merge` folds α/r·A·B into W, giving the base architecture back.

Projections by name (`model.lora_targets`, comma-separated; each entry a name or a regular
expression matched in full against `<module>/<name>`): attn/query, attn/key, attn/value, attn/out,
mlp/wi, mlp/wi_gate (gated activations), mlp/wo. Hu et al. adapt query and value (the default).
A mixture of experts' expert weights are not targets. The adapters' parameters are
`<name>_lora_a` and `<name>_lora_b` beside the projection's weight, in the same module; the
adapter itself is lmjax/model/layers.py's `lora_delta`, the target names lmjax/config.py's.
"""
from __future__ import annotations

import math

from lmjax.config import lora_available as available
from lmjax.config import lora_matches as matches

SUFFIXES = ('_lora_a', '_lora_b')
MODULES = ('attn_adapter', 'mlp_adapter')  # bottleneck adapters (layers.Adapter)


def has_adapters(m) -> bool:
  """Whether model fields (a config section, a dict or a ModelConfig) add adapters to a frozen
  base: LoRA's or bottleneck ones. Their parameters alone train and are checkpointed."""
  get = m.get if hasattr(m, 'get') else lambda k, d=0: getattr(m, k, d)
  return bool(get('lora_rank', 0) or get('adapter_dim', 0))


def _name(entry):
  return getattr(entry, 'key', getattr(entry, 'name', entry))


def is_adapter(path) -> bool:
  """Whether a parameter's key path (a tuple of names, or jax key entries) is an adapter's: a
  LoRA factor or any parameter of a bottleneck adapter module."""
  names = [_name(e) for e in path]
  last = names[-1]
  return (isinstance(last, str) and last.endswith(SUFFIXES)) or any(n in MODULES for n in names)


def scale(cfg) -> float:
  return cfg.lora_alpha / cfg.lora_rank


def merge(params, cfg):
  """The base model's params with every adapter folded in: W + (α/r)·A·B (reshaped to W's
  shape), the adapters' leaves removed. `cfg`: the LoRA model's ModelConfig."""
  import jax.numpy as jnp

  def fold(tree):
    out = {}
    for key, value in tree.items():
      if isinstance(key, str) and key.endswith(SUFFIXES):
        continue
      if isinstance(value, dict):
        out[key] = fold(value)
      elif f'{key}_lora_a' in tree:
        a, b = tree[f'{key}_lora_a'], tree[f'{key}_lora_b']
        out[key] = (value.astype(jnp.float32) + scale(cfg) * _product(a, b, value.shape)
                    ).astype(value.dtype)
      else:
        out[key] = value
    return out
  return fold(params)


def _product(a, b, shape):
  """A·B as a weight of `shape`; A (..in, r) and B (r, out..), with a leading layers axis when
  the layers are scanned (shape then starts with it)."""
  import jax.numpy as jnp
  a32, b32 = a.astype(jnp.float32), b.astype(jnp.float32)
  if a.ndim + b.ndim - 2 == len(shape) + 1:  # scanned: (L, in.., r) · (L, r, out..)
    layers = shape[0]
    flat = jnp.einsum('lir,lro->lio', a32.reshape(layers, -1, a.shape[-1]),
                      b32.reshape(layers, b.shape[1], -1))
    return flat.reshape(shape)
  return (a32.reshape(-1, a.shape[-1]) @ b32.reshape(b.shape[0], -1)).reshape(shape)


def split(params):
  """(adapters, base): the params' adapter leaves (LoRA factors, bottleneck adapter modules)
  and the rest, each as a nested dict."""
  def part(tree, keep):
    out = {}
    for key, value in tree.items():
      if key in MODULES:
        if keep(True):
          out[key] = value
      elif isinstance(value, dict):
        sub = part(value, keep)
        if sub:
          out[key] = sub
      elif keep(isinstance(key, str) and key.endswith(SUFFIXES)):
        out[key] = value
    return out
  return part(params, bool), part(params, lambda x: not x)


def join(adapters, base):
  """The params of a LoRA model from `split`'s two halves."""
  out = dict(base)
  for key, value in adapters.items():
    out[key] = join(value, out.get(key, {})) if isinstance(value, dict) else value
  return out


def trainable(cfg) -> int:
  """LoRA parameters of a model, Σ r·(in + out) over its targeted projections and
  layers (Hu et al. 2021, Sec. 4): the count the banner prints, checked against the tree."""
  d, f, h, k, e = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  sizes = {'attn/query': (d, h * e), 'attn/key': (d, k * e), 'attn/value': (d, k * e),
           'attn/out': (h * e, d), 'mlp/wi': (d, f), 'mlp/wi_gate': (d, f), 'mlp/wo': (f, d)}
  gated = cfg.activation in ('swiglu', 'geglu')
  dense_layers = sum(not cfg.moe_layer(i) for i in range(cfg.n_layers))
  total = 0
  for path in available(gated, True):
    if matches(cfg.lora_targets, path):
      layers = dense_layers if path.startswith('mlp/') else cfg.n_layers
      total += layers * cfg.lora_rank * sum(sizes[path])
  return total


def bottleneck_params(cfg) -> int:
  """Bottleneck adapters' parameters (Houlsby et al. 2019, Sec. 2.1): 2·d·m + d + m each (the
  down and up projections and their biases), two per layer (houlsby) or one (pfeiffer)."""
  if not cfg.adapter_dim:
    return 0
  per_layer = 2 if cfg.adapter_placement == 'houlsby' else 1
  d, m = cfg.d_model, cfg.adapter_dim
  return cfg.n_layers * per_layer * (2 * d * m + d + m)


def count(params) -> int:
  """Adapter parameters in a params tree (arrays or ShapeDtypeStructs)."""
  import jax
  return sum(math.prod(x.shape) for path, x in jax.tree_util.tree_leaves_with_path(params)
             if is_adapter(path))


def describe(cfg, params, n_total) -> str:
  """The banner's line of a model with adapters: what is adapted and the trainable count from
  the tree beside the formulas'."""
  n, parts, formulas = count(params), [], []
  if cfg.lora_rank:
    parts.append(f'LoRA rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g} (scale {scale(cfg):g}), '
                 f'dropout {cfg.lora_dropout:g}, targets {cfg.lora_targets}')
    formulas.append(f'Σ r·(in + out) = {trainable(cfg):,}')
  if cfg.adapter_dim:
    parts.append(f'bottleneck adapters of width {cfg.adapter_dim} ({cfg.adapter_placement})')
    formulas.append(f'(2·d·m + d + m) per adapter = {bottleneck_params(cfg):,}')
  return (f'adapters: {"; ".join(parts)}; trainable params {n:,} ({", ".join(formulas)}), '
          f'{100 * n / max(n_total, 1):.3f}% of the base\'s {n_total:,}; the base is frozen')
