"""Parameter and FLOP accounting from a ModelConfig; pure functions.

Definitions:
- `param_counts(cfg).N` is exactly the size of the initialised parameter pytree: every
  parameter. These two names are lmjax's one vocabulary of parameter counts, from here to
  summary.json, the runs table (runs.csv) and lmjax.analysis's DataFrames.
- `N_no_emb` follows Kaplan et al. 2020 (Sec. 2.1): all parameters except the vocabulary and
  positional embeddings; an untied output projection is a vocabulary matrix too and is excluded.
- `kaplan_approx` is N ≈ 12·n_layers·d_model² (Kaplan et al. 2020, Eq. 2.1, d_attn = d_model,
  d_ff = 4·d_model).
- A mixture of experts (lmjax/model/moe.py) has `N` (every parameter) and `N_active` (those one
  token uses: the router, top_k of the E experts, the shared experts); FLOPs per token count the
  active ones, so a sweep's C is active compute. Dense models have N_active = N.
- Training FLOPs per token: `kaplan_flops_per_token` = 6N + 12·n_layers·d_model·T (Kaplan et al.
  2020, Sec. 2.1; N non-embedding), and `exact_flops_per_token`, which counts every matmul of the
  forward pass at 2 FLOPs per multiply-add (QKV, attention scores, attention-weighted values,
  output projection, MLP, output logits), times 3 for forward + backward. Elementwise work (norms,
  softmax, activations, the optimizer) is not counted, as is usual for MFU (Chowdhery et al. 2022,
  App. B). Attention is counted over the full T×T score matrix by default (as in 6N + 12·L·d·T,
  PaLM's and Levanter's MFU; the sweeps' compute C = D · this count); `attention='causal'` counts
  only the pairs the causal mask keeps, average context (T+1)/2 (Megatron-LM's and MaxText's MFU;
  the `mfu` that launch.train and launch.bench log), and `attention='computed'` what the blocked
  kernel of lmjax/model/blocked_attention.py actually runs.
- Peak FLOP/s: `PEAKS`, dense bf16 per accelerator; on CPU a measured float32 matmul.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import time
from typing import NamedTuple

import numpy as np

from lmjax.config import GATED
from lmjax.model.spec import ModelConfig


class ParamCounts(NamedTuple):
  N: int              # every parameter
  N_no_emb: int       # without the vocabulary and positional embeddings (Kaplan et al. 2020)
  embedding: int      # the input embedding
  position: int       # learned positions
  unembedding: int    # an untied output projection and its bias
  kaplan_approx: int  # 12·n_layers·d_model²
  N_active: int       # the parameters one token uses: N less the experts it is not routed to
  N_active_no_emb: int  # ... without embeddings


def _mlp_params(cfg: ModelConfig, width: int) -> int:
  """One MLP (or expert) of hidden `width`: its matrices and biases."""
  n_in = 2 if cfg.activation in GATED else 1
  return (n_in + 1) * cfg.d_model * width + (cfg.use_bias and n_in * width + cfg.d_model)


def moe_layer_params(cfg: ModelConfig) -> tuple[int, int]:
  """(every parameter, the active ones) of a mixture-of-experts layer's MLP: the router (and
  deepseek's bias), E experts of which top_k are active, the shared experts."""
  router = cfg.d_model * cfg.moe_experts + (cfg.moe_router == 'deepseek' and cfg.moe_experts)
  expert = _mlp_params(cfg, cfg.moe_d_ff)
  shared = _mlp_params(cfg, cfg.moe_shared_experts * cfg.moe_d_ff) if (
      cfg.moe_shared_experts) else 0
  return (router + cfg.moe_experts * expert + shared,
          router + cfg.moe_top_k * expert + shared)


def param_counts(cfg: ModelConfig) -> ParamCounts:
  d, f, v, h, k, e = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.n_heads, cfg.n_kv_heads,
                      cfg.head_dim)
  bias = cfg.use_bias
  attn = (d * (h + 2 * k) * e + h * e * d + ((bias or cfg.qkv_bias) and (h + 2 * k) * e)
          + (bias and d))
  mlp = _mlp_params(cfg, f)
  norm = d * (2 if (cfg.norm == 'layernorm' and bias) else 1)
  n_moe = cfg.moe_layers
  moe_total, moe_active = moe_layer_params(cfg) if n_moe else (0, 0)
  dense_layers = (cfg.n_layers - n_moe) * (attn + mlp + 2 * norm)
  final_norm = norm if cfg.norm_position == 'pre' else 0
  embed = v * d
  pos = cfg.max_seq_len * d if cfg.position == 'learned' else 0
  unembed = 0 if cfg.tie_embeddings else d * v + (v if bias else 0)
  no_emb = dense_layers + n_moe * (attn + moe_total + 2 * norm) + final_norm
  active_no_emb = no_emb - n_moe * (moe_total - moe_active)
  emb = embed + pos + unembed
  return ParamCounts(N=no_emb + emb, N_no_emb=no_emb, embedding=embed,
                     position=pos, unembedding=unembed, kaplan_approx=12 * cfg.n_layers * d * d,
                     N_active=active_no_emb + emb, N_active_no_emb=active_no_emb)


