"""Hugging Face checkpoints in and out: LLaMA-family (`LlamaForCausalLM`, Mistral-style GQA
included), Qwen2 (`Qwen2ForCausalLM`, a LLaMA with biases on q, k and v: model.qkv_bias),
Mixtral (`MixtralForCausalLM`, a LLaMA whose MLPs are mixtures of experts) and GPT-2
(`GPT2LMHeadModel`) directories of config.json and safetensors.

`read(directory)` gives (the HF config, every tensor as a NumPy array): one model.safetensors,
or the shards its model.safetensors.index.json names, read with the `safetensors` package (no
PyTorch). `to_lmjax(hf_config, tensors)` gives (lmjax model fields, params) for
lmjax.model.transformer:

LLaMA: Linear weights are (out, in) and transpose to lmjax's (in, out); q, k, v and o split into
heads of `head_dim`; the MLP's gate_proj is lmjax's `wi` (the activated half of SwiGLU), up_proj
`wi_gate`, down_proj `wo`; RMSNorm weights are the norm scales, with `rms_norm_eps`. Both apply RoPE
to the two halves of each head (HF's `rotate_half`, the GPT-NeoX form lmjax.model.transformer.rope
uses), so no permutation is needed. `rope_theta` and LLaMA 3.1's rope scaling come from
`rope_parameters` (transformers 5) or the top level and `rope_scaling` (4.x); other scaling
types are refused, as are biases on only some of the projections (lmjax has one `use_bias`).
Mixtral: `block_sparse_moe.gate` is the router (E, D) and experts.j.w1 / w3 / w2 expert j's
gate, up and down projections, stacked into lmjax's (E, ...) `wi`, `wi_gate`, `wo`
(lmjax/model/moe.py, moe_router=mixtral).

GPT-2: Conv1D weights are already (in, out); `c_attn` splits into q, k and v; learned positions
(`wpe`), LayerNorm with biases and `layer_norm_epsilon`, the tanh GELU (`gelu_new`, which
jax.nn.gelu computes by default), head tied to the embedding.

Every problem is a ConvertError naming the file or tensor.
"""
from __future__ import annotations

import json
import os

import numpy as np

from lmjax.core.errors import LmjaxError, one_line


class ConvertError(LmjaxError, ValueError):
  """A directory or tensor that cannot be converted; the message names it."""


ARCHITECTURES = {'LlamaForCausalLM': 'llama', 'MistralForCausalLM': 'llama',
                 'MixtralForCausalLM': 'llama', 'Qwen2ForCausalLM': 'llama',
                 'GPT2LMHeadModel': 'gpt2'}


