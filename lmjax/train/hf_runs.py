"""Hugging Face models as run directories: what launch.convert calls.

- `import_hf(hf_dir, workdir)`: a Hugging Face LLaMA-family or GPT-2 model directory
  (lmjax/model/hf.py reads and converts it) becomes a run directory: config.json,
  checkpoints/0 (its params and a fresh optimizer state), tokenizer.json when the model has one,
  and lmjax_config.py, a config file of the model with `train.init_from` set to the directory.
  `launch.eval` and `launch.sample` use it as it is; `launch.train --config=WORKDIR/
  lmjax_config.py` trains on from the imported params (any data and optimizer; the model fields
  must stay, lmjax/config.py IMPORT_MAY_DIFFER). The directory is built beside its place and
  renamed into it, so a failure leaves nothing.
- `export_hf(workdir, hf_dir)`: a llama-style or gpt2-style run's params (newest checkpoint or
  `step`) as config.json and model.safetensors, which transformers' from_pretrained loads, and
  its tokenizer (byte or tokenizer.json) for AutoTokenizer, the separator as BOS and EOS. A
  LoRA run exports merged (its adapters folded into the weights, lmjax/model/lora.py).
- `export_peft(workdir, out)`: a LoRA run's adapters alone as a PEFT adapter directory
  (lmjax/model/peft.py), to load onto the base exported with `export_hf`.
- `merge_lora(workdir, out)`: a LoRA run's merged params as a run directory like an import's
  (checkpoints/0, config.json with the adapters' fields reset), which `train.init_from` starts
  from (a DPO stage after a LoRA SFT stage, say) and launch.eval/sample read as they are.
Every bad input is an LmjaxError naming its flag.
"""
from __future__ import annotations

import os
import shutil

from lmjax.config import ConfigError, resolve, to_dict
from lmjax.core import pyfile
from lmjax.core.atomic import write_text
from lmjax.core.errors import LmjaxError
from lmjax.core.rundir import RunDir
from lmjax.model import hf

CONFIG_FILE = '''"""Imported by launch.convert from {source}: its model, trained on with
  python -m launch.train --config={path} --workdir=NEW [--config.data.dataset=...]
Any data, optimizer or training field may change; the model fields must stay."""
from lmjax.config import default_config


def get_config():
  c = default_config()
  c.model.update({model!r})
  c.data.seq_len = {seq_len}
  c.data.dataset = {dataset!r}{tokenizer}
  c.train.init_from = {out!r}
  c.train.init_step = 0
  return c
'''


class HFRunError(LmjaxError, ValueError):
  """A Hugging Face directory or run that cannot be converted as asked; one line naming the
  flag."""


def _empty_target(path, flag):
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise HFRunError(f'{flag}={path} exists and is not empty: give a new directory')


def import_hf(hf_dir: str, workdir: str, seq_len: int = 0, log=print) -> str:
  """Writes the run directory of the model in `hf_dir` (module doc); `seq_len` is its
  data.seq_len (0: the model's positions, at most 1024). Returns the directory."""
  if seq_len < 0:
    raise HFRunError(f'--seq_len={seq_len} is not allowed: >= 0')
  out = os.path.abspath(workdir)
  _empty_target(out, '--workdir')
  try:
    hf_config, tensors = hf.read(hf_dir)
    fields, params = hf.to_lmjax(hf_config, tensors)
  except hf.ConvertError as e:
    raise HFRunError(f'--from_hf={hf_dir}: {e}') from None
  seq_len = seq_len or min(fields['max_seq_len'], 1024)
  tokenizer_json = os.path.join(hf_dir, 'tokenizer.json')
  has_tokenizer = os.path.isfile(tokenizer_json)
  # Without a tokenizer.json, the byte tokenizer where the vocabulary holds it, else random
  # tokens until the user names a tokenizer.
  dataset = 'python_stdlib' if has_tokenizer or fields['vocab_size'] >= 257 else 'random'
  tmp = f'{out}.tmp-{os.getpid()}'
  try:
    os.makedirs(tmp)
    tokenizer = ''
    if has_tokenizer:
      shutil.copyfile(tokenizer_json, RunDir(tmp).tokenizer_json)
      tokenizer = (f"\n  c.data.tokenizer = 'hf'\n  c.data.hf_tokenizer = "
                   f"{RunDir(out).tokenizer_json!r}\n  c.data.hf_sep_token = "
                   f"{_sep_token(tokenizer_json, hf_config)!r}")
    _write_run(tmp, out, fields, params, seq_len, dataset, os.path.abspath(hf_dir), tokenizer)
    if os.path.isdir(out):
      os.rmdir(out)  # empty (checked above)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  log(f'wrote {out}: {fields["n_layers"]} layers, d_model {fields["d_model"]}, vocab '
      f'{fields["vocab_size"]} ({fields["preset"]}); config file {RunDir(out).config_file}')
  return out


