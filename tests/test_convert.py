"""Hugging Face import: tiny random LLaMA (GQA, untied, rope_theta ≠ 10000) and GPT-2 models
built and saved with transformers (PyTorch CPU), read back without PyTorch, give transformers'
logits."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from lmjax.config import default_config, resolve  # noqa: E402
from lmjax.core.rundir import RunDir  # noqa: E402
from lmjax.model import hf as convert  # noqa: E402
from lmjax.train.steps import build_model_and_optimizer, init_params  # noqa: E402

pytestmark = pytest.mark.slow  # builds models with transformers


# The llama family's tiny sizes: 2 layers of 64, 8 heads over 2 kv heads, 96 tokens.
LLAMA_LIKE = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                  num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6,
                  initializer_range=0.1)


def _saved(config_class, model_class, path, **fields):
  """A random transformers model (seed 0), its norms and biases moved off 1 and 0, saved."""
  torch.manual_seed(0)
  model = model_class(config_class(**fields)).eval()
  _randomise_norms(model)
  model.save_pretrained(path)
  return model


def tiny_llama(path, **extra):
  return _saved(transformers.LlamaConfig, transformers.LlamaForCausalLM, path,
                **{**LLAMA_LIKE, 'intermediate_size': 112, 'rope_theta': 50000.0,
                   'tie_word_embeddings': False, **extra})


def tiny_llama3(path):
  """LLaMA 3.1's rope scaling, its original context short enough that it changes 2 of the 4
  frequencies of a head of 8."""
  return tiny_llama(path, rope_parameters={
      'rope_type': 'llama3', 'rope_theta': 50000.0, 'factor': 8.0, 'low_freq_factor': 1.0,
      'high_freq_factor': 4.0, 'original_max_position_embeddings': 64})


def tiny_mixtral(path):
  """4 experts, 2 per token, GQA, untied, no sliding window."""
  return _saved(transformers.MixtralConfig, transformers.MixtralForCausalLM, path, **LLAMA_LIKE,
                intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                sliding_window=None, tie_word_embeddings=False)


def tiny_qwen2(path):
  """Biases on q, k and v (none on o or the MLP), tied embeddings as the small Qwen2s."""
  return _saved(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, path, **LLAMA_LIKE,
                intermediate_size=112, tie_word_embeddings=True)


def tiny_gpt2(path):
  return _saved(transformers.GPT2Config, transformers.GPT2LMHeadModel, path, vocab_size=96,
                n_embd=64, n_layer=2, n_head=4, n_positions=1024, bos_token_id=0,
                eos_token_id=0, initializer_range=0.1)


def _randomise_norms(model):
  """Norm scales and biases away from 1 and 0, so that a mix-up shows."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'norm' in name or 'ln_' in name or name.endswith('bias'):
        p.add_(0.1 * torch.randn_like(p))


def lmjax_model(fields, seq_len):
  c = default_config()
  c.model.update(fields)
  c.data.dataset, c.data.seq_len = 'random', seq_len
  c = resolve(c)
  model, _ = build_model_and_optimizer(c)
  return model, c


def hf_logits(model, tokens):
  with torch.no_grad():
    return model(torch.as_tensor(tokens)).logits.double().numpy()


@pytest.mark.parametrize('build', [tiny_llama, tiny_llama3, tiny_gpt2, tiny_mixtral,
                                   tiny_qwen2])
def test_imported_logits_equal_transformers(build, tmp_path):
  hf = build(tmp_path / 'hf')
  fields, params = convert.to_lmjax(*convert.read(str(tmp_path / 'hf')))
  tokens = np.random.default_rng(0).integers(0, 96, (2, 600))
  model, c = lmjax_model(fields, 600)
  expected = jax.tree_util.tree_structure(
      jax.eval_shape(lambda: init_params(model, c, jax.random.PRNGKey(0))))
  assert jax.tree_util.tree_structure(params) == expected
  ours = np.asarray(jax.jit(lambda p, t: model.apply({'params': p}, t))(params, tokens),
                    np.float64)
  ref = hf_logits(hf, tokens)
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
  logp, logq = (x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
                - x.max(-1, keepdims=True) for x in (ref, ours))
  kl = (np.exp(logp) * (logp - logq)).sum(-1)
  assert kl.max() < 1e-6