def kaplan_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """6N + 12·n_layers·d_model·T training FLOPs per token (Kaplan et al. 2020, Sec. 2.1), N the
  active non-embedding parameters (all of them for a dense model)."""
  return 6 * param_counts(cfg).N_active_no_emb + 12 * cfg.n_layers * cfg.d_model * seq_len


def attention_context(cfg: ModelConfig, seq_len: int, attention='dense') -> float:
  """Keys per query that the attention matmuls cover, on average.

  dense: all T (the convention of Kaplan et al. and of PaLM's MFU, Chowdhery et al. 2022);
  causal: (T+1)/2, the pairs the causal mask keeps; computed: what lmjax's blocked kernel runs,
  T·(n+1)/(2n) for n query blocks (lmjax/model/blocked_attention.py).
  """
  if attention == 'dense':
    return seq_len
  if attention == 'causal':
    return (seq_len + 1) / 2
  if attention == 'computed':
    block = cfg.attention_block
    n = seq_len // block if block and block < seq_len and seq_len % block == 0 else 1
    return seq_len * (n + 1) / (2 * n)
  raise ValueError(f'attention={attention!r}: one of dense, causal, computed')


def forward_matmul_flops_per_token(cfg: ModelConfig, seq_len: int, attention='dense') -> float:
  d, f, v, h, k, e = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.n_heads, cfg.n_kv_heads,
                      cfg.head_dim)
  qkv_out = 2 * d * (h + 2 * k) * e + 2 * h * e * d
  scores_values = 2 * 2 * h * e * attention_context(cfg, seq_len, attention)
  matrices = 3 if cfg.activation in GATED else 2
  mlp = 2 * d * f * matrices
  n_moe = cfg.moe_layers
  # A MoE layer: the router, top_k experts and the shared experts per token.
  moe = 2 * d * cfg.moe_experts + 2 * d * cfg.moe_d_ff * matrices * (
      cfg.moe_top_k + cfg.moe_shared_experts)
  return (cfg.n_layers * (qkv_out + scores_values) + (cfg.n_layers - n_moe) * mlp
          + n_moe * moe + 2 * d * v)


def exact_flops_per_token(cfg: ModelConfig, seq_len: int, attention='dense') -> float:
  """Training matmul FLOPs per token: 3 × forward (backward = 2 × forward)."""
  return 3 * forward_matmul_flops_per_token(cfg, seq_len, attention)


class Peak(NamedTuple):
  name: str
  pattern: str      # a regular expression over the lowercased jax Device.device_kind
  flops: float      # dense bfloat16 FLOP/s (no structured sparsity)


# Dense bfloat16 peak FLOP/s per device, from the vendors' data sheets (their sparsity figures
# halved where only those are given). Matched in order against `Device.device_kind` as JAX
# reports it: CUDA's device name for NVIDIA GPUs ('NVIDIA H100 80GB HBM3', 'NVIDIA A100-SXM4-
# 40GB'), and for TPUs the names libtpu gives ('TPU v4', 'TPU v5 lite' for v5e, 'TPU v5' for
# v5p, 'TPU v6 lite' for v6e; the TPU names read off libtpu 0.0.52 here).
PEAKS = (
    # NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 (SXM) / 1,671 (NVL) / 1,513 (PCIe)
    # TFLOPS with sparsity.
    Peak('H100 PCIe', r'\bh100\b.*\bpcie\b', 756e12),
    Peak('H100 NVL', r'\bh100\b.*\bnvl\b', 835e12),
    Peak('H100 SXM', r'\bh100\b', 989e12),
    # NVIDIA H200 datasheet: BF16 1,979 (SXM) / 1,671 (NVL) TFLOPS with sparsity.
    Peak('H200 NVL', r'\bh200\b.*\bnvl\b', 835e12),
    Peak('H200 SXM', r'\bh200\b', 989e12),
    # NVIDIA HGX B200 datasheet: FP16/BF16 36 PFLOPS with sparsity for 8 GPUs, 2.25 dense each.
    Peak('B200', r'\bb200\b', 2250e12),
    # NVIDIA A100 datasheet: BF16 312 TFLOPS dense, 40 GB and 80 GB, SXM4 and PCIe alike.
    Peak('A100', r'\ba100\b', 312e12),
    # NVIDIA L4 datasheet: BF16 242 TFLOPS with sparsity (\b keeps the L40 and L40S out).
    Peak('L4', r'\bl4\b', 121e12),
    # Google Cloud TPU system architecture pages, "peak compute per chip (bf16)"; one JAX device
    # per chip (v4 and v5p megacore).
    Peak('TPU v4', r'^tpu v4\b', 275e12),
    Peak('TPU v5e', r'^tpu v5 ?(lite|e)\b', 197e12),
    Peak('TPU v5p', r'^tpu v5p?$', 459e12),
    Peak('TPU v6e', r'^tpu v6 ?(lite|e)\b', 918e12),
)


