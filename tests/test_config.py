import os
import subprocess
import sys

import pytest

from lmjax.config import ConfigError, default_config, resolve, set_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with(**overrides):
  return set_fields(default_config(), overrides)


def test_presets_fill_unset_fields_and_keep_overrides():
  c = resolve(_with(model__preset='vaswani'))
  assert (c.model.norm, c.model.norm_position, c.model.activation, c.model.position,
          c.model.tie_embeddings) == ('layernorm', 'post', 'relu', 'sinusoidal', True)
  c = resolve(_with(model__preset='llama', model__norm='layernorm'))
  assert (c.model.norm, c.model.activation, c.model.position, c.model.tie_embeddings) == (
      'layernorm', 'swiglu', 'rope', False)
  assert c.model.n_kv_heads == c.model.n_heads
  assert c.model.d_ff == 192  # 8/3 · 64 rounded up to a multiple of 64
  assert resolve(_with(model__activation='gelu')).model.d_ff == 256


@pytest.mark.parametrize('overrides, field', [
    (dict(model__n_heads=3), 'model.n_heads'),
    (dict(model__n_kv_heads=3), 'model.n_kv_heads'),
    (dict(model__head_dim=-8), 'model.head_dim'),
    (dict(model__head_dim=7), 'model.head_dim'),        # odd, with rope
    (dict(model__norm_eps=0.0), 'model.norm_eps'),
    (dict(model__activation='tanh'), 'model.activation'),
    (dict(model__position='learned', data__seq_len=128), 'data.seq_len'),
    (dict(optim__warmup_steps=500, train__steps=100), 'optim.warmup_steps'),
    (dict(optim__lr=0.0), 'optim.lr'),
    (dict(optim__lr=-1e-3), 'optim.lr'),
    (dict(model__norm='batchnorm'), 'model.norm'),
    (dict(model__preset='gpt5'), 'model.preset'),
    (dict(train__grad_accum=3), 'train.grad_accum'),
    (dict(model__dropout=1.0), 'model.dropout'),
    (dict(optim__schedule='step'), 'optim.schedule'),
    (dict(model__vocab_size=100), 'model.vocab_size'),
    (dict(model__d_model=0), 'model.d_model'),
    (dict(train__profile_start=-1), 'train.profile_start'),
    (dict(train__profile_steps=0), 'train.profile_steps'),
    (dict(train__compile_cache=''), 'train.compile_cache'),
])
def test_bad_values_name_the_field(overrides, field):
  with pytest.raises(ConfigError, match=f'config.{field}=.*is not allowed'):
    resolve(_with(**overrides))


def test_rope_and_sinusoidal_allow_long_sequences():
  for position in ('rope', 'sinusoidal', 'none'):
    c = resolve(_with(model__position=position, data__seq_len=128))
    assert c.data.seq_len == 128 > c.model.max_seq_len


@pytest.mark.slow  # launch.train subprocesses
@pytest.mark.parametrize('flag, field', [
    ('--config.model.n_heads=3', 'model.n_heads'),
    ('--config.model.activation=tanh', 'model.activation'),
    ('--config.optim.lr=0', 'optim.lr'),
    ('--config.optim.warmup_steps=1000', 'optim.warmup_steps'),
])
def test_launcher_rejects_bad_config_without_touching_workdir(tmp_path, flag, field):
  workdir = tmp_path / 'run'
  out = subprocess.run([sys.executable, '-m', 'launch.train',
                        '--config=experiments/configs/tiny.py', f'--workdir={workdir}', flag],
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 2
  errors = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and f'config.{field}=' in errors[0], out.stderr
  assert not workdir.exists()


@pytest.mark.slow  # launch.train subprocesses
@pytest.mark.parametrize('args, message', [
    (['--config=experiments/configs/tiny.py', '--config.model.colour=red'],
     'error: --config.model.colour: no such config field'),
    (['--config=experiments/configs/tiny.py', '--config.model.d_model=abc'],
     "error: flag --config.model.d_model=abc: invalid literal for int()"),
    (['--config=experiments/configs/missing.py'], 'error: --config=experiments/configs/missing.py: no such file'),
    (['--config=README.md'], 'error: --config=README.md: not a Python config file'),
    (['--config=experiments/configs/tiny.py', 'extra'], 'error: unexpected arguments'),
    (['--config=experiments/configs/tiny.py', '--config.mesh.data=2'],
     'error: config.mesh: data×fsdp×tensor = 2×1×1 = 2, but there are 1 devices'),
    (['--config=experiments/configs/tiny.py', '--config.mesh.tensor=0'],
     'error: config.mesh.tensor=0 is not allowed'),
])
def test_launcher_bad_flags_fail_in_one_line(tmp_path, args, message):
  workdir = tmp_path / 'run'
  out = subprocess.run([sys.executable, '-m', 'launch.train', *args, f'--workdir={workdir}'],
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
  assert out.stderr.startswith(message), out.stderr
  assert not workdir.exists()


@pytest.mark.parametrize('name, total', [
    ('tiny', 139_712), ('small', 3_345_152), ('nanogpt_s', 3_279_104),
    ('nanogpt_m', 10_818_432),
    # nanoGPT's GPT-2 124M (vocab 50,304) with its 786,432 wpe; the large ones take seconds each
    *(pytest.param(*p, marks=pytest.mark.slow) for p in (
        ('gpt2_small', 124_475_904), ('llama_125m', 134_105_856), ('llama_1b', 1_104_218_112)))])
def test_shipped_configs_resolve_to_their_sizes(name, total):
  import importlib

  import jax

  from lmjax.model import flops
  from lmjax.model.spec import ModelConfig
  from lmjax.train.steps import build_model_and_optimizer, init_params
  c = resolve(importlib.import_module(f'experiments.configs.{name}').get_config())
  counts = flops.param_counts(ModelConfig.from_config(c.model))
  model, _ = build_model_and_optimizer(c)
  shapes = jax.eval_shape(lambda: init_params(model, c, jax.random.PRNGKey(0)))
  assert counts.N == flops.count_tree(shapes) == total


def test_unknown_fields_are_refused_and_model_defaults_live_in_one_place():
  import dataclasses

  from lmjax.config import ConfigError
  from lmjax.model.spec import ModelConfig
  c = default_config()
  c.model.colour = 'red'  # a typo in a config file would otherwise be carried and do nothing
  with pytest.raises(ConfigError, match=r'config.model.colour is not a config field \(config.model'
                     ' has activation, '):
    resolve(c)
  c = default_config()
  c.optim.lrr = 1e-3
  with pytest.raises(ConfigError, match='config.optim.lrr is not a config field'):
    resolve(c)
  model = resolve(default_config()).model.to_dict()
  with pytest.raises(ConfigError, match='config.model.colour is not a model field'):
    ModelConfig.from_config({**model, 'colour': 'red'})
  # A run's config.json from before a field existed: the field takes default_config's value.
  older = {k: v for k, v in model.items() if k != 'rope_scaling'}
  assert ModelConfig.from_config(older).rope_scaling == default_config().model.rope_scaling
  # ModelConfig restates no default: every field but the platform and train.quantize (both set
  # by transformer.model_config) comes from config.model.
  assert [f.name for f in dataclasses.fields(ModelConfig)
          if f.default is not dataclasses.MISSING] == ['platform', 'quantize']
  assert {f.name for f in dataclasses.fields(ModelConfig)} - {'platform', 'quantize'} == set(
      model)
