"""Text from a run: what launch.sample and notebooks call.

- `continue_prompts(run, tokenizer, prompts, ...)`: a loaded run (lmjax.train.trained) continues
  text prompts, each after the separator that starts every document (lmjax/infer/decode.py does
  the decoding);
- `sample_run(workdir, prompts, ...)`: the same from a run directory, the rows written to
  RUN/samples/<step>-seed<seed>.jsonl (or `output`), whole or not at all;
- `read_prompts(prompts, prompts_file)`: --prompt and --prompts_file's lines (\\n and \\t escaped).
Every bad input (run, step, params, setting, output path) is an LmjaxError naming its flag, raised
before anything is decoded or written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from lmjax.core import storage
from lmjax.core.errors import LmjaxError
from lmjax.core.rundir import RunDir
from lmjax.data import loader
from lmjax.infer import mbr as mbr_module
from lmjax.infer.decode import BeamSearch, Decoder, DecodeError, Sampler
from lmjax.train import trained


class SampleInputError(LmjaxError, ValueError):
  """Prompts or an output path that cannot be used; one line naming the flag."""


def read_prompts(prompts=(), prompts_file=None) -> list[str]:
  """The --prompt values, then the non-empty lines of --prompts_file with \\n and \\t escapes."""
  out = list(prompts)
  if prompts_file:
    try:
      with open(prompts_file, encoding='utf-8') as f:
        out += [line.rstrip('\n').replace('\\n', '\n').replace('\\t', '\t') for line in f
                if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
      raise SampleInputError(f'--prompts_file={prompts_file}: cannot read it ({e})') from None
  if not out:
    raise SampleInputError('no prompt: give --prompt=TEXT (repeatable) or --prompts_file=PATH')
  return out


def continue_prompts(run, tokenizer, prompts, max_new_tokens=256, sampler=None, beam=0,
                     length_alpha=1.0, stop_at_end=True, cache=True, seed=0, mbr=0,
                     mbr_utility='chrf') -> list[dict]:
  """Continues text prompts with a loaded run (lmjax.train.trained.Trained): each prompt is
  tokenised after the separator that starts every document; beam > 0 runs beam search, else
  `sampler` (default: ancestral sampling at temperature 1); `mbr` > 0 samples that many
  continuations of each prompt and keeps the one of highest expected `mbr_utility` against the
  others (lmjax/infer/mbr.py). Returns one dict per prompt: prompt, text, tokens, per-token
  log-probs, whether the model ended the document, and the settings (with MBR, the candidates
  and their expected utilities)."""
  sampler = sampler or Sampler()
  sampler.check()
  if mbr:
    return _mbr(run, tokenizer, prompts, mbr, mbr_utility, max_new_tokens=max_new_tokens,
                sampler=sampler, stop_at_end=stop_at_end, cache=cache, seed=seed)
  ids = [np.concatenate([[tokenizer.sep_id], tokenizer.encode(p)]).astype(np.int32)
         for p in prompts]
  end = tokenizer.sep_id if stop_at_end else None
  if beam:
    result = BeamSearch(run.model, max_new_tokens, beam, length_alpha, end)(run.params, ids)
  else:
    result = Decoder(run.model, max_new_tokens, sampler, end, cache=cache)(run.params, ids,
                                                                          seed=seed)
  settings = {'step': run.step, 'seed': seed, 'max_new_tokens': max_new_tokens, 'beam': beam,
              'length_alpha': length_alpha, **dataclasses.asdict(sampler)}
  out = []
  for i, prompt in enumerate(prompts):
    n = int(result.lengths[i])
    tokens = result.tokens[i, :n]
    out.append({'prompt': prompt, 'text': tokenizer.decode(tokens[tokens != tokenizer.sep_id]),
                'tokens': tokens.tolist(),
                'logprobs': [round(float(x), 5) for x in result.logprobs[i, :n]],
                'ended': bool(end is not None and n and tokens[-1] == end), **settings})
  return out


def _mbr(run, tokenizer, prompts, n, utility, **settings) -> list[dict]:
  """`continue_prompts` with minimum Bayes risk: n samples of each prompt in one batch (row
  i·n + j is prompt i's sample j), the chosen one's row with the candidates beside it."""
  rows = continue_prompts(run, tokenizer, [p for p in prompts for _ in range(n)], **settings)
  out = []
  for i in range(len(prompts)):
    group = rows[i * n:(i + 1) * n]
    texts = [r['text'] for r in group]
    chosen, scores = mbr_module.select(texts, utility)
    out.append({**group[chosen], 'mbr': n, 'mbr_utility': utility, 'mbr_chosen': chosen,
                'mbr_candidates': texts,
                'mbr_expected_utility': [round(float(s), 6) for s in scores]})
  return out


def continue_run(workdir, prompts, *, step=None, params=None, max_new_tokens=256, sampler=None,
                 beam=0, length_alpha=1.0, stop_at_end=True, cache=True, seed=0, mbr=0,
                 mbr_utility='chrf'):
  """(the loaded run, `continue_prompts`' rows) for the run in `workdir` at its newest
  checkpoint, `step`, or exported `params`."""
  if step is not None and params:
    raise SampleInputError('--step and --params are exclusive: a checkpoint step or exported '
                           'params')
  _check_settings(max_new_tokens, beam, length_alpha, sampler or Sampler())
  mbr_module.check(mbr, mbr_utility, beam)
  run = trained.load(workdir, step, params)
  tokenizer = loader.load_tokenizer(run.config)
  return run, continue_prompts(run, tokenizer, list(prompts), max_new_tokens, sampler, beam,
                               length_alpha, stop_at_end, cache, seed, mbr, mbr_utility)


def _check_settings(max_new_tokens, beam, length_alpha, sampler):
  if max_new_tokens < 1:
    raise DecodeError(f'--max_new_tokens={max_new_tokens} is not allowed: at least 1')
  if beam < 0 or length_alpha < 0:
    raise DecodeError(f'--beam={beam} and --length_alpha={length_alpha} must be >= 0')
  sampler.check(prefix='--')


def output_path(workdir, output, step, seed) -> str:
  """Where the rows go: `output`, else RUN/samples/<step>-seed<seed>.jsonl; SampleInputError
  for a directory or a path whose folder cannot be made."""
  path = output or RunDir(workdir).samples_path(step if step >= 0 else 'params', seed)
  if os.path.isdir(path):
    raise SampleInputError(f'--output={path} is a directory: give a file path (.jsonl)')
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise SampleInputError(f'--output={path}: {folder} is a file, not a directory')
  return path


def sample_run(workdir, prompts, *, output=None, seed=0, log=print, **settings) -> str:
  """launch.sample: `continue_run`, each prompt and its continuation printed, the rows written
  as JSON lines; returns the path written. `settings` are continue_run's."""
  if output:
    output_path(workdir, output, 0, seed)  # a bad --output fails before any decoding
  t0 = time.time()
  run, rows = continue_run(workdir, prompts, seed=seed, **settings)
  seconds = time.time() - t0
  path = output_path(workdir, output, run.step, seed)
  for i, row in enumerate(rows):
    log(f'--- prompt {i}: {row["prompt"]!r}\n{row["prompt"]}{row["text"]}')
  try:
    if not storage.is_remote(path):
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    storage.write_text(path, ''.join(json.dumps(row) + '\n' for row in rows))
  except OSError as e:
    raise SampleInputError(f'--output={path}: cannot write it ({e.strerror or e})') from None
  total = sum(len(row['tokens']) for row in rows)
  log(f'{total} tokens in {seconds:.1f} s (compile included); wrote {path}')
  return path