def table_peak(device_kind: str) -> Peak | None:
  """The first entry of PEAKS whose pattern matches `device_kind`, or None."""
  kind = device_kind.strip().lower()
  return next((p for p in PEAKS if re.search(p.pattern, kind)), None)


def _peak_cache_path():
  root = os.environ.get('LMJAX_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache',
                                                          'lmjax')
  return os.path.join(root, 'cpu_peak.json')


def _cpu_key(n, reps) -> str:
  import jax
  model = ''
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo') as f:
      model = next((line.split(':', 1)[1].strip() for line in f
                    if line.startswith('model name')), '')
  return (f'{model or platform.processor()}|{os.cpu_count()} cpus|jax {jax.__version__}|'
          f'{os.environ.get("XLA_FLAGS", "")}|n {n} reps {reps}')


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 2048, reps: int = 5) -> float:
  """Best FLOP/s of an n×n float32 matmul on the default device (used as the CPU peak), measured
  once per machine (CPU model and count, jax version, XLA flags) and kept in
  $LMJAX_CACHE_DIR/cpu_peak.json (default ~/.cache/lmjax/): the runs of a sweep share one MFU
  denominator, and a run does not spend a second or two measuring it (delete the file to
  measure again)."""
  path, key = _peak_cache_path(), _cpu_key(n, reps)
  with contextlib.suppress(OSError, ValueError):
    with open(path) as f:
      cached = json.load(f).get(key)
    if isinstance(cached, (int, float)) and cached > 0:
      return float(cached)
  peak = _measure_matmul(n, reps)
  with contextlib.suppress(OSError, ValueError):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
      with open(path) as f:
        table = json.load(f)
    except (OSError, ValueError):
      table = {}
    table[key] = peak
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(table, f, indent=1)
    os.replace(tmp, path)
  return peak


def _measure_matmul(n, reps) -> float:
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  best = float('inf')
  for _ in range(reps):
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def peak_flops_per_device(device_kind: str, platform: str,
                          configured=None) -> tuple[float | None, str]:
  """(FLOP/s, where it came from): the config value, the table above, or on CPU a measured
  float32 matmul; (None, why) for an accelerator the table does not know, so MFU is unavailable
  and training goes on."""
  if configured:
    return float(configured), 'config'
  peak = table_peak(device_kind)
  if peak:
    return peak.flops, f'table ({peak.name})'
  if platform == 'cpu':
    return measured_matmul_peak(), 'measured fp32 matmul'
  return None, (f'unknown device kind {device_kind!r}: MFU unavailable; set '
                'config.train.peak_flops to its dense bf16 FLOP/s')


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops: float | None,
        n_devices=1) -> float | None:
  """Model FLOPs utilisation: achieved FLOP/s ÷ peak FLOP/s (Chowdhery et al. 2022, App. B);
  None when the peak is unknown."""
  if not peak_flops:
    return None
  return flops_per_token * tokens_per_s / (peak_flops * n_devices)


class ConfigCounts(NamedTuple):
  """What a resolved config measures: the one computation of counts of a config, for the
  sweeps' plans, a run's banner and summary, memory planning and lmjax.analysis. FLOPs are the
  active ones (a token's top_k experts), so C = D · flops_per_token is active compute."""
  N: int                        # every parameter
  N_no_emb: int                 # without embeddings (Kaplan et al. 2020, Sec. 2.1)
  flops_per_token: float        # training FLOPs per token at data.seq_len, attention dense
  flops_per_token_causal: float  # ... attention over the pairs the causal mask keeps (MFU's)
  N_active: int                 # the parameters a token uses (N for a dense model)
  N_active_no_emb: int


def config_counts(config) -> ConfigCounts:
  """The counts of a resolved config: a ConfigDict, or a run's config.json as a dict."""
  model, seq_len = ModelConfig.from_config(config['model']), config['data']['seq_len']
  counts = param_counts(model)
  return ConfigCounts(counts.N, counts.N_no_emb, exact_flops_per_token(model, seq_len),
                      exact_flops_per_token(model, seq_len, attention='causal'),
                      counts.N_active, counts.N_active_no_emb)


def count_tree(tree) -> int:
  import jax
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
