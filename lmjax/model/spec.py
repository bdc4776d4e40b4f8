"""`ModelConfig`: the model fields of a resolved config as a frozen dataclass, and the platform the
model runs on. Jax-free, so that parameter counts and FLOPs (lmjax/model/flops.py) are computed
for sweeps and notebooks without JAX; the model itself is lmjax/model/transformer.py."""
from __future__ import annotations

import dataclasses
import math

from lmjax.config import ConfigError, default_config


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The fields of a resolved `config.model`, one to one, and the platform the model runs on.
  Their meaning and defaults are lmjax/config.py's (default_config, PRESETS), written there
  only: `from_config` fills what an older run's config lacks from default_config and refuses a
  key it does not know."""
  preset: str
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  max_seq_len: int
  norm: str
  norm_position: str
  activation: str
  position: str
  rope_theta: float
  norm_eps: float
  head_dim: int              # 0: d_model // n_heads (set in __post_init__)
  rope_scaling: str          # none | llama3 (rope_frequencies)
  rope_scaling_factor: float
  rope_low_freq_factor: float
  rope_high_freq_factor: float
  rope_original_max_len: int
  tie_embeddings: bool
  use_bias: bool
  qkv_bias: bool             # biases on q, k, v alone (Qwen2)
  dropout: float
  dtype: str
  param_dtype: str
  init_std: float
  attention_block: int
  attention_impl: str
  remat: str
  scan_layers: bool
  parametrization: str       # sp | mup (Mup below)
  mup_base_d_model: int      # 0: d_model
  mup_base_head_dim: int     # 0: head_dim
  mup_base_n_layers: int     # 0: n_layers
  mup_depth_alpha: float
  moe_experts: int           # 0: dense (lmjax/model/moe.py)
  moe_top_k: int
  moe_d_ff: int              # 0: d_ff (set in __post_init__)
  moe_shared_experts: int
  moe_every: int
  moe_router: str            # mixtral | switch | deepseek
  moe_capacity_factor: float  # 0: dropless
  moe_impl: str              # auto | ragged | blocked
  moe_lb_loss: float
  moe_z_loss: float
  moe_bias_rate: float
  lora_rank: int             # 0: no adapters (lmjax/model/lora.py)
  lora_alpha: float
  lora_dropout: float
  lora_targets: str
  adapter_dim: int           # 0: no bottleneck adapters (layers.Adapter)
  adapter_placement: str     # houlsby | pfeiffer
  platform: str = ''        # where the model runs: cpu | gpu | tpu; '' = jax.default_backend()
  quantize: str = 'none'     # train.quantize: int8 block matmuls (lmjax/model/quantize.py)

  @classmethod
  def from_config(cls, model_config) -> 'ModelConfig':
    """From a resolved `config.model` (a ConfigDict or dict, a run's config.json's included):
    a field it lacks (added to lmjax after the run) takes default_config's value; a key that is
    no field is a ConfigError."""
    values = dict(model_config)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ('platform', 'quantize')]
    unknown = sorted(set(values) - set(names) - {'platform'})
    if unknown:
      raise ConfigError(f'config.model.{unknown[0]} is not a model field (one of '
                        f'{", ".join(names)})')
    defaults = default_config().model
    return cls(**{n: values[n] if n in values else defaults[n] for n in names},
               platform=values.get('platform', ''))

  @property
  def rope_scaling_args(self):
    if self.rope_scaling == 'none':
      return None
    return (self.rope_scaling_factor, self.rope_low_freq_factor, self.rope_high_freq_factor,
            self.rope_original_max_len)

  def __post_init__(self):
    if not self.head_dim:
      object.__setattr__(self, 'head_dim', self.d_model // self.n_heads)
    if not self.moe_d_ff:
      object.__setattr__(self, 'moe_d_ff', self.d_ff)

  def moe_layer(self, i: int) -> bool:
    """Whether layer i (from 0) has a mixture of experts in place of its MLP."""
    return bool(self.moe_experts) and (i + 1) % self.moe_every == 0

  @property
  def moe_layers(self) -> int:
    return sum(self.moe_layer(i) for i in range(self.n_layers))

  @property
  def mup(self) -> Mup:
    """The multipliers of this model's parametrization (all 1 under sp and at the base shape)."""
    if self.parametrization != 'mup':
      return Mup()
    return Mup(width=self.d_model / (self.mup_base_d_model or self.d_model),
               head=self.head_dim / (self.mup_base_head_dim or self.head_dim),
               depth=self.n_layers / (self.mup_base_n_layers or self.n_layers),
               alpha=float(self.mup_depth_alpha), base_layers=self.mup_base_n_layers or
               self.n_layers)

  @property
  def residual_init_std(self) -> float:
    """The init std of the two projections that write into the residual stream: GPT-2's
    init_std / sqrt(2·L); under mup L is the base depth (CompleteP's init does not change with
    depth) and the hidden-width factor applies."""
    if self.parametrization != 'mup':
      return self.init_std / math.sqrt(2 * self.n_layers)
    m = self.mup
    return self.init_std / math.sqrt(2 * m.base_layers) * m.hidden_std


@dataclasses.dataclass(frozen=True)
class Mup:
  """μP (Yang et al. 2022, "Tensor Programs V", Table 3, Adam) with CompleteP's depth rules
  (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep transformers",
  Table 1), as multipliers of the standard parametrization's values. m_N = width / base width
  (the ratio of every hidden fan-in, the model's widths scaling together), m_L = depth / base
  depth, α the depth exponent (1: CompleteP). Every factor is exactly 1 at the base shape, so
  there mup computes what sp does, bit for bit.

  Model: hidden matrices (q, k, v, attention out, MLP in and out) init std × m_N^-1/2;
  attention logits × (E / E_base)^-1/2, i.e. sqrt(E_base)/E in place of 1/sqrt(E); output logits
  × 1/m_N; residual branches × m_L^-α; sinusoidal embeddings × sqrt(base width) in place of
  sqrt(width); embeddings, norms and biases as in sp.
  Optimizer (AdamW): hidden matrices lr × m_N^-1 · m_L^(α-1) and weight decay × m_N (so that
  lr·decay does not change with width); the blocks' vectors (norm scales, biases)
  lr × m_L^(α-1); embeddings, unembedding and the final norm as in sp; Adam's ε × m_N^-1 ·
  m_L^-α for every parameter (CompleteP; the nanoGPT-mup reference implementation)."""
  width: float = 1.0
  head: float = 1.0
  depth: float = 1.0
  alpha: float = 1.0
  base_layers: int = 0

  @property
  def hidden_std(self) -> float:
    return self.width ** -0.5

  @property
  def attention(self) -> float:
    return self.head ** -0.5

  @property
  def logits(self) -> float:
    return 1.0 / self.width

  @property
  def residual(self) -> float:
    return self.depth ** -self.alpha

  @property
  def embedding(self) -> float:
    """Of sinusoidal positions' sqrt(d_model) embedding scale (Vaswani et al. 2017)."""
    return self.width ** -0.5

  @property
  def hidden_lr(self) -> float:
    return 1.0 / self.width * self.depth ** (self.alpha - 1)

  @property
  def vector_lr(self) -> float:
    return self.depth ** (self.alpha - 1)

  @property
  def hidden_decay(self) -> float:
    return self.width

  @property
  def eps(self) -> float:
    return 1.0 / self.width * self.depth ** -self.alpha