def read(directory: str) -> tuple[dict, dict]:
  """(config.json as a dict, {tensor name: float32 array}) of a Hugging Face model directory."""
  from safetensors.numpy import load_file
  path = os.path.join(directory, 'config.json')
  if not os.path.isfile(path):
    raise ConvertError(f'{path}: missing (a Hugging Face model directory has config.json)')
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise ConvertError(f'{path}: not readable JSON ({e})') from None
  index = os.path.join(directory, 'model.safetensors.index.json')
  if os.path.isfile(index):
    with open(index) as f:
      files = sorted(set(json.load(f)['weight_map'].values()))
  elif os.path.isfile(os.path.join(directory, 'model.safetensors')):
    files = ['model.safetensors']
  else:
    raise ConvertError(f'{directory}: no model.safetensors or model.safetensors.index.json')
  tensors = {}
  for name in files:
    try:
      tensors.update(load_file(os.path.join(directory, name)))
    except Exception as e:  # noqa: BLE001  (safetensors raises several types)
      raise ConvertError(f'{os.path.join(directory, name)}: not a readable safetensors file '
                         f'({one_line(e, 120)})') from None
  return config, {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def architecture(hf_config: dict) -> str:
  names = hf_config.get('architectures') or []
  model_type = hf_config.get('model_type')
  for name in names:
    if name in ARCHITECTURES:
      return ARCHITECTURES[name]
  if model_type in ('llama', 'mistral', 'mixtral', 'qwen2', 'gpt2'):
    return 'gpt2' if model_type == 'gpt2' else 'llama'
  raise ConvertError(f'config.json: architecture {names or model_type!r} is not one of '
                     f'{", ".join(ARCHITECTURES)}')


class _Tensors:
  """Tensors taken by name with their expected shape; errors name the tensor."""

  def __init__(self, tensors: dict, prefix=''):
    self.tensors, self.prefix, self.used = tensors, prefix, set()

  def take(self, name, shape):
    full = self.prefix + name
    if full not in self.tensors:
      raise ConvertError(f'tensor {full}: missing')
    x = self.tensors[full]
    if tuple(x.shape) != tuple(shape):
      raise ConvertError(f'tensor {full}: shape {tuple(x.shape)}, expected {tuple(shape)}')
    self.used.add(full)
    return x

  def has(self, name):
    return self.prefix + name in self.tensors


def _rope(hf: dict) -> dict:
  """lmjax's rope fields from `rope_parameters` (transformers 5) or the top level and
  `rope_scaling` (4.x): the default RoPE or LLaMA 3.1's scaling; others are refused."""
  rope = hf.get('rope_parameters') or hf.get('rope_scaling') or {}
  kind = rope.get('rope_type', rope.get('type', 'default')) or 'default'
  out = {'rope_theta': float(rope.get('rope_theta', hf.get('rope_theta', 10000.0)))}
  if kind == 'llama3':
    out.update(rope_scaling='llama3', rope_scaling_factor=float(rope['factor']),
               rope_low_freq_factor=float(rope['low_freq_factor']),
               rope_high_freq_factor=float(rope['high_freq_factor']),
               rope_original_max_len=int(rope['original_max_position_embeddings']))
  elif kind != 'default':
    raise ConvertError(f'config.json: rope type {kind!r} is not supported (default, llama3)')
  return out


def llama_to_lmjax(hf: dict, tensors: dict) -> tuple[dict, dict]:
  d, n_layers, h = hf['hidden_size'], hf['num_hidden_layers'], hf['num_attention_heads']
  k = hf.get('num_key_value_heads') or h
  e = hf.get('head_dim') or d // h
  f, v = hf['intermediate_size'], hf['vocab_size']
  if hf.get('hidden_act', 'silu') != 'silu':
    raise ConvertError(f'config.json: hidden_act {hf["hidden_act"]!r} is not supported (silu)')
  attn_bias, mlp_bias = bool(hf.get('attention_bias')), bool(hf.get('mlp_bias'))
  if attn_bias or mlp_bias:
    raise ConvertError('config.json: attention_bias / mlp_bias are not supported (lmjax has '
                       'biases on every projection or none)')
  window, longest = hf.get('sliding_window'), hf.get('max_position_embeddings', 2048)
  if window and hf.get('use_sliding_window', True) and window < longest:
    # Mistral's local attention: a query sees only the last `window` keys. lmjax attends to the
    # whole causal prefix, so past `window` positions its logits would differ; refused.
    raise ConvertError(f'config.json: sliding_window={window} is shorter than '
                       f'max_position_embeddings={longest}; lmjax has no sliding-window '
                       'attention (set sliding_window to null only if no sequence is longer)')
  tied = bool(hf.get('tie_word_embeddings', False))
  qwen2 = 'Qwen2ForCausalLM' in (hf.get('architectures') or []) or hf.get('model_type') == 'qwen2'
  model = dict(preset='llama', d_model=d, n_layers=n_layers, n_heads=h, n_kv_heads=k, d_ff=f,
               vocab_size=v, max_seq_len=hf.get('max_position_embeddings', 2048),
               **_rope(hf), norm_eps=float(hf.get('rms_norm_eps', 1e-6)),
               head_dim=0 if e * h == d else e, tie_embeddings=tied, **_mixtral_fields(hf),
               **({'qkv_bias': True} if qwen2 else {}))
  t = _Tensors(tensors, 'model.')
  linear = lambda name, out, inp: t.take(name, (out, inp)).T   # (out, in) -> (in, out)
  mlp = lambda p: (_mixtral_experts(model, linear, p) if model.get('moe_experts') else
                   {'wi': linear(p + 'mlp.gate_proj.weight', f, d),
                    'wi_gate': linear(p + 'mlp.up_proj.weight', f, d),
                    'wo': linear(p + 'mlp.down_proj.weight', d, f)})
  params = {'embed': t.take('embed_tokens.weight', (v, d)),
            'final_norm': {'scale': t.take('norm.weight', (d,))}}
  for i in range(n_layers):
    p = f'layers.{i}.'
    params[f'block_{i}'] = {
        'attn': {'query': linear(p + 'self_attn.q_proj.weight', h * e, d).reshape(d, h, e),
                 'key': linear(p + 'self_attn.k_proj.weight', k * e, d).reshape(d, k, e),
                 'value': linear(p + 'self_attn.v_proj.weight', k * e, d).reshape(d, k, e),
                 'out': linear(p + 'self_attn.o_proj.weight', d, h * e).reshape(h, e, d),
                 **({f'{ours}_bias': t.take(f'{p}self_attn.{theirs}_proj.bias', (n * e,))
                     .reshape(n, e) for ours, theirs, n in (('query', 'q', h), ('key', 'k', k),
                                                            ('value', 'v', k))}
                    if qwen2 else {})},
        'attn_norm': {'scale': t.take(p + 'input_layernorm.weight', (d,))},
        'mlp_norm': {'scale': t.take(p + 'post_attention_layernorm.weight', (d,))},
        'mlp': mlp(p)}
  if not tied:
    head = _Tensors(tensors)
    params['unembed'] = head.take('lm_head.weight', (v, d)).T
  return model, params


def _mixtral_fields(hf: dict) -> dict:
  """A Mixtral's mixture-of-experts fields (lmjax/model/moe.py): every layer's MLP is
  `num_local_experts` experts of `intermediate_size`, `num_experts_per_tok` per token, routed by
  softmax renormalised over the chosen (moe_router=mixtral). transformers' load-balancing loss
  sums over the k choices, k times lmjax's (moe.py): its coefficient is multiplied by k."""
  experts = hf.get('num_local_experts')
  if not experts:
    return {}
  k = hf.get('num_experts_per_tok', 2)
  return dict(moe_experts=experts, moe_top_k=k, moe_d_ff=hf['intermediate_size'],
              moe_router='mixtral', moe_lb_loss=float(hf.get('router_aux_loss_coef', 0.001)) * k)


def _mixtral_experts(model: dict, linear, p: str) -> dict:
  d, f, e = model['d_model'], model['moe_d_ff'], model['moe_experts']
  q = p + 'block_sparse_moe.'
  stack = lambda w, out, inp: np.stack([linear(f'{q}experts.{j}.{w}.weight', out, inp)
                                        for j in range(e)])
  # w1 is the activated (gate) projection, w3 the up projection, w2 the down projection.
  return {'router': linear(q + 'gate.weight', e, d), 'wi': stack('w1', f, d),
          'wi_gate': stack('w3', f, d), 'wo': stack('w2', d, f)}


def gpt2_to_lmjax(hf: dict, tensors: dict) -> tuple[dict, dict]:
  d, n_layers, h, v = hf['n_embd'], hf['n_layer'], hf['n_head'], hf['vocab_size']
  f = hf.get('n_inner') or 4 * d
  e = d // h
  if hf.get('activation_function', 'gelu_new') not in ('gelu_new', 'gelu_pytorch_tanh'):
    raise ConvertError(f'config.json: activation_function {hf["activation_function"]!r} is not '
                       'supported (the tanh GELU, gelu_new)')
  model = dict(preset='gpt2', d_model=d, n_layers=n_layers, n_heads=h, n_kv_heads=h, d_ff=f,
               vocab_size=v, max_seq_len=hf.get('n_positions', 1024),
               norm_eps=float(hf.get('layer_norm_epsilon', 1e-5)), tie_embeddings=True)
  prefix = 'transformer.' if 'transformer.wte.weight' in tensors else ''
  t = _Tensors(tensors, prefix)
  norm = lambda name: {'scale': t.take(name + '.weight', (d,)), 'bias': t.take(name + '.bias', (d,))}
  params = {'embed': t.take('wte.weight', (v, d)),
            'pos_embed': t.take('wpe.weight', (model['max_seq_len'], d)),
            'final_norm': norm('ln_f')}
  for i in range(n_layers):
    p = f'h.{i}.'
    qkv_w, qkv_b = t.take(p + 'attn.c_attn.weight', (d, 3 * d)), t.take(p + 'attn.c_attn.bias',
                                                                          (3 * d,))
    q, k, vv = np.split(qkv_w, 3, axis=1)
    qb, kb, vb = np.split(qkv_b, 3)
    params[f'block_{i}'] = {
        'attn': {'query': q.reshape(d, h, e), 'key': k.reshape(d, h, e),
                 'value': vv.reshape(d, h, e),
                 'query_bias': qb.reshape(h, e), 'key_bias': kb.reshape(h, e),
                 'value_bias': vb.reshape(h, e),
                 'out': t.take(p + 'attn.c_proj.weight', (d, d)).reshape(h, e, d),
                 'out_bias': t.take(p + 'attn.c_proj.bias', (d,))},
        'attn_norm': norm(p + 'ln_1'), 'mlp_norm': norm(p + 'ln_2'),
        'mlp': {'wi': t.take(p + 'mlp.c_fc.weight', (d, f)),
                'wi_bias': t.take(p + 'mlp.c_fc.bias', (f,)),
                'wo': t.take(p + 'mlp.c_proj.weight', (f, d)),
                'wo_bias': t.take(p + 'mlp.c_proj.bias', (d,))}}
  return model, params


def to_lmjax(hf_config: dict, tensors: dict) -> tuple[dict, dict]:
  """(lmjax model fields, params) of a Hugging Face model (module docstring)."""
  kind = architecture(hf_config)
  try:
    return (llama_to_lmjax if kind == 'llama' else gpt2_to_lmjax)(hf_config, tensors)
  except KeyError as e:
    raise ConvertError(f'config.json: field {e.args[0]!r} missing for a {kind} model') from None


# ------------------------------------------------------------------------------------- export
def _np(x):
  return np.asarray(x, np.float32)


def _rope_parameters(m: dict) -> dict:
  if m.get('rope_scaling', 'none') == 'none':
    return {'rope_type': 'default', 'rope_theta': m['rope_theta']}
  return {'rope_type': 'llama3', 'rope_theta': m['rope_theta'],
          'factor': m['rope_scaling_factor'], 'low_freq_factor': m['rope_low_freq_factor'],
          'high_freq_factor': m['rope_high_freq_factor'],
          'original_max_position_embeddings': m['rope_original_max_len']}


def llama_from_lmjax(m: dict, params) -> tuple[dict, dict]:
  d, h, k, n = m['d_model'], m['n_heads'], m['n_kv_heads'], m['n_layers']
  e = m.get('head_dim') or d // h
  hf = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': d,
        'intermediate_size': m['d_ff'], 'num_hidden_layers': n, 'num_attention_heads': h,
        'num_key_value_heads': k, 'head_dim': e, 'vocab_size': m['vocab_size'],
        'max_position_embeddings': m['max_seq_len'], 'rms_norm_eps': m['norm_eps'],
        'rope_parameters': _rope_parameters(m), 'rope_theta': m['rope_theta'],
        'hidden_act': 'silu', 'attention_bias': False,
        'mlp_bias': False, 'tie_word_embeddings': bool(m['tie_embeddings']),
        'torch_dtype': 'float32', 'bos_token_id': None, 'eos_token_id': None}
  t = {'model.embed_tokens.weight': _np(params['embed']),
       'model.norm.weight': _np(params['final_norm']['scale'])}
  if m.get('moe_experts'):
    if m.get('qkv_bias'):
      raise ConvertError('model.qkv_bias=True: a mixture of experts exports as Mixtral, which '
                         'has no q, k, v biases')
    hf.update(_mixtral_config(m))
  if m.get('qkv_bias'):  # Qwen2: a llama with biases on q, k and v
    hf.update(architectures=['Qwen2ForCausalLM'], model_type='qwen2', use_sliding_window=False,
              sliding_window=None)
  for i in range(n):
    b, p = params[f'block_{i}'], f'model.layers.{i}.'
    a = b['attn']
    t[p + 'self_attn.q_proj.weight'] = _np(a['query']).reshape(d, h * e).T
    t[p + 'self_attn.k_proj.weight'] = _np(a['key']).reshape(d, k * e).T
    t[p + 'self_attn.v_proj.weight'] = _np(a['value']).reshape(d, k * e).T
    t[p + 'self_attn.o_proj.weight'] = _np(a['out']).reshape(h * e, d).T
    if m.get('qkv_bias'):
      for ours, theirs in (('query', 'q'), ('key', 'k'), ('value', 'v')):
        t[f'{p}self_attn.{theirs}_proj.bias'] = _np(a[f'{ours}_bias']).reshape(-1)
    t[p + 'input_layernorm.weight'] = _np(b['attn_norm']['scale'])
    t[p + 'post_attention_layernorm.weight'] = _np(b['mlp_norm']['scale'])
    mlp = b['mlp']
    if m.get('moe_experts'):
      q = p + 'block_sparse_moe.'
      t[q + 'gate.weight'] = _np(mlp['router']).T
      for j in range(m['moe_experts']):
        for ours, theirs in (('wi', 'w1'), ('wi_gate', 'w3'), ('wo', 'w2')):
          t[f'{q}experts.{j}.{theirs}.weight'] = _np(mlp[ours][j]).T
      continue
    t[p + 'mlp.gate_proj.weight'] = _np(mlp['wi']).T
    t[p + 'mlp.up_proj.weight'] = _np(mlp['wi_gate']).T
    t[p + 'mlp.down_proj.weight'] = _np(mlp['wo']).T
  if not m['tie_embeddings']:
    t['lm_head.weight'] = _np(params['unembed']).T
  return hf, t


