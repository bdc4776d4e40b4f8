"""A decoder-only transformer in functional Flax linen; every architectural choice is a field.

Tensor names carry their shapes (as in NanoDO). Legend:
  B batch, T sequence (query), S sequence (key), D d_model, H query heads, K kv heads,
  G = H // K heads per kv head, E head_dim, F d_ff, V vocab, N = B·T tokens, L layers.

The residual stream is kept flat as (N, D) around every matmul: on XLA:CPU this avoids transposes
that the (B, T, D) form costs in the weight-gradient dots (see shared bench notes).

Parameters are created with logical axis names (`embed`, `mlp`, `heads`, `kv_heads`, `head_dim`,
`vocab`, `norm`), which a sharding layer maps to mesh axes without touching this file; given a
mesh, activations are constrained by logical names too (`act_batch`, `act_heads`, `act_mlp`, ...;
the rules in `config.mesh.rules`), where the partitioner would otherwise guess.

Packed documents reach attention as segment ids, never as a T×S mask (lmjax/model/attention.py).
Rematerialisation policies name what they keep by the `checkpoint_name` tags below (remat.py).

Initialisation (GPT-2, Radford et al. 2019, as in nanoGPT): weights and embeddings ~ N(0, σ²) with
σ = `init_std` (0.02); the two projections that write into the residual stream (attention output,
MLP output) use σ / sqrt(2·L); biases zero; norm scales one. `parametrization=mup` changes init
and multipliers with width and depth (μP and CompleteP; lmjax/model/spec.py, Mup), and is this
model exactly at its base shape.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from lmjax.config import ConfigError
from lmjax.model import attention, remat
from lmjax.model.blocked_attention import dense_mask
from lmjax.model.layers import Adapter, Mlp, Sharded, lora_delta, matmul
from lmjax.model.layers import dense as _dense
from lmjax.model.layers import param as _param
from lmjax.model.moe import MoeMlp
from lmjax.model.spec import ModelConfig


def model_config(config, platform: str) -> ModelConfig:
  """The ModelConfig of a resolved config for the devices it runs on: the attention kernel
  resolved and checked against the platform and shapes (lmjax/model/attention.py), and a
  host-offload remat policy only where there is host offload. Raises ConfigError naming the
  field."""
  impl = attention.check(config.model, config.data.seq_len, platform)
  if remat.offloads(config.model.remat) and platform not in remat.OFFLOAD_PLATFORMS:
    raise ConfigError(f'config.model.remat={config.model.remat} is not allowed on {platform}: '
                      f'host offload runs on {" or ".join(remat.OFFLOAD_PLATFORMS)}')
  return dataclasses.replace(ModelConfig.from_config(config.model), attention_impl=impl,
                             platform=platform, quantize=config.train.get('quantize', 'none'))


class Norm(nn.Module):
  """LayerNorm (Ba et al. 2016) or RMSNorm (Zhang & Sennrich 2019), statistics in float32, with
  `norm_eps` added to the variance (mean square)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_NxD, fold=False):
    """Normalised x; with `fold`, (x before its scale, the scale) for the next matmul to fold
    into its weights (`_dense(in_scale=)`): x̂·diag(s)·W = x̂·(s ∘ W) saves a pass over x."""
    cfg = self.cfg
    pdt = jnp.dtype(cfg.param_dtype)
    x = x_NxD.astype(jnp.float32)
    if cfg.norm == 'layernorm':
      x = x - x.mean(-1, keepdims=True)
    x = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + cfg.norm_eps)
    scale = _param(self, 'scale', (cfg.d_model,), ('norm',), None, pdt)
    if fold:
      return x.astype(cfg.dtype), scale
    x = x * scale
    if cfg.norm == 'layernorm' and cfg.use_bias:
      x = x + _param(self, 'bias', (cfg.d_model,), ('norm',), 0, pdt)
    return x.astype(cfg.dtype)


