"""Model shapes for target sizes: `ladder`, and the Shape it returns.

With d_model ≈ aspect · n_layers and N ≈ 12 · n_layers · d_model² (Kaplan et al. 2020, Eq. 2.1),
n_layers = round((N / (12 · aspect²))^(1/3)), at least `min_layers`; d_model is then the multiple
of head_dim near sqrt(N / (12 · n_layers)) whose exact N is nearest the target (in log),
n_heads = d_model / head_dim and d_ff the preset's rule (lmjax.config.default_d_ff). Kaplan et
al. 2020 (Sec. 3.1, Fig. 5) find the loss depends only weakly on d_model / n_layers over a wide
range. N is the non-embedding parameter count (Kaplan et al. 2020, Sec. 2.1), exact, from
lmjax.model.flops on the resolved config.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

from lmjax.config import default_d_ff
from lmjax.sweeps.configs import PlanError, load_config, measure, resolve_config


@dataclasses.dataclass(frozen=True)
class Shape:
  """A model shape with its exact counts at `seq_len` (lmjax.model.flops on the resolved config)."""
  n_layers: int
  d_model: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  N_no_emb: int           # parameters without embeddings (the ladder's targets)
  N: int                  # every parameter
  flops_per_token: float  # training FLOPs per token at seq_len
  seq_len: int
  target: float | None = None

  def overrides(self) -> dict:
    return {f'model.{k}': getattr(self, k)
            for k in ('n_layers', 'd_model', 'n_heads', 'n_kv_heads', 'd_ff')}


def ladder(targets, base_config, *, aspect: float = 64.0, head_dim: int = 64, kv_group: int = 1,
           min_layers: int = 1, seq_len: int | None = None) -> list[Shape]:
  """Shapes for target non-embedding N (a number or a list), by the rule in the module doc.

  base_config: a config file or ConfigDict (its preset, activation, vocabulary and positions
  count); kv_group: query heads per kv head (n_kv_heads = n_heads / kv_group, so d_model is a
  multiple of head_dim · kv_group); seq_len: for FLOPs per token (None: the base config's).
  Two targets that give the same shape are an error.
  """
  targets = [targets] if isinstance(targets, numbers.Real) else list(targets)
  if not targets or not all(isinstance(t, numbers.Real) and math.isfinite(t) and t > 0
                            for t in targets):
    raise PlanError(f'ladder: targets must be positive numbers, got {targets!r}')
  if not (aspect > 0 and head_dim > 0 and kv_group > 0 and min_layers > 0):
    raise PlanError('ladder: aspect, head_dim, kv_group and min_layers must be positive')
  base = load_config(base_config)
  activation = resolve_config(base, 'ladder: base config: ').model.activation
  seq_len = seq_len or base.data.seq_len
  step = head_dim * kv_group
  shapes = []
  for target in targets:
    layers = max(min_layers, round((target / (12 * aspect ** 2)) ** (1 / 3)))
    k0 = max(1, round(math.sqrt(target / (12 * layers)) / step))
    best = None
    for k in range(max(1, k0 - 2), k0 + 3):
      d_model = k * step
      model = {'model.n_layers': layers, 'model.d_model': d_model,
               'model.n_heads': d_model // head_dim, 'model.n_kv_heads': d_model // step,
               'model.d_ff': default_d_ff(d_model, activation)}
      counts = measure(base, model, seq_len, f'ladder: N={target:.3g}: ')
      n_no_emb, n, fpt = counts.N_no_emb, counts.N, counts.flops_per_token
      if best is None or abs(math.log(n_no_emb / target)) < abs(math.log(best.N_no_emb / target)):
        best = Shape(layers, d_model, d_model // head_dim, d_model // step, model['model.d_ff'],
                     n_no_emb, n, fpt, seq_len, float(target))
    same = [s for s in shapes if s.overrides() == best.overrides()]
    if same:
      raise PlanError(f'ladder: targets {same[0].target:.3g} and {target:.3g} give the same '
                      f'shape ({layers} layers, d_model {best.d_model}); spread them or lower '
                      'head_dim')
    shapes.append(best)
  return shapes
