"""A LoRA run's adapters as a Hugging Face PEFT adapter (adapter_config.json and
adapter_model.safetensors), which `peft.PeftModel.from_pretrained` loads onto the base model
exported by `launch.convert --to_hf` (lmjax/model/hf.py).

PEFT's LoRA computes W·x + (α/r)·B·(A·x) with A = lora_A.weight (r, in) and B = lora_B.weight
(out, r): the transposes of lmjax's A (in, r) and B (r, out), with the same scale α/r. The input
of each adapted Linear is what lmjax's adapter reads (a folded norm scale applied; layers.
lora_delta). Tensor names follow PEFT's saved form, `base_model.model.<the module path in
transformers>.lora_A.weight`. Llama-style models only (q_proj ... down_proj): GPT-2's fused
c_attn takes one adapter for q, k and v together, which lmjax's three do not make.
"""
from __future__ import annotations

import json
import os

import numpy as np

from lmjax.config import lora_matches
from lmjax.model.hf import EXPORTS, ConvertError

# lmjax's projection -> the Linear of a transformers LLaMA layer.
LLAMA_MODULES = {'attn/query': 'self_attn.q_proj', 'attn/key': 'self_attn.k_proj',
                 'attn/value': 'self_attn.v_proj', 'attn/out': 'self_attn.o_proj',
                 'mlp/wi': 'mlp.gate_proj', 'mlp/wi_gate': 'mlp.up_proj',
                 'mlp/wo': 'mlp.down_proj'}


def _check(m: dict):
  if not m.get('lora_rank'):
    raise ConvertError('model.lora_rank=0: the run has no LoRA adapters to export (export the '
                       'model itself with --to_hf)')
  llama = EXPORTS['llama'][1]
  wrong = next((k for k, v in llama.items() if m.get(k) != v), None)
  if wrong:
    raise ConvertError(f'model.{wrong}={m.get(wrong)!r}: PEFT export covers llama-style models '
                       f'({", ".join(f"{k}={v}" for k, v in llama.items())}); export the merged '
                       'model with --to_hf instead')
  for field in ('scan_layers', 'moe_experts'):
    if m.get(field):
      raise ConvertError(f'model.{field}={m[field]!r}: PEFT export covers unscanned dense '
                         'llama-style models; export the merged model with --to_hf instead')


def from_lmjax(model_fields: dict, params, base_path: str = '') -> tuple[dict, dict]:
  """(adapter_config.json as a dict, {tensor name: array}) of a LoRA model's adapters."""
  m = dict(model_fields)
  _check(m)
  targets = [path for path in LLAMA_MODULES if lora_matches(m['lora_targets'], path)]
  tensors = {}
  for i in range(m['n_layers']):
    block = params[f'block_{i}']
    for path in targets:
      module, name = path.split('/')
      a = np.asarray(block[module][f'{name}_lora_a'], np.float32)
      b = np.asarray(block[module][f'{name}_lora_b'], np.float32)
      prefix = f'base_model.model.model.layers.{i}.{LLAMA_MODULES[path]}'
      tensors[f'{prefix}.lora_A.weight'] = a.reshape(-1, a.shape[-1]).T
      tensors[f'{prefix}.lora_B.weight'] = b.reshape(b.shape[0], -1).T
  config = {'peft_type': 'LORA', 'task_type': 'CAUSAL_LM', 'r': int(m['lora_rank']),
            'lora_alpha': float(m['lora_alpha']), 'lora_dropout': float(m['lora_dropout']),
            'target_modules': sorted({LLAMA_MODULES[p].split('.')[-1] for p in targets}),
            'bias': 'none', 'fan_in_fan_out': False, 'use_rslora': False,
            'init_lora_weights': True, 'inference_mode': True, 'modules_to_save': None,
            'base_model_name_or_path': base_path or None}
  return config, tensors


def write(directory: str, config: dict, tensors: dict):
  """adapter_config.json and adapter_model.safetensors into `directory` (files atomic)."""
  from safetensors.numpy import save

  from lmjax.core.atomic import write_bytes, write_json
  os.makedirs(directory, exist_ok=True)
  write_bytes(os.path.join(directory, 'adapter_model.safetensors'),
              save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                   metadata={'format': 'pt'}))
  write_json(os.path.join(directory, 'adapter_config.json'), json.loads(json.dumps(config)),
             indent=2)