def test_malformed_directories_name_the_file_or_tensor(tmp_path):
  with pytest.raises(convert.ConvertError, match='config.json: missing'):
    convert.read(str(tmp_path))
  tiny_llama(tmp_path / 'hf')
  hf_config, tensors = convert.read(str(tmp_path / 'hf'))
  del tensors['model.layers.1.mlp.up_proj.weight']
  with pytest.raises(convert.ConvertError, match='model.layers.1.mlp.up_proj.weight: missing'):
    convert.to_lmjax(hf_config, tensors)
  hf_config, tensors = convert.read(str(tmp_path / 'hf'))
  tensors['model.norm.weight'] = tensors['model.norm.weight'][:10]
  with pytest.raises(convert.ConvertError, match=r'model.norm.weight: shape \(10,\)'):
    convert.to_lmjax(hf_config, tensors)
  with pytest.raises(convert.ConvertError, match='architecture'):
    convert.to_lmjax({'architectures': ['BertModel'], 'model_type': 'bert'}, tensors)


@pytest.mark.parametrize('preset', ['llama', 'gpt2', 'mixtral', 'qwen2'])
def test_exported_lmjax_models_load_in_transformers_with_lmjax_logits(preset, tmp_path):
  fields = dict(preset=preset, d_model=64, n_layers=2, n_heads=4, vocab_size=96,
                max_seq_len=256, init_std=0.1, rope_theta=20000.0)
  if preset == 'mixtral':  # a llama-style mixture of experts exports as MixtralForCausalLM
    fields.update(preset='llama', moe_experts=4, moe_top_k=2, moe_d_ff=48)
  if preset == 'qwen2':  # q, k, v biases export as Qwen2ForCausalLM
    fields.update(preset='llama', qkv_bias=True)
  if fields['preset'] == 'llama':
    fields.update(n_kv_heads=2, norm_eps=1e-6)
  model, c = lmjax_model(fields, 256)
  params = jax.tree_util.tree_map(np.asarray, init_params(model, c, jax.random.PRNGKey(3)))
  params = jax.tree_util.tree_map_with_path(  # norm scales and biases away from 1 and 0
      lambda path, x: x + 0.1 * np.random.default_rng(len(str(path))).standard_normal(x.shape)
      .astype(np.float32) if 'norm' in str(path) or str(path[-1]).endswith("_bias']") else x,
      params)
  convert.write(str(tmp_path / 'out'), *convert.from_lmjax(c.model.to_dict(), params))
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / 'out')).eval()
  tokens = np.random.default_rng(1).integers(0, 96, (2, 256))
  ours = np.asarray(model.apply({'params': params}, tokens), np.float64)
  np.testing.assert_allclose(hf_logits(hf, tokens), ours, rtol=0, atol=1e-4)
  # export then import is the identity on params
  fields_back, params_back = convert.to_lmjax(*convert.read(str(tmp_path / 'out')))
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, params_back, params))
  for k, v in fields_back.items():
    # head_dim 0 means d_model // n_heads; a Mixtral's d_ff (no dense MLP left) is its experts'.
    assert c.model[k] == v or (k == 'head_dim' and v == 0) or (
        k == 'd_ff' and preset == 'mixtral'), k