def rope_frequencies(e, theta, scaling=None):
  """The E/2 rotation frequencies θ^(-2i/E) (Su et al. 2021). `scaling` (factor, low_freq_factor,
  high_freq_factor, original_max_len) applies LLaMA 3.1's long-context rescaling (Grattafiori
  et al. 2024, "The Llama 3 Herd of Models", Sec. 3.4 and Meta's reference code): frequencies whose
  wavelength exceeds original_max_len / low_freq_factor are divided by `factor`, those shorter
  than original_max_len / high_freq_factor kept, and those between interpolated linearly in
  original_max_len / wavelength."""
  inv_freq_E2 = theta ** (-jnp.arange(0, e, 2, dtype=jnp.float32) / e)
  if not scaling:
    return inv_freq_E2
  factor, low, high, original = scaling
  wavelen = 2 * math.pi / inv_freq_E2
  smooth = jnp.clip((original / wavelen - low) / (high - low), 0.0, 1.0)
  return (1 - smooth) * inv_freq_E2 / factor + smooth * inv_freq_E2


def rope(x_BxTxHxE, positions_BxT, theta, scaling=None):
  """Rotary embeddings (Su et al. 2021), rotating the two halves of each head (GPT-NeoX form)."""
  e = x_BxTxHxE.shape[-1]
  inv_freq_E2 = rope_frequencies(e, theta, scaling)
  angle_BxTx1xE2 = (positions_BxT[..., None].astype(jnp.float32) * inv_freq_E2)[:, :, None, :]
  sin, cos = jnp.sin(angle_BxTx1xE2), jnp.cos(angle_BxTx1xE2)
  x1, x2 = jnp.split(x_BxTxHxE.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxTxHxE.dtype)


def sinusoids(positions_BxT, d):
  """Fixed sinusoidal positions (Vaswani et al. 2017, Sec. 3.5): sin on even, cos on odd dims."""
  inv_freq = 10000.0 ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
  angle_BxTxD2 = positions_BxT[..., None].astype(jnp.float32) * inv_freq
  pe = jnp.stack([jnp.sin(angle_BxTxD2), jnp.cos(angle_BxTxD2)], axis=-1)
  return pe.reshape(*positions_BxT.shape, d)