# A mixture of experts exports as Mixtral: these fields must have Mixtral's values.
MIXTRAL = dict(moe_router='mixtral', moe_every=1, moe_shared_experts=0, moe_capacity_factor=0.0)


def _mixtral_config(m: dict) -> dict:
  """The MixtralForCausalLM fields of an lmjax mixture of experts (ConvertError for a field
  Mixtral does not have)."""
  for field, value in MIXTRAL.items():
    if m.get(field, value) != value:
      raise ConvertError(f'model.{field}={m[field]!r}: a mixture of experts exports as Mixtral, '
                         f'which needs {", ".join(f"{k}={v}" for k, v in MIXTRAL.items())}')
  return {'architectures': ['MixtralForCausalLM'], 'model_type': 'mixtral',
          'intermediate_size': m['moe_d_ff'] or m['d_ff'], 'num_local_experts': m['moe_experts'],
          'num_experts_per_tok': m['moe_top_k'], 'sliding_window': None,
          'router_aux_loss_coef': m.get('moe_lb_loss', 0.01) / m['moe_top_k'],
          'router_jitter_noise': 0.0, 'output_router_logits': False}


def gpt2_from_lmjax(m: dict, params) -> tuple[dict, dict]:
  d, h, n, f = m['d_model'], m['n_heads'], m['n_layers'], m['d_ff']
  hf = {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2', 'n_embd': d, 'n_layer': n,
        'n_head': h, 'n_inner': f, 'vocab_size': m['vocab_size'],
        'n_positions': m['max_seq_len'], 'layer_norm_epsilon': m['norm_eps'],
        'activation_function': 'gelu_new', 'tie_word_embeddings': True,
        'torch_dtype': 'float32', 'bos_token_id': None, 'eos_token_id': None}
  norm = lambda name, x: {f'{name}.weight': _np(x['scale']), f'{name}.bias': _np(x['bias'])}
  t = {'transformer.wte.weight': _np(params['embed']),
       'transformer.wpe.weight': _np(params['pos_embed']),
       **norm('transformer.ln_f', params['final_norm'])}
  for i in range(n):
    b, p = params[f'block_{i}'], f'transformer.h.{i}.'
    a = b['attn']
    t[p + 'attn.c_attn.weight'] = np.concatenate(
        [_np(a[x]).reshape(d, d) for x in ('query', 'key', 'value')], axis=1)
    t[p + 'attn.c_attn.bias'] = np.concatenate(
        [_np(a[x + '_bias']).reshape(d) for x in ('query', 'key', 'value')])
    t[p + 'attn.c_proj.weight'] = _np(a['out']).reshape(d, d)
    t[p + 'attn.c_proj.bias'] = _np(a['out_bias'])
    t.update(norm(p + 'ln_1', b['attn_norm']))
    t.update(norm(p + 'ln_2', b['mlp_norm']))
    t[p + 'mlp.c_fc.weight'] = _np(b['mlp']['wi'])
    t[p + 'mlp.c_fc.bias'] = _np(b['mlp']['wi_bias'])
    t[p + 'mlp.c_proj.weight'] = _np(b['mlp']['wo'])
    t[p + 'mlp.c_proj.bias'] = _np(b['mlp']['wo_bias'])
  return hf, t


