"""Quantised weights and int8 training (lmjax/model/quantize.py): the round trips within their
bounds (int8 absmax/254 per channel; int4 and NF4 per block, NF4 on QLoRA's levels), the bytes
by the closed form, a quantised model equal to the float model run on the dequantised weights,
launch.eval/launch.sample --quantize end to end beside the float model, quantised training's
matmul against a closed form and its losses beside float training's; bad options in one line."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ConfigError, default_config, resolve, set_fields
from lmjax.eval.outputs import evaluate_run
from lmjax.infer.decode import Sampler
from lmjax.infer.samples import continue_run
from lmjax.model import quantize
from lmjax.train import loop, steps, trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# QLoRA's NormalFloat-4 levels (Dettmers et al. 2023, Appendix E), written out independently.
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0])


def _weight(shape, seed=0):
  """Normal weights with a few outliers, as trained weights have."""
  rng = np.random.default_rng(seed)
  w = rng.normal(0, 0.02, shape)
  w.flat[rng.integers(0, w.size, max(1, w.size // 500))] *= 20
  return jnp.asarray(w, jnp.float32)


def _round_trip(w, name, scheme, block=64):
  q = quantize.quantize_weight(w, name, scheme, block)
  return q, np.asarray(quantize.dequantize_params({'x': q})['x'], np.float64)


def test_int8_round_trip_is_within_absmax_over_254_per_channel():
  # A scanned query weight: (layers, embed, heads, head_dim); each layer's each output
  # channel (head, head_dim) has its own scale over the 64 inputs.
  w = _weight((3, 64, 4, 16))
  q, back = _round_trip(w, 'query', 'int8')
  assert q.qvalue.dtype == jnp.int8 and q.scale.shape == (3, 1, 4, 16)
  absmax = np.abs(np.asarray(w, np.float64)).max(axis=1, keepdims=True)
  err = np.abs(back - np.asarray(w, np.float64))
  assert (err <= absmax / 254 + 1e-9).all()
  assert err.max() > 0  # it did quantise
  # The output projection (heads, head_dim, embed): scales per embed column over all h·e inputs.
  w = _weight((4, 16, 32), 1)
  q, back = _round_trip(w, 'out', 'int8')
  assert q.scale.shape == (1, 1, 32)
  absmax = np.abs(np.asarray(w, np.float64)).reshape(64, 32).max(0)
  assert (np.abs(back - np.asarray(w)).reshape(64, 32) <= absmax / 254 + 1e-9).all()


@pytest.mark.parametrize('name, shape, block', [('wi', (256, 96), 64), ('out', (4, 16, 32), 32)])
def test_int4_and_nf4_blocks_are_within_their_bounds(name, shape, block):
  """Blocks of `block` consecutive input rows of each output column (for `out`, rows of the
  flattened heads × head_dim input: two heads per block of 32)."""
  w = _weight(shape, 2)
  n_in = 256 if name == 'wi' else 64
  rows = np.asarray(w, np.float64).reshape(n_in // block, block, -1)
  blockmax = np.abs(rows).max(1, keepdims=True)
  q, back = _round_trip(w, name, 'int4', block)
  assert q.scale.size == n_in // block * rows.shape[-1]
  err = np.abs(back.reshape(rows.shape) - rows)
  assert (err <= blockmax / 14 + 1e-9).all() and err.max() > blockmax.min() / 1e3
  # Symmetric int4: each value is k·s with s = blockmax / 7.5 and k an integer in [-8, 7].
  k = back.reshape(rows.shape) / (blockmax / 7.5)
  np.testing.assert_allclose(k, np.round(k), atol=1e-4)
  q, back = _round_trip(w, name, 'nf4', block)
  levels = back.reshape(rows.shape) / blockmax  # each value a NormalFloat level × its absmax
  assert np.abs(levels[..., None] - NF4).min(-1).max() < 1e-6
  # ... the nearest level: the error is the distance to it, at most half the widest gap.
  nearest = np.abs(rows / blockmax - NF4[:, None, None, None]).min(0) * blockmax
  np.testing.assert_allclose(np.abs(back.reshape(rows.shape) - rows), nearest, atol=1e-7)
  assert (nearest <= blockmax * np.diff(NF4).max() / 2 + 1e-9).all()


def _tiny_params():
  c = resolve(default_config())
  model = steps.build_model(c, None)
  return c, model, steps.init_params(model, c, jax.random.PRNGKey(0))


def test_bytes_by_the_closed_form_and_only_projections_are_quantised():
  c, _, params = _tiny_params()
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  floats = sum(x.size * 4 for _, x in flat)
  for scheme, bits in (('int8', 8), ('int4', 4), ('nf4', 4)):
    qparams = quantize.quantize_params(params, scheme)
    want_q = want_f = 0
    for path, x in flat:
      name = path[-1].key
      if name in quantize.PROJECTIONS:
        n_in = x.shape[0] * x.shape[1] if name == 'out' else x.shape[0]  # unscanned
        scales = x.size // n_in if scheme == 'int8' else x.size // min(64, n_in)
        want_q += x.size * bits // 8 + scales * 4
      else:
        want_f += x.size * 4
    got = quantize.weight_bytes(qparams)
    assert got == {'quantized': want_q, 'float': want_f, 'total': want_q + want_f}
    assert quantize.weight_bytes(params) == {'quantized': 0, 'float': floats, 'total': floats}
  leaves = jax.tree.leaves(qparams, is_leaf=quantize.is_quantized)
  # q, k, v, out; swiglu's wi, wi_gate, wo
  assert c.model.activation == 'swiglu'
  assert sum(map(quantize.is_quantized, leaves)) == 7 * c.model.n_layers


def test_a_quantised_model_computes_with_its_dequantised_weights():
  c, model, params = _tiny_params()
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16)), jnp.int32)
  float_logits = model.apply({'params': params}, tokens)
  for scheme in quantize.SCHEMES:
    qparams = quantize.quantize_params(params, scheme)
    # The dequantised weights by hand: each QArray's values times its broadcast scales.
    by_hand = jax.tree.map(
        lambda x: (np.asarray(quantize.dequantize_params({'x': x})['x'])
                   if quantize.is_quantized(x) else x), qparams, is_leaf=quantize.is_quantized)
    logits = jax.jit(quantize.Dequantized(model).apply)({'params': qparams}, tokens)
    np.testing.assert_allclose(logits, model.apply({'params': by_hand}, tokens), atol=1e-5)
    assert not np.allclose(logits, float_logits, atol=1e-6)
  assert c.train.quantize == 'none'


def _config(steps_, **fields):
  c = default_config()
  c.model.d_model, c.train.steps, c.optim.warmup_steps = 64, steps_, 2
  c.data.seq_len, c.checkpoint.async_save, c.train.eval_every = 64, False, 10
  c.train.log_every = 5
  set_fields(c, fields)
  return resolve(c)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('quantize')
  loop.train(_config(30), str(tmp / 'float'))
  return tmp


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_launch_eval_quantize_reports_the_quantised_model_beside_the_float_one(run_dir):
  workdir = str(run_dir / 'float')
  plain = evaluate_run(workdir, documents=12, page_documents=0, log=lambda s: None)
  lines = []
  for scheme, tolerance in (('int8', 0.005), ('nf4', 0.05)):
    report = evaluate_run(workdir, documents=12, page_documents=0, quantize=scheme,
                          log=lines.append)
    q = report['quantization']
    assert q['float']['bits_per_byte'] == plain['bits_per_byte']  # the same tokens, float
    assert q['float_weight_bytes'] > q['weight_bytes']
    assert abs(report['bits_per_byte'] / plain['bits_per_byte'] - 1) < tolerance
    assert report['bits_per_byte'] != plain['bits_per_byte']
    assert report['split'] == f'validation-{scheme}' and report['tokens'] == plain['tokens']
    assert os.path.exists(os.path.join(workdir, 'eval', f'validation-{scheme}-30.json'))
  assert any(line.startswith('  bits_per_byte') and '(float ' in line for line in lines)
  assert any(line.startswith('weights ') and 'int8 against' in line for line in lines)


@pytest.mark.slow
def test_launch_sample_quantize_decodes_with_int8_weights(run_dir):
  lines = []
  run, rows = continue_run(str(run_dir / 'float'), ['def f('], max_new_tokens=12,
                           sampler=Sampler(0.0), quantize='int8', log=lines.append)
  assert isinstance(run.model, quantize.Dequantized) and len(rows[0]['tokens']) == 12
  assert lines[0].startswith('weights quantised to int8: ')
  _, plain = continue_run(str(run_dir / 'float'), ['def f('], max_new_tokens=12,
                          sampler=Sampler(0.0))
  # Greedy decoding of a lightly perturbed model: the first tokens agree.
  assert rows[0]['tokens'][:3] == plain[0]['tokens'][:3]


def _one_line(out, *texts):
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
  for text in texts:
    assert text in lines[0], lines[0]


@pytest.mark.slow
def test_bad_quantisation_options_are_one_line_and_exit_2(run_dir, tmp_path):
  workdir = str(run_dir / 'float')
  launch = lambda module, *flags: subprocess.run(
      [sys.executable, '-m', module, f'--workdir={workdir}', *flags], cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  before = sorted(os.listdir(os.path.join(workdir, 'eval'))) if os.path.isdir(
      os.path.join(workdir, 'eval')) else []
  _one_line(launch('launch.eval', '--quantize=int3'), '--quantize=int3: one of int8, int4, nf4')
  _one_line(launch('launch.convert', f'--to_hf={tmp_path / "hf"}', '--quantize=int8'),
            '--quantize=int8: quantised models are not exported')
  # The same check behind launch.sample and the block size (LmjaxError: one line, exit 2).
  with pytest.raises(quantize.QuantizeError, match=r'^--quantize=fp8: one of int8, int4, nf4$'):
    continue_run(workdir, ['x'], quantize='fp8')
  with pytest.raises(quantize.QuantizeError, match='^--quantize_block=0: a positive number'):
    evaluate_run(workdir, quantize='int4', quantize_block=0)
  assert not (tmp_path / 'hf').exists()
  after = sorted(os.listdir(os.path.join(workdir, 'eval'))) if os.path.isdir(
      os.path.join(workdir, 'eval')) else []
  assert after == before
  with pytest.raises(ConfigError, match=r"config.train.quantize='int4' is not allowed: one of "):
    _config(5, train__quantize='int4')
  with pytest.raises(ConfigError, match="train.quantize='int8' is not allowed: none with "
                     'model.moe_experts'):
    _config(5, train__quantize='int8', model__moe_experts=4)


def _with_absmax(a, axis, absmax):
  """`a` scaled so that each slice along `axis` has absmax `absmax`, reached by a positive
  value (a tie at +127.5 rounds to 127 however the scale's last bit falls)."""
  a = a / np.abs(a).max(axis, keepdims=True) * absmax
  idx = np.expand_dims(np.abs(a).argmax(axis), axis)
  np.put_along_axis(a, idx, absmax, axis)
  return a


def test_quantised_training_matmul_is_int8_forward_and_backward():
  rng = np.random.default_rng(3)
  # Absmax 127.5·2^-k: scales are powers of two, so value / scale is exact in any precision.
  x = _with_absmax(rng.normal(size=(32, 64)), 1, 127.5 / 8)
  w = _with_absmax(rng.normal(size=(64, 48)), 0, 127.5 / 512)
  # The forward by hand: activations per row, weights per output column, s = absmax / 127.5
  # (qwix's symmetric bound, qmax + ½), values round(a / s) within int8's [-128, 127].
  fake = lambda a, axis: np.clip(np.round(a / (np.abs(a).max(axis, keepdims=True) / 127.5)),
                                 -128, 127) * (np.abs(a).max(axis, keepdims=True) / 127.5)
  want = fake(x, 1) @ fake(w, 0)
  x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  np.testing.assert_allclose(quantize.qat_matmul(x, w), want, rtol=1e-5, atol=1e-6)
  assert np.abs(want - np.asarray(x, np.float64) @ np.asarray(w, np.float64)).max() > 1e-3
  text = jax.jit(jax.grad(lambda x, w: quantize.qat_matmul(x, w).sum(), (0, 1))).lower(
      x, w).as_text()
  assert text.count('xi8>') >= 6  # three int8 matmuls: the forward's and both gradients'
  grads = jax.grad(lambda x, w: (quantize.qat_matmul(x, w) ** 2).sum(), (0, 1))(x, w)
  floats = jax.grad(lambda x, w: ((x @ w) ** 2).sum(), (0, 1))(x, w)
  for g, f in zip(grads, floats):
    rel = float(jnp.abs(g - f).max() / jnp.abs(f).max())
    assert 0 < rel < 0.03


@pytest.mark.slow
def test_quantised_training_losses_stay_close_to_float(run_dir):
  """train.quantize=int8 on the default corpus, 30 steps: every logged loss within 0.02 nats
  of the float run's, and the final evaluation within 0.01."""
  workdir = str(run_dir / 'int8')
  loop.train(_config(30, train__quantize='int8'), workdir)
  floats, ints = _rows(str(run_dir / 'float')), _rows(workdir)
  pairs = [(f, i) for f, i in zip(floats, ints) if 'loss' in f]
  assert len(pairs) >= 6
  for f, i in pairs:
    assert f['step'] == i['step'] and abs(f['loss'] - i['loss']) < 0.02, (f, i)
  assert any(f['loss'] != i['loss'] for f, i in pairs)
  evals = [(f, i) for f, i in zip(floats, ints) if 'eval_loss' in f]
  assert evals and abs(evals[-1][0]['eval_loss'] - evals[-1][1]['eval_loss']) < 0.01
  assert trained.read_config(workdir).train.quantize == 'int8'