def _sep_token(tokenizer_json, hf_config):
  """The model's end-of-text token, which lmjax puts before every document ('' to let
  lmjax.data.tokenizers find one)."""
  from tokenizers import Tokenizer
  eos = hf_config.get('eos_token_id')
  eos = eos[0] if isinstance(eos, list) and eos else eos
  if not isinstance(eos, int):
    return ''
  return Tokenizer.from_file(tokenizer_json).id_to_token(eos) or ''


def _write_run(tmp, out, fields, params, seq_len, dataset, source, tokenizer):
  import jax

  from lmjax.train import sharding
  from lmjax.train.checkpoint import Checkpoints
  from lmjax.train.steps import build_train_step
  run = RunDir(tmp)
  text = CONFIG_FILE.format(source=source, path=RunDir(out).config_file, model=fields,
                            seq_len=seq_len, dataset=dataset, out=out, tokenizer=tokenizer)
  write_text(run.config_file, text)
  config = pyfile.call_function(run.config_file, 'get_config',
                                module_name='lmjax_imported_config')
  config.train.init_from = ''  # the run directory itself starts from nothing
  final_tokenizer = config.data.hf_tokenizer
  if final_tokenizer:  # read from the copy until the directory is in place
    config.data.hf_tokenizer = run.tokenizer_json
  try:
    config = resolve(config)
  except ConfigError as e:
    raise HFRunError(f'--from_hf={source}: the imported model is not a valid lmjax config: '
                     f'{e}') from None
  config.unlock()
  config.data.hf_tokenizer = final_tokenizer
  config.lock()
  state = build_train_step(config, sharding.make_mesh(config)).init_state()
  if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(state.params):
    raise HFRunError(f'--from_hf={source}: the converted params do not fit the lmjax model')
  state = state.replace(params=jax.tree_util.tree_map(
      lambda p, x: jax.numpy.asarray(p, x.dtype), params, state.params))
  run.write_config(to_dict(config))
  ckpt = Checkpoints(tmp, config.checkpoint)
  ckpt.save(0, state, None, {'step': 0, 'config': to_dict(config), 'imported': source},
            force=True)
  ckpt.close()


def export_hf(workdir: str, hf_dir: str, step=None, log=print) -> str:
  """Writes the run's params as a Hugging Face model directory `hf_dir` (module doc)."""
  import jax

  from lmjax.train import trained
  _empty_target(hf_dir, '--to_hf')
  run = trained.load(workdir, step)
  fields, params = _merged(run)
  try:
    hf_config, tensors = hf.from_lmjax(fields, jax.device_get(params))
  except hf.ConvertError as e:
    raise HFRunError(str(e)) from None
  hf.write(hf_dir, hf_config, tensors)
  written = _write_tokenizer(run.config, hf_dir)
  merged = ', LoRA adapters merged' if run.config.model.lora_rank else ''
  log(f'wrote {hf_dir}: config.json, model.safetensors ({len(tensors)} tensors, '
      f'{hf_config["architectures"][0]}{merged}){written} from step {run.step}')
  return hf_dir


