"""Causal attention by kernel (`config.model.attention_impl`), fed packed documents as segment ids.

Shapes: B batch, T queries, S keys (S = T), H query heads, K kv heads (GQA/MQA when K < H),
G = H / K, E head_dim. `attend` takes q (B, T, H, E), already scaled by E^-1/2, k and v
(B, S, K, E) and `segment_ids` (B, T) int or None, and returns (B, T, H, E). A query attends to
the keys at or before it with its segment id. No kernel here is handed a T×S mask:

- `blocked`: lmjax/model/blocked_attention.py, XLA ops tuned for XLA:CPU (the CPU default).
- `xla`: `jax.nn.dot_product_attention(implementation='xla')`, with `is_causal` and, for packed
  documents, a (B, 1, T, S) boolean mask: XLA's reference path, which forms the T×S logits anyway.
- `cudnn`: cuDNN's fused flash attention (GPU, bfloat16/float16, head_dim <= 128, a multiple of
  8). Without documents it is `jax.nn.dot_product_attention(implementation='cudnn',
  is_causal=True)`. That public call has no segment ids: packed documents go through the cuDNN
  call jax builds it on (`jax._src.cudnn.fused_attention_stablehlo.dot_product_attention`) in
  its packed-sequence form, a causal mask plus per-document offsets and lengths
  (`cudnn_segments`), so cuDNN keeps its causal fast path. That module is jax-private.
- `splash`: `jax.experimental.pallas.ops.tpu.splash_attention` (TPU) with a causal mask and
  `SegmentIds`, vmapped over the batch, under `shard_map` over the mesh (batch over data × fsdp,
  heads over tensor) when there is one. T must be a multiple of 128 (its lane width).
- `pallas_gpu`: `jax.experimental.pallas.ops.gpu.attention.mha` (Triton) with `segment_ids`;
  it has no GQA, so k and v are repeated to H heads first.
- `auto`: cudnn on GPU, splash on TPU, blocked elsewhere.
The Pallas kernels run in interpret mode on CPU (tests).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.config import ConfigError
from lmjax.model import blocked_attention

IMPLS = ('auto', 'blocked', 'xla', 'cudnn', 'splash', 'pallas_gpu')
AUTO = {'gpu': 'cudnn', 'tpu': 'splash'}
# Where each kernel runs; on CPU the Pallas kernels run in interpret mode (slow; for tests).
PLATFORMS = {'blocked': ('cpu', 'gpu', 'tpu'), 'xla': ('cpu', 'gpu', 'tpu'), 'cudnn': ('gpu',),
             'splash': ('tpu', 'cpu'), 'pallas_gpu': ('gpu', 'cpu')}
SPLASH_BLOCK = 512
PALLAS_GPU_BLOCKS = (128, 64, 32)


def resolve_impl(impl: str, platform: str) -> str:
  return AUTO.get(platform, 'blocked') if impl == 'auto' else impl


def check(model_config, seq_len: int, platform: str) -> str:
  """The kernel `model.attention_impl` names on `platform`; raises ConfigError, naming the field,
  for a choice the platform or the shapes cannot run."""
  m = model_config
  impl = resolve_impl(m.attention_impl, platform)
  field = f'config.model.attention_impl={m.attention_impl}'
  what = f' ({impl})' if impl != m.attention_impl else ''

  def refuse(why):
    raise ConfigError(f'{field}{what} is not allowed: {why}')
  if impl not in IMPLS:
    refuse(f'one of {", ".join(IMPLS)}')
  if platform not in PLATFORMS[impl]:
    refuse(f'it runs on {" or ".join(PLATFORMS[impl])}, not on {platform}')
  head_dim = getattr(m, 'head_dim', 0) or m.d_model // m.n_heads
  if m.dropout > 0 and impl not in ('blocked', 'xla'):
    refuse(f'model.dropout={m.dropout} needs attention dropout, which only blocked and xla have')
  if impl == 'cudnn':
    if m.dtype not in ('bfloat16', 'float16'):
      refuse(f'cuDNN attention needs model.dtype bfloat16 or float16, not {m.dtype}')
    if head_dim > 128 or head_dim % 8:
      refuse(f'cuDNN attention needs a head_dim <= 128 and a multiple of 8, not {head_dim}')
  if impl == 'splash' and seq_len % 128:
    refuse(f'splash attention needs data.seq_len a multiple of 128, not {seq_len}')
  if impl == 'pallas_gpu' and seq_len % PALLAS_GPU_BLOCKS[-1]:
    refuse(f'Pallas GPU attention needs data.seq_len a multiple of {PALLAS_GPU_BLOCKS[-1]}, '
           f'not {seq_len}')
  return impl


def attend(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, impl, block=64, mesh=None,
           platform='cpu'):
  """Causal attention by the resolved kernel `impl` (see the module docstring)."""
  interpret = platform == 'cpu'
  if impl == 'blocked':
    return _blocked(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, block)
  if impl == 'xla':
    return _xla(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT)
  if impl == 'cudnn':
    return _cudnn(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT)
  if impl == 'splash':
    return _splash(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, mesh, interpret)
  if impl == 'pallas_gpu':
    return _pallas_gpu(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, interpret)
  raise ValueError(f'attention impl {impl!r}: one of {", ".join(IMPLS[1:])}')


def _blocked(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, block):
  b, t, h, e = q_BxTxHxE.shape
  k = k_BxSxKxE.shape[2]
  q_BxKxGxTxE = q_BxTxHxE.reshape(b, t, k, h // k, e).transpose(0, 2, 3, 1, 4)
  out_BxKxGxTxE = blocked_attention.attention(
      q_BxKxGxTxE, k_BxSxKxE.transpose(0, 2, 1, 3), v_BxSxKxE.transpose(0, 2, 1, 3),
      segment_ids_BxT, block)
  return out_BxKxGxTxE.transpose(0, 3, 1, 2, 4).reshape(b, t, h, e)


def _xla(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT):
  mask = None
  if segment_ids_BxT is not None:
    mask = segment_ids_BxT[:, None, :, None] == segment_ids_BxT[:, None, None, :]
  return jax.nn.dot_product_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask=mask, scale=1.0,
                                      is_causal=True, implementation='xla')


def cudnn_segments(segment_ids_BxT):
  """cuDNN's packed-sequence description of the documents of each row: (lengths (B, M), offsets
  (B, M+1)) with M = T (a row holds at most T documents), -1 past the last document. Documents
  are the maximal runs of equal ids, so ids must not repeat after a different one."""
  b, t = segment_ids_BxT.shape
  starts_BxT = jnp.concatenate([jnp.ones((b, 1), bool),
                                segment_ids_BxT[:, 1:] != segment_ids_BxT[:, :-1]], axis=1)
  count_B = starts_BxT.sum(1)
  # Positions of the starts in order, then T (the end) for every slot past the last document.
  order_BxT = jnp.argsort(~starts_BxT, axis=1, stable=True)
  slot_BxT = jnp.arange(t)[None]
  starts = jnp.where(slot_BxT < count_B[:, None], order_BxT, t)
  ends = jnp.concatenate([starts[:, 1:], jnp.full((b, 1), t)], axis=1)
  lengths = jnp.where(slot_BxT < count_B[:, None], ends - starts, -1)
  offsets = jnp.concatenate([starts, jnp.full((b, 1), t)], axis=1)
  offsets = jnp.where(jnp.arange(t + 1)[None] <= count_B[:, None], offsets, -1)
  return lengths.astype(jnp.int32), offsets.astype(jnp.int32)


def _cudnn(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT):
  if segment_ids_BxT is None:
    return jax.nn.dot_product_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, scale=1.0,
                                        is_causal=True, implementation='cudnn')
  from jax._src.cudnn import fused_attention_stablehlo as cudnn
  lengths, offsets = cudnn_segments(segment_ids_BxT)
  return cudnn.dot_product_attention(
      q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, q_seqlen=lengths, kv_seqlen=lengths, q_offsets=offsets,
      kv_offsets=offsets, scale=1.0, mask_type=cudnn.MaskType.CAUSAL, qkv_layout='BTNH')


def _splash_kernel(heads, t, head_shards, interpret):
  from jax.experimental.pallas.ops.tpu import splash_attention as sa
  block = min(SPLASH_BLOCK, t)
  sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                        block_q_dq=block, block_kv_dq=block)
  mask = sa.MultiHeadMask([sa.CausalMask((t, t)) for _ in range(heads)])
  # Built in each trace: the kernel holds its mask tables as arrays of the trace it was made in.
  return sa.make_splash_mha(mask, block_sizes=sizes, head_shards=head_shards, q_seq_shards=1,
                            interpret=interpret)


def _splash(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, mesh, interpret):
  from jax.experimental.pallas.ops.tpu import splash_attention as sa
  b, t = q_BxTxHxE.shape[:2]
  if segment_ids_BxT is None:
    segment_ids_BxT = jnp.zeros((b, t), jnp.int32)

  def local(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, seg_BxT):
    kernel = _splash_kernel(q_BxTxHxE.shape[2], t, 1, interpret)  # heads here are local
    heads_first = lambda x: x.transpose(0, 2, 1, 3)
    out_BxHxTxE = jax.vmap(kernel)(heads_first(q_BxTxHxE), heads_first(k_BxSxKxE),
                                   heads_first(v_BxSxKxE), segment_ids=sa.SegmentIds(seg_BxT,
                                                                                     seg_BxT))
    return heads_first(out_BxHxTxE)

  if mesh is None or mesh.size == 1:
    return local(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT)
  from jax.sharding import PartitionSpec as P
  heads, batch = P(('data', 'fsdp'), None, 'tensor', None), P(('data', 'fsdp'), None)
  return jax.shard_map(local, mesh=mesh, in_specs=(heads, heads, heads, batch),
                       out_specs=heads, check_vma=False)(
                           q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT)


def _pallas_gpu(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, interpret):
  from jax.experimental.pallas.ops.gpu import attention as gpu
  t, h, k = q_BxTxHxE.shape[1], q_BxTxHxE.shape[2], k_BxSxKxE.shape[2]
  if k != h:
    k_BxSxKxE = jnp.repeat(k_BxSxKxE, h // k, axis=2)
    v_BxSxKxE = jnp.repeat(v_BxSxKxE, h // k, axis=2)
  fwd = next(s for s in PALLAS_GPU_BLOCKS if t % s == 0)
  bwd = PALLAS_GPU_BLOCKS[-1]
  sizes = gpu.BlockSizes(block_q=fwd, block_k=fwd, block_q_dkv=bwd, block_kv_dkv=bwd,
                         block_q_dq=bwd, block_kv_dq=bwd)
  return gpu.mha(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, sm_scale=1.0, causal=True,
                 block_sizes=sizes, interpret=interpret)


def reference(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT=None):
  """Dense softmax attention through autodiff, the mask as a T×S array (tests)."""
  b, t, h, e = q_BxTxHxE.shape
  k = k_BxSxKxE.shape[2]
  q_BxKxGxTxE = q_BxTxHxE.reshape(b, t, k, h // k, e).transpose(0, 2, 3, 1, 4)
  out_BxKxGxTxE = blocked_attention.reference_attention(
      q_BxKxGxTxE, k_BxSxKxE.transpose(0, 2, 1, 3), v_BxSxKxE.transpose(0, 2, 1, 3),
      segment_ids_BxT)
  return out_BxKxGxTxE.transpose(0, 3, 1, 2, 4).reshape(b, t, h, e)
