import jax
import jax.numpy as jnp
import pytest

from lmjax.config import default_config, resolve
from lmjax.model import flops
from lmjax.model.spec import ModelConfig
from lmjax.train.steps import build_model_and_optimizer, init_params


def _cfg(**model):
  c = default_config()
  c.model.update(model)
  return resolve(c)


def test_kaplan_formulas():
  c = _cfg(preset='gpt2', use_bias=False, d_model=256, n_layers=4, n_heads=4, max_seq_len=256)
  m = ModelConfig.from_config(c.model)
  counts = flops.param_counts(m)
  # Without biases, a GPT-2 block has 12·d² weights plus two LayerNorm scales of d each.
  assert counts.N_no_emb == 4 * (12 * 256 ** 2 + 2 * 256) + 256
  assert counts.kaplan_approx == 12 * 4 * 256 ** 2
  assert flops.kaplan_flops_per_token(m, 256) == 6 * counts.N_no_emb + 12 * 4 * 256 * 256


def test_exact_flops_by_hand_and_causal_halving():
  c = _cfg(preset='llama', d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)
  m = ModelConfig.from_config(c.model)
  t, e = 64, 16
  per_layer = (2 * 64 * (4 + 2 * 2) * e + 2 * 4 * e * 64  # q, k, v, out
               + 2 * 2 * 4 * e * t                           # scores and values
               + 3 * 2 * 64 * 128)                           # gated MLP
  forward = 2 * per_layer + 2 * 64 * 257                     # + logits
  assert flops.exact_flops_per_token(m, t) == 3 * forward
  halved = flops.exact_flops_per_token(m, t, attention='causal')
  assert flops.exact_flops_per_token(m, t) - halved == 3 * 2 * 2 * 2 * 4 * e * (t - (t + 1) / 2)
  # attention_block 64 of T 64 is one dense block; of T 256, 4 blocks cover 10/16 of T×T.
  assert flops.attention_context(m, 64, 'computed') == 64
  assert flops.attention_context(m, 256, 'computed') == 256 * 10 / 16


@pytest.mark.slow  # compiles train steps
def test_analytic_flops_agree_with_xla_cost_analysis():
  """The compiled forward pass, as counted by XLA, against our matmul count (NanoDO's check)."""
  c = _cfg(preset='gpt2', use_bias=False, d_model=256, n_layers=2, n_heads=4, max_seq_len=128)
  c = c.unlock()
  c.data.seq_len = 128
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(0))
  tokens = jnp.zeros((4, 128), jnp.int32)
  compiled = jax.jit(lambda p, t: model.apply({'params': p}, t)).lower(params, tokens).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  analytic = flops.forward_matmul_flops_per_token(ModelConfig.from_config(c.model), 128,
                                                  attention='computed') * 4 * 128
  # XLA also counts elementwise work (norms, softmax, GELU): a few percent at this shape.
  assert analytic <= cost['flops'] <= 1.1 * analytic


# device_kind strings as JAX reports them: CUDA device names, and libtpu's names for TPUs.
@pytest.mark.parametrize('kind, expected', [
    ('NVIDIA H100 80GB HBM3', 989e12), ('NVIDIA H100 PCIe', 756e12), ('NVIDIA H100 NVL', 835e12),
    ('NVIDIA H200', 989e12), ('NVIDIA H200 NVL', 835e12), ('NVIDIA B200', 2250e12),
    ('NVIDIA A100-SXM4-40GB', 312e12), ('NVIDIA A100-SXM4-80GB', 312e12),
    ('NVIDIA A100 80GB PCIe', 312e12), ('NVIDIA A100-PCIE-40GB', 312e12), ('NVIDIA L4', 121e12),
    ('TPU v4', 275e12), ('TPU v5 lite', 197e12), ('TPU v5e', 197e12), ('TPU v5', 459e12),
    ('TPU v5p', 459e12), ('TPU v6 lite', 918e12), ('TPU v6e', 918e12)])
def test_peak_table(kind, expected):
  platform = 'tpu' if kind.startswith('TPU') else 'gpu'
  assert flops.peak_flops_per_device(kind, platform)[0] == expected


@pytest.mark.parametrize('kind', ['NVIDIA L40S', 'NVIDIA L40', 'NVIDIA GB300', 'TPU v7x',
                                  'NVIDIA H1000', 'AMD Instinct MI300X'])
def test_chips_not_in_the_table_are_unknown(kind):
  peak, why = flops.peak_flops_per_device(kind, 'gpu')
  assert peak is None and repr(kind) in why and 'config.train.peak_flops' in why
  assert flops.mfu(1e9, 1e3, peak) is None


def test_peak_from_config():
  assert flops.peak_flops_per_device('NVIDIA H100', 'gpu', 1e15) == (1e15, 'config')
  assert flops.peak_flops_per_device('Some New GPU', 'gpu', 2e15) == (2e15, 'config')


def test_mfu():
  assert flops.mfu(6e9, 100.0, 1e12) == pytest.approx(0.6)
  assert flops.mfu(6e9, 100.0, 1e12, n_devices=2) == pytest.approx(0.3)


def test_the_counts_of_a_config_are_one_computation_from_a_config_or_its_json():
  from lmjax.config import default_config, resolve, to_dict
  c = resolve(default_config())
  m = ModelConfig.from_config(c.model)
  counts = flops.config_counts(c)
  assert counts == flops.config_counts(to_dict(c))  # a run's config.json, read back
  assert (counts.N, counts.N_no_emb) == flops.param_counts(m)[:2]
  assert counts.flops_per_token == flops.exact_flops_per_token(m, c.data.seq_len)
  assert counts.flops_per_token_causal == flops.exact_flops_per_token(m, c.data.seq_len,
                                                                      attention='causal')
