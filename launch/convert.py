"""Hugging Face checkpoints in and out (lmjax/model/hf.py).

  python -m launch.convert --from_hf=HF_DIR --workdir=OUT [--seq_len=1024]
  python -m launch.convert --to_hf=HF_DIR --workdir=RUN [--step=S]

--from_hf writes OUT, a run directory of the imported model: config.json, checkpoints/0 (its
params and a fresh optimizer state) and lmjax_config.py, a config file with the model's fields
and train.init_from=OUT. `launch.eval` and `launch.sample --workdir=OUT` use it as it is;
`python -m launch.train --config=OUT/lmjax_config.py --workdir=NEW --config.data....` trains on
from the imported params (any data and optimizer; the model fields must stay). OUT is built in a
temporary directory and renamed into place, so a failure leaves nothing.

--to_hf writes config.json and model.safetensors of a llama-style or gpt2-style run's params
(newest checkpoint or --step) into HF_DIR, which transformers' from_pretrained loads.

Exit status 2 for a malformed directory, an unsupported model or a bad flag (one line).
"""
import os
import shutil

from absl import app, flags, logging

from launch.flags_util import fail, parse_flags

_FROM = flags.DEFINE_string('from_hf', None, 'A Hugging Face model directory to import.')
_TO = flags.DEFINE_string('to_hf', None, 'A directory to export the run to.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The lmjax run directory (written by --from_hf, '
                               'read by --to_hf).')
_STEP = flags.DEFINE_integer('step', None, '--to_hf: the checkpoint step (default: newest).')
_SEQ_LEN = flags.DEFINE_integer('seq_len', 0, '--from_hf: data.seq_len of the imported config '
                                '(0: the model\'s positions, at most 1024).')

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


def _empty_target(path, flag):
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    fail(f'{flag}={path} exists and is not empty: give a new directory')


def import_hf():
  from lmjax.model import hf
  out = os.path.abspath(_WORKDIR.value)
  _empty_target(out, '--workdir')
  try:
    fields, params = hf.to_lmjax(*hf.read(_FROM.value))
  except hf.ConvertError as e:
    fail(f'--from_hf={_FROM.value}: {e}')
  seq_len = _SEQ_LEN.value or min(fields['max_seq_len'], 1024)
  tokenizer_json = os.path.join(_FROM.value, 'tokenizer.json')
  has_tokenizer = os.path.isfile(tokenizer_json)
  # Without a tokenizer.json, the byte tokenizer where the vocabulary holds it, else random
  # tokens until the user names a tokenizer.
  dataset = 'python_stdlib' if has_tokenizer or fields['vocab_size'] >= 257 else 'random'
  tmp = f'{out}.tmp-{os.getpid()}'
  try:
    os.makedirs(tmp)
    tokenizer = ''
    if has_tokenizer:
      shutil.copyfile(tokenizer_json, os.path.join(tmp, 'tokenizer.json'))
      tokenizer = (f"\n  c.data.tokenizer = 'hf'\n  c.data.hf_tokenizer = "
                   f"{os.path.join(out, 'tokenizer.json')!r}\n  c.data.hf_sep_token = "
                   f"{_sep_token(tokenizer_json, _read_json(_FROM.value))!r}")
    _write_run(tmp, out, fields, params, seq_len, dataset, os.path.abspath(_FROM.value),
               tokenizer)
    if os.path.isdir(out):
      os.rmdir(out)  # empty (checked above)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  print(f'wrote {out}: {fields["n_layers"]} layers, d_model {fields["d_model"]}, vocab '
        f'{fields["vocab_size"]} ({fields["preset"]}); config file {out}/lmjax_config.py')


def _read_json(directory):
  import json
  with open(os.path.join(directory, 'config.json')) as f:
    return json.load(f)


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
  from lmjax.core import pyfile
  from lmjax.train import checkpoint, steps
  from lmjax.core.atomic import write_json, write_text
  from lmjax.config import ConfigError, resolve, to_dict
  text = CONFIG_FILE.format(source=source, path=os.path.join(out, 'lmjax_config.py'),
                            model=fields, seq_len=seq_len, dataset=dataset, out=out,
                            tokenizer=tokenizer)
  write_text(os.path.join(tmp, 'lmjax_config.py'), text)
  config = pyfile.call_function(os.path.join(tmp, 'lmjax_config.py'), 'get_config',
                                module_name='lmjax_imported_config')
  config.train.init_from = ''  # the run directory itself starts from nothing
  final_tokenizer = config.data.hf_tokenizer
  if final_tokenizer:  # read from the copy until the directory is in place
    config.data.hf_tokenizer = os.path.join(tmp, 'tokenizer.json')
  try:
    config = resolve(config)
  except ConfigError as e:
    fail(f'--from_hf={source}: the imported model is not a valid lmjax config: {e}')
  config.unlock()
  config.data.hf_tokenizer = final_tokenizer
  config.lock()
  model, tx = steps.build_model_and_optimizer(config)
  state = steps.init_state(model, tx, config)
  want = jax.tree_util.tree_structure(state.params)
  if jax.tree_util.tree_structure(params) != want:
    fail(f'--from_hf={source}: the converted params do not fit the lmjax model')
  state = state.replace(params=jax.tree_util.tree_map(
      lambda p, x: jax.numpy.asarray(p, x.dtype), params, state.params))
  write_json(os.path.join(tmp, 'config.json'), to_dict(config), indent=2)
  ckpt = checkpoint.Checkpoints(tmp, config.checkpoint)
  ckpt.save(0, state, None, {'step': 0, 'config': to_dict(config), 'imported': source},
            force=True)
  ckpt.close()


def export_hf():
  import jax
  from lmjax.model import hf
  from lmjax.train import trained
  _empty_target(_TO.value, '--to_hf')
  try:
    run = trained.load(_WORKDIR.value, _STEP.value)
    hf_config, tensors = hf.from_lmjax(run.config.model.to_dict(),
                                            jax.device_get(run.params))
  except (trained.RunError, hf.ConvertError) as e:
    fail(str(e))
  hf.write(_TO.value, hf_config, tensors)
  print(f'wrote {_TO.value}: config.json and model.safetensors ({len(tensors)} tensors, '
        f'{hf_config["architectures"][0]}) from step {run.step}')


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  if bool(_FROM.value) == bool(_TO.value):
    fail('give exactly one of --from_hf=HF_DIR (import) and --to_hf=HF_DIR (export)')
  if not _WORKDIR.value:
    fail('--workdir is required: the lmjax run directory to write or read')
  if _SEQ_LEN.value < 0:
    fail(f'--seq_len={_SEQ_LEN.value} is not allowed: >= 0')
  import_hf() if _FROM.value else export_hf()


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