# What each export writes, and the lmjax model fields it requires.
EXPORTS = {
    'llama': (llama_from_lmjax, dict(norm='rmsnorm', norm_position='pre', activation='swiglu',
                                     position='rope', use_bias=False, scan_layers=False)),
    'gpt2': (gpt2_from_lmjax, dict(norm='layernorm', norm_position='pre', activation='gelu',
                                   position='learned', use_bias=True, tie_embeddings=True,
                                   scan_layers=False)),
}


def fold_mup(model_fields: dict, params) -> dict:
  """The standard-parametrization weights that compute what a mup model computes (spec.Mup):
  the attention factor folded into the query projection, the residual-branch factor into the
  two projections that write into the residual stream, the output multiplier into the
  unembedding. A tied embedding cannot take the output multiplier without changing the input:
  ConvertError unless it is 1 (the base width)."""
  from lmjax.model.spec import ModelConfig
  cfg = ModelConfig.from_config(model_fields)
  mup = cfg.mup
  if cfg.tie_embeddings and mup.logits != 1:
    raise ConvertError(f'model.parametrization=mup: the output multiplier {mup.logits:g} (base '
                       'width / width) cannot be folded into tied embeddings; export needs '
                       'model.tie_embeddings=False or the base width')
  scaled = lambda x, f: x if f == 1 else _np(x) * np.float32(f)
  out = dict(params)
  for i in range(cfg.n_layers):
    block = dict(out[f'block_{i}'])
    attn, mlp = dict(block['attn']), dict(block['mlp'])
    for name in ('query', 'query_bias'):
      if name in attn:
        attn[name] = scaled(attn[name], mup.attention)
    for layer, names in ((attn, ('out', 'out_bias')), (mlp, ('wo', 'wo_bias'))):
      for name in names:
        if name in layer:
          layer[name] = scaled(layer[name], mup.residual)
    block.update(attn=attn, mlp=mlp)
    out[f'block_{i}'] = block
  if 'unembed' in out:
    out['unembed'] = scaled(out['unembed'], mup.logits)
  return out