class Attention(Sharded):
  """Causal multi-head attention with MHA / GQA / MQA by `n_kv_heads` (Ainslie et al. 2023)."""

  @nn.compact
  def __call__(self, x_NxD, positions_BxT, segment_ids_BxT, deterministic, in_scale=None,
               kv=None):
    """The attention output (N, D); with a KV cache `kv` (lmjax/infer/decode.py: this layer's keys
    and values and each row's next free slot), (output, the cache with these tokens' keys and
    values written in)."""
    cfg = self.cfg
    (b, t), h, k, e = positions_BxT.shape, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    d, std = cfg.d_model, cfg.init_std * cfg.mup.hidden_std
    heads = (('query', h, 'heads'), ('key', k, 'kv_heads'), ('value', k, 'kv_heads'))
    pdt, dt = jnp.dtype(cfg.param_dtype), jnp.dtype(cfg.dtype)
    # Weights, then biases, in the same order for both forms below (the init's rng follows it).
    ws = [_param(self, name, (d, n, e), ('embed', axis, 'head_dim'), std, pdt).reshape(d, n * e)
          for name, n, axis in heads]
    if in_scale is not None:
      ws = [w * in_scale[:, None] for w in ws]
    biases = [_param(self, name + '_bias', (n, e), (axis, 'head_dim'), 0, pdt).reshape(n * e)
              for name, n, axis in heads] if cfg.use_bias or cfg.qkv_bias else []
    if self.tensor_parallel:
      # Three matmuls: concatenating weights sharded over `tensor` would cost collectives.
      q, kk, v = (matmul(x_NxD, w.astype(dt), platform=cfg.platform, quantize=cfg.quantize)
                  for w in ws)
      if biases:
        q, kk, v = (y + bias.astype(dt) for y, bias in zip((q, kk, v), biases))
    else:
      # One matmul for q, k and v (wider is faster on CPU).
      qkv = matmul(x_NxD, jnp.concatenate(ws, axis=1).astype(dt), platform=cfg.platform,
                   quantize=cfg.quantize)
      if biases:
        qkv = qkv + jnp.concatenate(biases).astype(dt)
      q, kk, v = jnp.split(qkv, [h * e, (h + k) * e], axis=1)
    if cfg.lora_rank:  # low-rank adapters of the targeted projections (lmjax/model/lora.py)
      adapted = [lora_delta(self, x_NxD, name, (d, n, e), ('embed', axis, 'head_dim'),
                            in_scale, deterministic) for name, n, axis in heads]
      q, kk, v = (y if a is None else y + a for y, a in zip((q, kk, v), adapted))
    q_BxTxHxE = checkpoint_name(q.reshape(b, t, h, e), 'query_proj')
    k_BxSxKxE = checkpoint_name(kk.reshape(b, t, k, e), 'key_proj')
    v_BxSxKxE = checkpoint_name(v.reshape(b, t, k, e), 'value_proj')
    heads_axes = lambda name: ('act_batch', 'act_length', name, None)
    q_BxTxHxE = self.constrain(q_BxTxHxE, *heads_axes('act_heads'))
    k_BxSxKxE = self.constrain(k_BxSxKxE, *heads_axes('act_kv_heads'))
    v_BxSxKxE = self.constrain(v_BxSxKxE, *heads_axes('act_kv_heads'))
    if cfg.position == 'rope':
      q_BxTxHxE = rope(q_BxTxHxE, positions_BxT, cfg.rope_theta, cfg.rope_scaling_args)
      k_BxSxKxE = rope(k_BxSxKxE, positions_BxT, cfg.rope_theta, cfg.rope_scaling_args)
    # 1/sqrt(E) (Vaswani et al. 2017); μP's sqrt(E_base)/E (spec.Mup) where E differs from it.
    q_BxTxHxE = q_BxTxHxE * jnp.asarray(e ** -0.5 * cfg.mup.attention, q_BxTxHxE.dtype)
    if self.is_mutable_collection('intermediates'):  # the coordinate check (train/coordcheck.py)
      self.sow('intermediates', 'attention_logits_rms',
               _causal_logits_rms(q_BxTxHxE, k_BxSxKxE, segment_ids_BxT))
    if kv is not None:
      kv = kv.write(k_BxSxKxE, v_BxSxKxE)
      out_BxTxHxE = kv.attend(q_BxTxHxE)
    elif cfg.dropout > 0 and not deterministic:
      out_BxTxHxE = self._dropout_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT)
    else:
      on = cfg.platform or jax.default_backend()  # where the model runs
      out_BxTxHxE = attention.attend(
          q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT,
          attention.resolve_impl(cfg.attention_impl, on), cfg.attention_block, self.mesh, on)
    out_BxTxHxE = checkpoint_name(self.constrain(out_BxTxHxE, *heads_axes('act_heads')),
                                  'attention_out')
    out = _dense(self, out_BxTxHxE.reshape(b * t, h * e), 'out', (h, e, d),
                 ('heads', 'head_dim', 'embed'), cfg.residual_init_std, ('embed',),
                 deterministic=deterministic)
    out = checkpoint_name(out, 'out_proj')
    return out if kv is None else (out, kv)

  def _dropout_attention(self, q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT):
    """Dense attention with dropout on the probabilities (the T×S probabilities exist anyway)."""
    cfg = self.cfg
    (b, t, h, e), k = q_BxTxHxE.shape, k_BxSxKxE.shape[2]
    q_BxKxGxTxE = q_BxTxHxE.reshape(b, t, k, h // k, e).transpose(0, 2, 3, 1, 4)
    logits_BxKxGxTxS = jnp.einsum('bkgte,bske->bkgts', q_BxKxGxTxE, k_BxSxKxE,
                                  preferred_element_type=jnp.float32)
    logits_BxKxGxTxS = jnp.where(dense_mask(t, segment_ids_BxT), logits_BxKxGxTxS,
                                 jnp.finfo(jnp.float32).min)
    probs_BxKxGxTxS = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(cfg.dtype)
    probs_BxKxGxTxS = nn.Dropout(cfg.dropout)(probs_BxKxGxTxS, deterministic=False)
    out_BxKxGxTxE = jnp.einsum('bkgts,bske->bkgte', probs_BxKxGxTxS, v_BxSxKxE)
    return out_BxKxGxTxE.transpose(0, 3, 1, 2, 4).reshape(b, t, h, e)


def _causal_logits_rms(q_BxTxHxE, k_BxSxKxE, segment_ids_BxT):
  """The root mean square of the attention logits the causal (and document) mask keeps."""
  (b, t, h, e), k = q_BxTxHxE.shape, k_BxSxKxE.shape[2]
  q_BxKxGxTxE = q_BxTxHxE.reshape(b, t, k, h // k, e).transpose(0, 2, 3, 1, 4)
  logits_BxKxGxTxS = jnp.einsum('bkgte,bske->bkgts', q_BxKxGxTxE, k_BxSxKxE,
                                preferred_element_type=jnp.float32)
  keep = jnp.broadcast_to(dense_mask(t, segment_ids_BxT), logits_BxKxGxTxS.shape)
  return jnp.sqrt(jnp.sum(jnp.where(keep, logits_BxKxGxTxS ** 2, 0.0)) / jnp.sum(keep))


def _foldable(cfg):
  """Whether pre-norm scales fold into the next matmul's weights (no LayerNorm bias)."""
  return not (cfg.norm == 'layernorm' and cfg.use_bias)


class Block(Sharded):
  """Attention and an MLP, or with `moe` a mixture of experts (lmjax/model/moe.py)."""
  moe: bool = False

  @nn.compact
  def __call__(self, x_NxD, positions_BxT, segment_ids_BxT, deterministic, kv=None):
    """The block's output; with a KV cache `kv`, (output, the updated cache)."""
    cfg = self.cfg
    drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic) if cfg.dropout else y
    module = Attention(cfg, self.mesh, self.rules, name='attn')
    mlp = (MoeMlp(cfg, self.mesh, self.rules, name='mlp') if self.moe else
           Mlp(cfg, self.mesh, self.rules, deterministic=deterministic, name='mlp'))
    new_kv = []
    # Bottleneck adapters on the sublayers' outputs (layers.Adapter): after attention only
    # with Houlsby's placement, after the MLP with both.
    adapt = lambda name: (Adapter(cfg, self.mesh, self.rules, name=name) if cfg.adapter_dim
                          else (lambda y: y))
    after_attn = adapt('attn_adapter') if cfg.adapter_placement == 'houlsby' else (lambda y: y)
    after_mlp = adapt('mlp_adapter')
    if cfg.adapter_dim:
      mlp = lambda *args, mlp=mlp: after_mlp(mlp(*args))

    def attn(*args):
      if kv is None:
        return after_attn(module(*args))
      out, updated = module(*args[:4], *args[4:] or (None,), kv=kv)
      new_kv.append(updated)
      return after_attn(out)

    out = _block_body(cfg, x_NxD, positions_BxT, segment_ids_BxT, deterministic, drop, attn,
                      mlp, self.constrain)
    return out if kv is None else (out, new_kv[0])


def _block_body(cfg, x_NxD, positions_BxT, segment_ids_BxT, deterministic, drop, attn, mlp,
                constrain):
  residual = lambda x: constrain(x, 'act_batch', 'act_embed')
  branch_scale = cfg.mup.residual  # CompleteP's m_L^-α (spec.Mup); 1 under sp
  if branch_scale != 1:
    drop = lambda y, drop=drop: drop(y) * jnp.asarray(branch_scale, y.dtype)
  x_NxD = residual(x_NxD)
  if cfg.norm_position == 'pre' and _foldable(cfg):
    # The norm scales fold into the q/k/v and MLP input weights (Norm's docstring).
    x_hat, scale = Norm(cfg, name='attn_norm')(x_NxD, fold=True)
    x_NxD = residual(x_NxD + drop(attn(x_hat, positions_BxT, segment_ids_BxT, deterministic,
                                       scale)))
    x_hat, scale = Norm(cfg, name='mlp_norm')(x_NxD, fold=True)
    return residual(x_NxD + drop(mlp(x_hat, scale)))
  if cfg.norm_position == 'pre':
    x_NxD = residual(x_NxD + drop(attn(Norm(cfg, name='attn_norm')(x_NxD), positions_BxT,
                                       segment_ids_BxT, deterministic)))
    return residual(x_NxD + drop(mlp(Norm(cfg, name='mlp_norm')(x_NxD))))
  # Post-LN (Vaswani et al. 2017): normalise after each residual addition.
  x_NxD = residual(Norm(cfg, name='attn_norm')(
      x_NxD + drop(attn(x_NxD, positions_BxT, segment_ids_BxT, deterministic))))
  return residual(Norm(cfg, name='mlp_norm')(x_NxD + drop(mlp(x_NxD))))


def _block_class(cfg):
  """Block, wrapped to recompute its activations in the backward pass (Chen et al. 2016) by the
  named policy `cfg.remat` (lmjax/model/remat.py)."""
  if cfg.remat == 'none':
    return Block
  return nn.remat(Block, static_argnums=(4,), policy=remat.policy(cfg.remat))


class _ScannedBlock(Sharded):
  """A block in nn.scan's (carry, output) form; `deterministic` is an attribute (static). With
  a KV cache, the layer's cache is scanned in and its update scanned out."""
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_NxD, positions_BxT, segment_ids_BxT, kv=None):
    block = _block_class(self.cfg)(self.cfg, self.mesh, self.rules,
                                   moe=self.cfg.moe_layer(0), name='block')
    if kv is None:
      return block(x_NxD, positions_BxT, segment_ids_BxT, self.deterministic), None
    return block(x_NxD, positions_BxT, segment_ids_BxT, self.deterministic, kv)