@pytest.mark.parametrize('preset', ['llama', 'gpt2'])
def test_exported_mup_models_fold_their_multipliers(preset, tmp_path):
  """μP's attention, residual and output multipliers (spec.Mup) folded into the exported weights:
  transformers' logits equal lmjax's; a tied embedding at a width other than the base's cannot
  take the output multiplier and is refused in one line."""
  fields = dict(preset=preset, d_model=64, n_layers=2, n_heads=4, vocab_size=96,
                max_seq_len=64, init_std=0.1, parametrization='mup', mup_base_d_model=16,
                mup_base_head_dim=4, mup_base_n_layers=1, tie_embeddings=False)
  if preset == 'gpt2':  # tied, as GPT-2 is: only the base width exports
    fields.update(tie_embeddings=True, mup_base_d_model=64)
  model, c = lmjax_model(fields, 64)
  params = jax.tree_util.tree_map(np.asarray, init_params(model, c, jax.random.PRNGKey(3)))
  convert.write(str(tmp_path / 'out'), *convert.from_lmjax(c.model.to_dict(), params))
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / 'out')).eval()
  tokens = np.random.default_rng(1).integers(0, 96, (2, 64))
  ours = np.asarray(model.apply({'params': params}, tokens), np.float64)
  np.testing.assert_allclose(hf_logits(hf, tokens), ours, rtol=0, atol=1e-4)
  if preset == 'gpt2':
    wide = c.model.to_dict() | {'mup_base_d_model': 16}
    with pytest.raises(convert.ConvertError, match=r'^model.parametrization=mup: the output '
                       r'multiplier 0.25 \(base width / width\) cannot be folded into tied'):
      convert.from_lmjax(wide, params)


def test_a_sliding_window_shorter_than_the_context_is_refused(tmp_path):
  """A Mistral whose sliding_window (32) is shorter than its context would import and give logits
  up to 0.7 away from transformers' past 32 positions: refused in one line. Without a window (or
  one as long as the context) it imports as a llama-style model."""
  fields = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
  for window in (32, None, 128):
    path = tmp_path / f'w{window}'
    cfg = transformers.MistralConfig(**fields, sliding_window=window)
    transformers.MistralForCausalLM(cfg).save_pretrained(str(path), safe_serialization=True)
    if window == 32:
      with pytest.raises(convert.ConvertError, match=r'^config.json: sliding_window=32 is '
                         r'shorter than max_position_embeddings=128; lmjax has no sliding-window'):
        convert.to_lmjax(*convert.read(str(path)))
    else:
      fields_back, _ = convert.to_lmjax(*convert.read(str(path)))
      assert fields_back['d_model'] == 64


def test_models_neither_form_covers_are_refused(tmp_path):
  model, c = lmjax_model(dict(preset='vaswani', d_model=32, n_heads=4, vocab_size=96), 64)
  with pytest.raises(convert.ConvertError, match='model.norm=.layernorm.: Hugging Face export'):
    convert.from_lmjax(c.model.to_dict(), {})
  moe = dict(preset='llama', d_model=32, n_heads=4, vocab_size=96, moe_experts=4)
  for field, value in (('moe_router', 'deepseek'), ('moe_capacity_factor', 1.25)):
    _, c = lmjax_model({**moe, field: value}, 64)
    with pytest.raises(convert.ConvertError, match=rf'^model.{field}=.*exports as Mixtral, '
                       'which needs moe_router=mixtral'):
      convert.from_lmjax(c.model.to_dict(), {'embed': None, 'final_norm': {'scale': None}})
  _, c = lmjax_model(dict(moe, preset='gpt2'), 64)
  with pytest.raises(convert.ConvertError, match='^model.moe_experts: a mixture of experts'):
    convert.from_lmjax(c.model.to_dict(), {})


@pytest.mark.parametrize('build', [tiny_llama, tiny_gpt2, tiny_mixtral, tiny_qwen2])
def test_greedy_generation_equals_transformers_generate(build, tmp_path):
  from lmjax.infer import decode
  hf = build(tmp_path / 'hf')
  hf.generation_config.eos_token_id = hf.generation_config.pad_token_id = None
  fields, params = convert.to_lmjax(*convert.read(str(tmp_path / 'hf')))
  model, _ = lmjax_model(fields, 64)
  prompts = np.random.default_rng(2).integers(0, 96, (2, 40))
  ours = decode.Decoder(model, 32, decode.Sampler(temperature=0))(params, list(prompts))
  with torch.no_grad():
    ref = hf.generate(torch.as_tensor(prompts), max_new_tokens=32, do_sample=False,
                      pad_token_id=0).numpy()[:, 40:]
  np.testing.assert_array_equal(ours.tokens, ref)