def _merged(run) -> tuple[dict, object]:
  """(model fields, params) of a trained run with any LoRA adapters folded in."""
  from lmjax.model import lora
  fields = run.config.model.to_dict()
  if not fields.get('lora_rank'):
    return fields, run.params
  params = lora.merge(run.params, run.model.cfg)
  fields.update(lora_rank=0, lora_dropout=0.0)
  return fields, params


def export_peft(workdir: str, out: str, step=None, log=print) -> str:
  """Writes a LoRA run's adapters as a PEFT adapter directory `out` (module doc)."""
  import jax

  from lmjax.model import peft
  from lmjax.train import trained
  _empty_target(out, '--to_peft')
  run = trained.load(workdir, step)
  try:
    config, tensors = peft.from_lmjax(run.config.model.to_dict(), jax.device_get(run.params))
  except hf.ConvertError as e:
    raise HFRunError(f'--to_peft: {e}') from None
  peft.write(out, config, tensors)
  log(f'wrote {out}: adapter_config.json, adapter_model.safetensors ({len(tensors)} tensors, '
      f'rank {config["r"]}, {", ".join(config["target_modules"])}) from step {run.step}; load '
      f'it onto the base run\'s --to_hf export')
  return out


def merge_lora(workdir: str, out: str, step=None, log=print) -> str:
  """Writes a run directory `out` of a LoRA run's merged params (module doc), whole or not at
  all."""
  from lmjax.train import sharding, trained
  from lmjax.train.checkpoint import Checkpoints
  from lmjax.train.steps import build_train_step
  _empty_target(out, '--merge_lora')
  run = trained.load(workdir, step)
  if not run.config.model.lora_rank or run.config.model.adapter_dim:
    raise HFRunError(f'--workdir={workdir}: ' + (
        'bottleneck adapters (model.adapter_dim) are nonlinear and cannot be merged'
        if run.config.model.adapter_dim else 'the run has no LoRA adapters to merge'))
  fields, params = _merged(run)
  config = run.config.copy_and_resolve_references()
  config.model.update(fields)
  config.train.update(init_from='', init_params=False, init_step=0)
  config = resolve(config)
  tmp = f'{out.rstrip("/")}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    state = build_train_step(config, sharding.make_mesh(config)).init_state()
    state = state.replace(params=params)
    RunDir(tmp).write_config(to_dict(config))
    ckpt = Checkpoints(tmp, config.checkpoint)
    ckpt.save(0, state, None, {'step': 0, 'config': to_dict(config),
                               'imported': f'{workdir} step {run.step} (LoRA merged)'},
              force=True)
    ckpt.close()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.isdir(out):
      os.rmdir(out)  # empty (checked above)
    os.rename(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  log(f'wrote {out}: the merged model of {workdir} at step {run.step}; start from it with '
      f'--config.train.init_from={out}')
  return out


def _write_tokenizer(config, hf_dir) -> str:
  """The run's tokenizer beside the model, for transformers' AutoTokenizer: the byte
  tokenizer as a tokenizer.json (lmjax.data.tokenizers.byte_tokenizer_json), a tokenizer.json
  as it is; with tokenizer_config.json naming the separator as BOS and EOS. A SentencePiece
  model is not written. Returns what was written, for the log line."""
  import json

  from lmjax.data import loader, tokenizers
  kind = config.data.tokenizer
  if kind == 'sentencepiece':
    return ' (no tokenizer: SentencePiece models are not exported)'
  tok = loader.load_tokenizer(config)
  if kind == 'byte':
    text, sep = tokenizers.byte_tokenizer_json(), tokenizers.BYTE_SEP_TOKEN
  else:
    with open(config.data.hf_tokenizer, encoding='utf-8') as f:
      text = f.read()
    sep = tok.tok.id_to_token(tok.sep_id)
  write_text(os.path.join(hf_dir, 'tokenizer.json'), text)
  write_text(os.path.join(hf_dir, 'tokenizer_config.json'), json.dumps({
      'tokenizer_class': 'PreTrainedTokenizerFast', 'bos_token': sep, 'eos_token': sep,
      'model_max_length': int(config.data.seq_len)}, indent=1))
  return ', tokenizer.json and tokenizer_config.json'