def from_lmjax(model_fields: dict, params) -> tuple[dict, dict]:
  """(HF config dict, {tensor name: array}) of an lmjax llama-style or gpt2-style model (a mup
  model's multipliers folded into its weights, `fold_mup`); raises ConvertError naming the
  first field that neither form has."""
  m = dict(model_fields)
  if m.get('adapter_dim'):
    raise ConvertError('model.adapter_dim: bottleneck adapters have no Hugging Face form (LoRA '
                       'adapters export merged, or as a PEFT adapter)')
  if m.get('parametrization') == 'mup' and not m.get('scan_layers'):
    params = fold_mup(m, params)
  for kind, (fn, needs) in EXPORTS.items():
    if all(m.get(k) == v for k, v in needs.items()):
      if kind == 'gpt2' and m.get('moe_experts'):
        raise ConvertError('model.moe_experts: a mixture of experts exports as Mixtral, '
                           'llama-style (GPT-2 has no experts)')
      if kind == 'gpt2' and (m['n_kv_heads'] != m['n_heads'] or m.get('head_dim')):
        raise ConvertError('model.n_kv_heads / head_dim: GPT-2 has neither GQA nor its own '
                           'head_dim')
      return fn(m, params)
  llama = EXPORTS['llama'][1]
  wrong = next(k for k, v in llama.items() if m.get(k) != v)
  raise ConvertError(f'model.{wrong}={m.get(wrong)!r}: Hugging Face export covers llama-style '
                     f'({", ".join(f"{k}={v}" for k, v in llama.items())}) and gpt2-style models')


def write(directory: str, hf_config: dict, tensors: dict):
  """config.json and model.safetensors into `directory` (created; files written atomically)."""
  from safetensors.numpy import save
  from lmjax.core.atomic import write_bytes, write_json
  os.makedirs(directory, exist_ok=True)
  write_bytes(os.path.join(directory, 'model.safetensors'),
              save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                   metadata={'format': 'pt'}))
  write_json(os.path.join(directory, 'config.json'), hf_config, indent=2)