class Transformer(Sharded):
  """tokens (B, T) -> float32 logits (B, T, V); with `return_head`, what the loss needs to form
  them chunk by chunk instead (lmjax/train/loss.py): the final features (N, D), the output weights
  (D, V) in the compute dtype and the output bias (V,) or None.

  `positions` restart at document starts and `segment_ids` keep attention inside a document
  when sequences pack several documents; both default to a single document per row.

  With a KV cache `kv` (lmjax/infer/kv_cache.py), the tokens continue each row of the cache, at
  positions index .. index + T - 1 (one document per row), and the call returns (logits, the
  cache with them added): decoding (lmjax/infer/decode.py).
  """

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT=None, segment_ids_BxT=None,
               deterministic=True, return_head=False, kv=None):
    cfg = self.cfg
    b, t = tokens_BxT.shape
    d, v, pdt = cfg.d_model, cfg.vocab_size, jnp.dtype(cfg.param_dtype)
    if kv is not None:  # decoding (lmjax/infer/kv_cache.py): the tokens continue each row's cache
      positions_BxT = kv.index[:, None] + jnp.arange(t)
      segment_ids_BxT, deterministic = None, True
    if positions_BxT is None:
      positions_BxT = jnp.broadcast_to(jnp.arange(t), (b, t))
    embed_VxD = _param(self, 'embed', (v, d), ('vocab', 'embed'), cfg.init_std, pdt)
    x_NxD = jnp.take(embed_VxD, tokens_BxT.reshape(-1), axis=0).astype(cfg.dtype)
    if cfg.position == 'sinusoidal':
      # Vaswani et al. 2017, Sec. 3.4: embeddings are scaled by sqrt(d_model).
      x_NxD = x_NxD * (math.sqrt(d) * cfg.mup.embedding) + sinusoids(positions_BxT, d).reshape(b * t, d).astype(
          cfg.dtype)
    elif cfg.position == 'learned':
      pos_TxD = _param(self, 'pos_embed', (cfg.max_seq_len, d), (None, 'embed'), cfg.init_std,
                       pdt)
      x_NxD = x_NxD + jnp.take(pos_TxD, positions_BxT.reshape(-1), axis=0).astype(cfg.dtype)
    if cfg.dropout:
      x_NxD = nn.Dropout(cfg.dropout)(x_NxD, deterministic=deterministic)
    if self.is_mutable_collection('intermediates'):  # the coordinate check (train/coordcheck.py)
      self.sow('intermediates', 'embedding_rms', jnp.sqrt(jnp.mean(
          x_NxD.astype(jnp.float32) ** 2)))
    if cfg.scan_layers:
      # One traced block scanned over stacked parameters (a leading `layers` axis): compile
      # time stays flat in depth; the arithmetic is that of the unrolled loop.
      scanned = nn.scan(_ScannedBlock, variable_axes={'params': 0, 'moe': 0},
                        split_rngs={'params': True, 'dropout': True},
                        in_axes=(nn.broadcast, nn.broadcast, 0), length=cfg.n_layers,
                        metadata_params={nn.PARTITION_NAME: 'layers'})
      x_NxD, layers = scanned(cfg, self.mesh, self.rules, deterministic, name='blocks')(
          x_NxD, positions_BxT, segment_ids_BxT, None if kv is None else kv.stacked())
    else:
      block, layers = _block_class(cfg), []
      for i in range(cfg.n_layers):
        x_NxD = block(cfg, self.mesh, self.rules, moe=cfg.moe_layer(i), name=f'block_{i}')(
            x_NxD, positions_BxT, segment_ids_BxT, deterministic,
            *(() if kv is None else (kv.layer(i),)))
        if kv is not None:
          x_NxD, layer = x_NxD
          layers.append(layer)
    scale = None
    if cfg.norm_position == 'pre' and _foldable(cfg):
      x_NxD, scale = Norm(cfg, name='final_norm')(x_NxD, fold=True)
    elif cfg.norm_position == 'pre':
      x_NxD = Norm(cfg, name='final_norm')(x_NxD)
    if cfg.tie_embeddings:
      w_DxV = embed_VxD.T
    else:
      w_DxV = _param(self, 'unembed', (d, v), ('embed', 'vocab'), cfg.init_std, pdt)
    if scale is not None:
      w_DxV = w_DxV * scale[:, None]
    if cfg.mup.logits != 1:  # μP's output multiplier base_width / width (spec.Mup)
      w_DxV = w_DxV * jnp.asarray(cfg.mup.logits, w_DxV.dtype)
    bias_V = None
    if cfg.use_bias and not cfg.tie_embeddings:
      bias_V = _param(self, 'unembed_bias', (v,), ('vocab',), 0, pdt).astype(jnp.float32)
    if return_head:
      return x_NxD, w_DxV.astype(cfg.dtype), bias_V
    logits_NxV = matmul(x_NxD, w_DxV.astype(cfg.dtype), jnp.float32, cfg.platform)
    if bias_V is not None:
      logits_NxV = logits_NxV + bias_V
    logits_NxV = self.constrain(logits_NxV, 'act_batch', 'act_vocab')
    if kv is not None:
      return logits_NxV.reshape(b, t, v), kv.advanced(layers, t)
    return logits_NxV.reshape(b, t, v)