def _run(module, *flags):
  import subprocess
  import sys
  root = __import__('os').path.dirname(__import__('os').path.dirname(__file__))
  return subprocess.run([sys.executable, '-m', module, *flags], cwd=root or '.',
                        capture_output=True, text=True)


def test_an_imported_run_trains_on_from_its_eval_loss(tmp_path, corpus):
  """launch.convert --from_hf (with its tokenizer.json), then launch.train from it on local
  text: the first step's loss is the loss of the imported params on the first batch;
  launch.convert --to_hf gives the tensors back."""
  import json

  from lmjax.data import loader
  from lmjax.train import steps
  from lmjax.core.pyfile import call_function
  from test_tokenizers import byte_level_tokenizer_json
  tiny_llama(tmp_path / 'hf', vocab_size=420)
  byte_level_tokenizer_json(tmp_path / 'hf' / 'tokenizer.json')  # 400 tokens at most
  out = _run('launch.convert', f'--from_hf={tmp_path}/hf', f'--workdir={tmp_path}/imported',
             '--seq_len=32')
  assert out.returncode == 0, out.stderr[-2000:]
  data_flags = ['--config.data.dataset=local_text', f'--config.data.paths={corpus}',
                f'--config.data.data_dir={tmp_path}/tfds', '--config.data.batch_size=4',
                '--config.data.val_percent=30', '--config.data.eval_batches=1']
  out = _run('launch.train', f'--config={tmp_path}/imported/lmjax_config.py',
             f'--workdir={tmp_path}/tuned', '--config.train.steps=2', '--config.train.log_every=1',
             '--config.optim.warmup_steps=1', *data_flags)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'params imported from' in out.stdout
  tuned = json.loads((tmp_path / 'tuned' / 'config.json').read_text())
  assert tuned['data']['tokenizer'] == 'hf' and tuned['data']['hf_tokenizer'] == str(
      tmp_path / 'imported' / 'tokenizer.json')
  first = RunDir(tmp_path / 'tuned').read_metrics()[0]
  # The same batch through the imported params, here.
  c = call_function(str(tmp_path / 'imported' / 'lmjax_config.py'), 'get_config')
  c.data.dataset, c.data.paths, c.data.data_dir = 'local_text', str(corpus), str(tmp_path / 'tfds')
  c.data.batch_size, c.data.val_percent, c.data.eval_batches = 4, 30, 1
  from lmjax.config import resolve
  c = resolve(c)
  _, params = convert.to_lmjax(*convert.read(str(tmp_path / 'hf')))
  model, _ = steps.build_model_and_optimizer(c)
  batch = next(loader.train_iterator(loader.load(c), c))
  _, (nats, count, _) = steps.loss_sums(params, model, batch)
  assert first['step'] == 1 and first['loss'] == pytest.approx(float(nats / count), rel=1e-5)
  # Export the imported run: the HF tensors come back.
  out = _run('launch.convert', f'--to_hf={tmp_path}/back', f'--workdir={tmp_path}/imported')
  assert out.returncode == 0, out.stderr[-2000:]
  _, original = convert.read(str(tmp_path / 'hf'))
  _, back = convert.read(str(tmp_path / 'back'))
  assert set(original) == set(back) and all(np.array_equal(original[k], back[k]) for k in back)


def test_a_malformed_directory_is_one_line_and_writes_nothing(tmp_path):
  tiny_llama(tmp_path / 'hf')
  (tmp_path / 'hf' / 'config.json').write_text('{"architectures": ["BertModel"]}')
  out = _run('launch.convert', f'--from_hf={tmp_path}/hf', f'--workdir={tmp_path}/out')
  assert out.returncode == 2 and out.stderr.strip().count('\n') == 0
  assert 'architecture' in out.stderr and not (tmp_path / 'out').exists()
  assert not [p for p in tmp_path.iterdir() if p.name.startswith('out')]
