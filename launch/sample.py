"""Sample from a trained run: python -m launch.sample --workdir=RUN --prompt='def main(' ...

Each prompt (--prompt, repeatable, and/or --prompts_file, one prompt per line with \\n and \\t
escapes) is tokenised with the run's tokenizer after the separator that starts every document,
and continued by the model of the newest checkpoint (or --step, or --params) for up to
--max_new_tokens tokens or until the model ends the document. Decoding is lmjax/infer/decode.py: a KV
cache, the samplers (--temperature 0 is greedy; --top_k, --top_p, --min_p, --epsilon truncate),
or beam search (--beam=W with --length_alpha). The same --seed gives the same samples.

Prints each prompt and its continuation, and writes one JSON line per prompt (prompt, text,
tokens, per-token log-probabilities, settings) to --output (default
RUN/samples/<step>-seed<seed>.jsonl, written whole). Exit status 2 for a bad run, step or flag.
"""
import json
import os
import time

from absl import app, flags, logging

from launch.flags_util import fail, parse_flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_PARAMS = flags.DEFINE_string('params', None, 'Params written by export_params instead of a '
                              'checkpoint.')
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'A prompt (repeatable).')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'A file of prompts, one per line.')
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 256, 'Tokens to generate at most.')
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, '0 is greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens (0: off).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass (1: off).')
_MIN_P = flags.DEFINE_float('min_p', 0.0, 'Keep tokens of probability >= min_p x the largest.')
_EPSILON = flags.DEFINE_float('epsilon', 0.0, 'Keep tokens of probability >= epsilon.')
_BEAM = flags.DEFINE_integer('beam', 0, 'Beam search of this width (0: sample).')
_ALPHA = flags.DEFINE_float('length_alpha', 1.0, 'Beam search length normalisation: score / '
                            'length^alpha.')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_STOP = flags.DEFINE_bool('stop_at_end', True, 'Stop a prompt when the model ends the document.')
_CACHE = flags.DEFINE_bool('cache', True, 'Use the KV cache (off: the full forward pass per '
                           'token, for checking).')
_OUTPUT = flags.DEFINE_string('output', None, 'JSONL output path.')
flags.mark_flags_as_required(['workdir'])


def _prompts():
  prompts = list(_PROMPT.value)
  if _PROMPTS_FILE.value:
    try:
      with open(_PROMPTS_FILE.value, encoding='utf-8') as f:
        prompts += [line.rstrip('\n').replace('\\n', '\n').replace('\\t', '\t') for line in f
                    if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
      fail(f'--prompts_file={_PROMPTS_FILE.value}: cannot read it ({e})')
  if not prompts:
    fail('no prompt: give --prompt=TEXT (repeatable) or --prompts_file=PATH')
  return prompts


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  prompts = _prompts()
  if _MAX_NEW.value < 1:
    fail(f'--max_new_tokens={_MAX_NEW.value} is not allowed: at least 1')
  if _BEAM.value < 0 or _ALPHA.value < 0:
    fail(f'--beam={_BEAM.value} and --length_alpha={_ALPHA.value} must be >= 0')
  if _STEP.value is not None and _PARAMS.value:
    fail('--step and --params are exclusive: a checkpoint step or exported params')
  from lmjax.data import loader
  from lmjax.infer import decode
  from lmjax.train import trained
  from lmjax.data.datasets import DataError
  sampler = decode.Sampler(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, _MIN_P.value,
                           _EPSILON.value)
  try:
    sampler.check(prefix='--')
  except ValueError as e:
    fail(str(e))
  try:
    run = trained.load(_WORKDIR.value, _STEP.value, _PARAMS.value)
    tokenizer = loader.load_tokenizer(run.config)
  except (trained.RunError, DataError) as e:
    fail(str(e))
  try:
    t0 = time.time()
    rows = decode.continue_prompts(run, tokenizer, prompts, _MAX_NEW.value, sampler, _BEAM.value,
                                   _ALPHA.value, _STOP.value, _CACHE.value, _SEED.value)
  except ValueError as e:
    fail(str(e))
  seconds = time.time() - t0
  for i, row in enumerate(rows):
    print(f'--- prompt {i}: {row["prompt"]!r}\n{row["prompt"]}{row["text"]}')
  lines = [json.dumps(row) for row in rows]
  path = _OUTPUT.value or os.path.join(
      _WORKDIR.value, 'samples', f'{run.step if run.step >= 0 else "params"}-seed{_SEED.value}.jsonl')
  from lmjax.core.atomic import write_text
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  write_text(path, '\n'.join(lines) + '\n')
  total = sum(len(row['tokens']) for row in rows)
  print(f'{total} tokens in {seconds:.1f} s (compile included); wrote {path}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
