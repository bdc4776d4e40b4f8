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
from lmjax.infer.speculative import Speculative
from lmjax.model import quantize as quantization
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
                     mbr_utility='chrf', draft=None, draft_k=4, beam_groups=1,
                     diversity=0.0) -> list[dict]:
  """Continues text prompts with a loaded run (lmjax.train.trained.Trained): each prompt is
  tokenised after the separator that starts every document; beam > 0 runs beam search
  (diverse with `beam_groups` > 1 and `diversity`: each group's best beside the best), else
  `sampler` (default: ancestral sampling at temperature 1); `mbr` > 0 samples that many
  continuations of each prompt and keeps the one of highest expected `mbr_utility` against the
  others (lmjax/infer/mbr.py); `draft` (another loaded run of the same tokenizer) drafts
  `draft_k` tokens per round for speculative decoding (lmjax/infer/speculative.py). Returns one
  dict per prompt: prompt, text, tokens, per-token log-probs, whether the model ended the
  document, and the settings (with MBR, the candidates and their expected utilities; with a
  draft, its proposed and accepted tokens)."""
  sampler = sampler or Sampler()
  sampler.check()
  if mbr:
    return _mbr(run, tokenizer, prompts, mbr, mbr_utility, max_new_tokens=max_new_tokens,
                sampler=sampler, stop_at_end=stop_at_end, cache=cache, seed=seed)
  ids = [np.concatenate([[tokenizer.sep_id], tokenizer.encode(p)]).astype(np.int32)
         for p in prompts]
  end = tokenizer.sep_id if stop_at_end else None
  extra = [{} for _ in prompts]
  if beam:
    result = BeamSearch(run.model, max_new_tokens, beam, length_alpha, end, beam_groups,
                        diversity)(run.params, ids)
    if beam_groups > 1:
      text = lambda t, n: tokenizer.decode(t[:n][t[:n] != tokenizer.sep_id])
      extra = [{'beam_groups': beam_groups, 'diversity': diversity,
                'group_texts': [text(t, int(n)) for t, n in zip(result.group_tokens[i],
                                                                 result.group_lengths[i])],
                'group_scores': [round(float(x), 5) for x in result.group_scores[i]]}
               for i in range(len(prompts))]
  elif draft is not None:
    result = Speculative(run.model, draft.model, max_new_tokens, draft_k, sampler, end)(
        run.params, draft.params, ids, seed=seed)
    extra = [{'draft': draft.workdir, 'draft_k': draft_k,
              'draft_proposed': int(result.drafted[i]), 'draft_accepted': int(result.accepted[i]),
              'target_calls': int(result.rounds[i])} for i in range(len(prompts))]
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
                'ended': bool(end is not None and n and tokens[-1] == end), **settings,
                **extra[i]})
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
                 mbr_utility='chrf', draft=None, draft_k=4, quantize=None,
                 quantize_block=quantization.BLOCK, beam_groups=1, diversity=0.0, log=print):
  """(the loaded run, `continue_prompts`' rows) for the run in `workdir` at its newest
  checkpoint, `step`, or exported `params`; `draft`: a run directory to draft with;
  `quantize`: int8 | int4 | nf4 projection weights (lmjax/model/quantize.py)."""
  if step is not None and params:
    raise SampleInputError('--step and --params are exclusive: a checkpoint step or exported '
                           'params')
  _check_settings(max_new_tokens, beam, length_alpha, sampler or Sampler(), beam_groups,
                  diversity)
  mbr_module.check(mbr, mbr_utility, beam)
  if draft and (beam or mbr):
    raise SampleInputError('--draft is exclusive with --beam and --mbr')
  if draft and draft_k < 1:
    raise DecodeError(f'--draft_k={draft_k} is not allowed: at least 1 drafted token per round')
  if quantize:
    quantization.check(quantize, quantize_block)
  run = trained.load(workdir, step, params)
  if quantize:
    floats = quantization.weight_bytes(run.params)['total']
    run = trained.quantized(run, quantize, quantize_block)
    size = quantization.weight_bytes(run.params)['total']
    log(f'weights quantised to {quantize}: {size:,} bytes against {floats:,} float '
        f'({size / floats:.3f}x)')
  tokenizer = loader.load_tokenizer(run.config)
  drafting = _draft(draft, run, tokenizer) if draft else None
  return run, continue_prompts(run, tokenizer, list(prompts), max_new_tokens, sampler, beam,
                               length_alpha, stop_at_end, cache, seed, mbr, mbr_utility,
                               drafting, draft_k, beam_groups, diversity)


def _identity(tokenizer) -> str:
  """What makes two tokenizers the same: the byte tokenizer, a tokenizer.json's digest, a
  SentencePiece model file's bytes."""
  import hashlib
  path = getattr(tokenizer, 'path', None)
  if tokenizer.name.startswith('hf-') or not path:
    return tokenizer.name
  with open(path, 'rb') as f:
    return 'sp-' + hashlib.sha1(f.read()).hexdigest()


def _draft(workdir, run, tokenizer):
  """The draft run, loaded; SampleInputError naming --draft when it reads another tokenizer
  or has another vocabulary."""
  draft = trained.load(workdir, mesh_override={a: run.config.mesh[a]
                                                for a in ('data', 'fsdp', 'tensor')})
  try:
    other = loader.load_tokenizer(draft.config)
  except LmjaxError as e:
    raise SampleInputError(f'--draft={workdir}: its tokenizer cannot be read ({e})') from None
  if _identity(other) != _identity(tokenizer):
    raise SampleInputError(f'--draft={workdir}: it reads another tokenizer ({other.name}, the '
                           f'target {tokenizer.name}); a draft must share the target\'s')
  if draft.config.model.vocab_size != run.config.model.vocab_size:
    raise SampleInputError(f'--draft={workdir}: its vocabulary ({draft.config.model.vocab_size}) '
                           f'is not the target\'s ({run.config.model.vocab_size})')
  return draft


def _check_settings(max_new_tokens, beam, length_alpha, sampler, beam_groups=1, diversity=0.0):
  if max_new_tokens < 1:
    raise DecodeError(f'--max_new_tokens={max_new_tokens} is not allowed: at least 1')
  if beam < 0 or length_alpha < 0:
    raise DecodeError(f'--beam={beam} and --length_alpha={length_alpha} must be >= 0')
  if (beam_groups != 1 or diversity) and not beam:
    raise DecodeError('--beam_groups and --diversity are diverse beam search\'s: give --beam=W')
  if beam and (beam_groups < 1 or beam % beam_groups):
    raise DecodeError(f'--beam_groups={beam_groups} is not allowed: a divisor of --beam={beam}')
  if diversity < 0 or (diversity and beam_groups == 1):
    raise DecodeError(f'--diversity={diversity} is not allowed: >= 0, and 0 unless '
                      '--beam_groups > 1')
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
  run, rows = continue_run(workdir, prompts, seed=seed, log=log, **settings)
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
