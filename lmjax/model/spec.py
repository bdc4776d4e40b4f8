"""`ModelConfig`: the model fields of a resolved config as a frozen dataclass, and the platform the
model runs on. Jax-free, so that parameter counts and FLOPs (lmjax/model/flops.py) are computed
for sweeps and notebooks without JAX; the model itself is lmjax/model/transformer.py."""
from __future__ import annotations

import dataclasses

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
  dropout: float
  dtype: str
  param_dtype: str
  init_std: float
  attention_block: int
  attention_impl: str
  remat: str
  scan_layers: bool
  platform: str = ''        # where the model runs: cpu | gpu | tpu; '' = jax.default_backend()

  @classmethod
  def from_config(cls, model_config) -> 'ModelConfig':
    """From a resolved `config.model` (a ConfigDict or dict, a run's config.json's included):
    a field it lacks (added to lmjax after the run) takes default_config's value; a key that is
    no field is a ConfigError."""
    values = dict(model_config)
    names = [f.name for f in dataclasses.fields(cls) if f.name != 'platform']
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
