"""Every attention kernel against dense softmax attention with packed documents, GQA and MQA
(the Pallas kernels in interpret mode on CPU); the accelerator programs hold no T×S array; and
a kernel the platform or the shapes cannot run is refused at start-up."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ConfigError, default_config, resolve
from lmjax.model import attention


def _inputs(t, h, k, dtype, b=2, e=64, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(keys[0], (b, t, h, e)) * e ** -0.5
  kk, v = (jax.random.normal(keys[i], (b, t, k, e)) for i in (1, 2))
  do = jax.random.normal(keys[3], (b, t, h, e))
  return [x.astype(dtype) for x in (q, kk, v, do)]


def _segments(t):
  """Row 0 packs three documents (the last one long), row 1 holds one."""
  a, b = t // 5, t // 3
  return jnp.array([[1] * a + [2] * b + [3] * (t - a - b), [7] * t], jnp.int32)


F32, BF16 = (jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)
HEADS = {'GQA': (4, 2), 'MQA': (4, 1), 'MHA': (4, 4)}
slow = lambda *case: pytest.param(*case, marks=pytest.mark.slow)
# (impl, T, heads, precision). The blocked kernel is checked more closely, and at shorter T, in
# tests/test_blocked_attention.py; the Pallas kernels run in (slow) interpret mode here.
CASES = [('blocked', 512, 'GQA', F32), ('blocked', 512, 'GQA', BF16), ('xla', 128, 'GQA', F32),
         slow('blocked', 256, 'MQA', F32), slow('blocked', 512, 'MHA', BF16),
         slow('xla', 128, 'MQA', BF16), slow('xla', 128, 'MHA', F32),
         *(slow(impl, 128, heads, precision) for impl in ('splash', 'pallas_gpu')
           for heads, precision in (('GQA', F32), ('MQA', F32), ('GQA', BF16)))]


@pytest.mark.parametrize('impl, t, heads, precision', CASES)
def test_kernel_equals_dense_attention_and_its_gradients(impl, t, heads, precision):
  (heads, kv_heads), (dtype, tol) = HEADS[heads], precision
  q, k, v, do = _inputs(t, heads, kv_heads, dtype)
  seg = _segments(t)
  ours, vjp = jax.vjp(lambda q, k, v: attention.attend(q, k, v, seg, impl, 64), q, k, v)
  f32 = [x.astype(jnp.float32) for x in (q, k, v, do)]
  ref, ref_vjp = jax.vjp(lambda q, k, v: attention.reference(q, k, v, seg), *f32[:3])
  assert ours.dtype == dtype
  # Relative to the largest magnitude of each output: 1e-5 in float32, 2e-2 in bfloat16.
  for a, b in zip((ours, *vjp(do)), (ref, *ref_vjp(f32[3]))):
    scale = float(jnp.abs(b).max())
    np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=tol, atol=tol * scale)


def test_cudnn_segments_describe_each_document_by_offset_and_length():
  seg = jnp.array([[4, 4, 4, 9, 9, 2, 2, 2], [0] * 8, [1, 2, 3, 4, 5, 6, 7, 8]])
  lengths, offsets = map(np.asarray, attention.cudnn_segments(seg))
  assert lengths.shape == (3, 8) and offsets.shape == (3, 9)
  np.testing.assert_array_equal(lengths[0], [3, 2, 3, -1, -1, -1, -1, -1])
  np.testing.assert_array_equal(offsets[0], [0, 3, 5, 8, -1, -1, -1, -1, -1])
  np.testing.assert_array_equal(lengths[1], [8] + [-1] * 7)
  np.testing.assert_array_equal(offsets[1], [0, 8] + [-1] * 7)
  np.testing.assert_array_equal(lengths[2], [1] * 8)
  np.testing.assert_array_equal(offsets[2], list(range(9)))


def _tensor_shapes(mlir_text):
  return [tuple(map(int, s.split('x')))
          for s in re.findall(r'tensor<((?:\d+x)+)(?:f32|bf16|f16|i1|i8|i32)>', mlir_text)
          for s in [s.rstrip('x')]]


@pytest.mark.slow
@pytest.mark.parametrize('impl, platform', [('splash', 'tpu'), ('pallas_gpu', 'cuda')])
def test_accelerator_programs_hold_no_t_by_s_array(impl, platform):
  t = 1024
  q = jax.ShapeDtypeStruct((2, t, 4, 64), jnp.bfloat16)
  kv = jax.ShapeDtypeStruct((2, t, 2, 64), jnp.bfloat16)
  seg = jax.ShapeDtypeStruct((2, t), jnp.int32)
  on = 'gpu' if platform == 'cuda' else platform
  grads = lambda q, k, v, s: jax.grad(
      lambda *a: attention.attend(*a, s, impl, platform=on).astype(jnp.float32).sum(),
      (0, 1, 2))(q, k, v)
  exported = jax.export.export(
      jax.jit(grads), platforms=[platform],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call('__gpu$xla.gpu.triton')])(
          q, kv, kv, seg)
  text = exported.mlir_module()
  assert 'custom_call' in text  # the kernel, not an XLA fallback
  shapes = _tensor_shapes(text)
  assert shapes and not [s for s in shapes if s.count(t) >= 2]


def _config(impl, **model):
  c = default_config()
  c.data.dataset = 'random'
  c.data.seq_len = model.pop('seq_len', 128)
  c.model.max_seq_len = c.data.seq_len
  c.model.attention_impl = impl
  c.model.update(model)
  return resolve(c)


@pytest.mark.parametrize('impl, platform, kw, message', [
    ('cudnn', 'cpu', {}, 'cudnn is not allowed: it runs on gpu, not on cpu'),
    ('cudnn', 'gpu', {}, 'needs model.dtype bfloat16 or float16, not float32'),
    ('cudnn', 'gpu', dict(dtype='bfloat16', d_model=640, n_heads=2),
     'needs a head_dim <= 128 and a multiple of 8, not 320'),
    ('splash', 'gpu', {}, 'splash is not allowed: it runs on tpu or cpu, not on gpu'),
    ('splash', 'tpu', dict(seq_len=200), 'needs data.seq_len a multiple of 128, not 200'),
    ('auto', 'tpu', dict(seq_len=200), 'attention_impl=auto (splash) is not allowed'),
    ('pallas_gpu', 'tpu', {}, 'it runs on gpu or cpu, not on tpu'),
    ('pallas_gpu', 'gpu', dict(seq_len=100), 'a multiple of 32, not 100'),
    ('splash', 'tpu', dict(dropout=0.1), 'model.dropout=0.1 needs attention dropout'),
])
def test_a_kernel_the_platform_or_shape_cannot_run_is_refused(impl, platform, kw, message):
  with pytest.raises(ConfigError, match=re.escape(message)) as e:
    attention.check(_config(impl, **kw).model, _config(impl, **kw).data.seq_len, platform)
  assert str(e.value).startswith('config.model.attention_impl=') and '\n' not in str(e.value)


@pytest.mark.parametrize('platform, impl', [('cpu', 'blocked'), ('gpu', 'cudnn'),
                                            ('tpu', 'splash')])
def test_auto_picks_the_platform_kernel(platform, impl):
  c = _config('auto', dtype='bfloat16')
  assert attention.check(c.model, c.data.seq_len, platform) == impl
