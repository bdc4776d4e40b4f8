"""lmjax models in EleutherAI's lm-evaluation-harness (`lm_eval`, the `harness` extra).

`LmjaxLM(model, params, tokenizer, max_length)` is a harness model (its `TemplateLM`) backed by
an lmjax model and params, on their mesh; `LmjaxLM.from_run(workdir, step)` loads a run. What it
answers, in the conventions of the harness's own `hf` model on the run exported with
`launch.convert --to_hf` (whose tokenizer puts the separator first), so the two agree to float
error (tests/test_harness.py):
- `loglikelihood(context, continuation)`: every text is a document, so it starts with the
  separator, as in training; context and continuation are encoded whole and split where the
  context's tokens end (the harness's `_encode_pair`), an empty context is the separator alone;
  the input is left-truncated to `max_length` tokens. Returns the continuation's summed
  log-probability and whether greedy decoding would give it. (`hf` with add_bos_token=True.)
- `loglikelihood_rolling(text)`: the text's tokens after the separator, scored in disjoint
  windows of `max_length` predictions, each with as much context as fits (the harness's
  `get_rolling_token_windows`); the separator itself is not scored. (`hf` with
  add_bos_token=False, whose prefix token is the exported tokenizer's BOS, the separator.)
- `generate_until(context, {until, max_gen_toks})`: greedy decoding with the KV cache
  (lmjax/infer/decode.py) of the context left-truncated to max_length − max_gen_toks tokens, up
  to the separator (the document ended), max_gen_toks tokens, or the first `until` string.
Requests are sorted by length and scored in batches of `batch_size` rows padded to a few
lengths (powers of two), so a run compiles a handful of programs, not one per request.

`evaluate_run(workdir, tasks, ...)` (python -m launch.harness) runs `lm_eval.simple_evaluate`
on a run and writes the results into the run directory, whole or not at all.
"""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core.rundir import RunDir
from lmjax.core.errors import LmjaxError, one_line
from lmjax.eval.tasks import (HarnessError, check_tasks, metrics, split_names as task_names,
                              require_harness, task_manager)
from lmjax.infer.decode import Decoder, Sampler

try:
  from lm_eval.api.model import TemplateLM
  from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError:  # the harness extra is not installed: tasks.require_harness says so
  TemplateLM = object
  get_rolling_token_windows = make_disjoint_window = None

MIN_WIDTH = 16


def _width(n, cap):
  """The padded length of a row of n tokens: the next power of two (at least MIN_WIDTH), capped."""
  return min(cap, max(MIN_WIDTH, 1 << max(0, n - 1).bit_length()))


class Scorer:
  """Log-probabilities of token rows under a model: per row, the summed log-probability of the
  tokens from index `first` on, and whether each of them is the argmax after its prefix."""

  def __init__(self, model, params, batch_size, max_length):
    self.params, self.batch_size, self.max_length = params, batch_size, max_length

    @jax.jit
    def fn(params, tokens_BxT):
      logits_BxTxV = model.apply({'params': params}, tokens_BxT[:, :-1])
      logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), -1)
      target_BxT = tokens_BxT[:, 1:]
      logp_BxT = jnp.take_along_axis(logp_BxTxV, target_BxT[..., None], -1)[..., 0]
      return logp_BxT, jnp.argmax(logp_BxTxV, -1) == target_BxT
    self._fn = fn

  def __call__(self, rows):
    """rows: [(tokens, first)], each at most max_length + 1 tokens, 1 <= first < len(tokens).
    Returns [(sum of log p, all greedy)] in the same order."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    out = [None] * len(rows)
    for k in range(0, len(order), self.batch_size):
      chunk = order[k:k + self.batch_size]
      width = _width(len(rows[chunk[0]][0]), self.max_length + 1)
      tokens = np.zeros((self.batch_size, width), np.int32)
      for j, i in enumerate(chunk):
        tokens[j, :len(rows[i][0])] = rows[i][0]
      logp, greedy = jax.device_get(self._fn(self.params, tokens))
      for j, i in enumerate(chunk):
        toks, first = rows[i]
        span = slice(first - 1, len(toks) - 1)  # predictions of tokens first .. end
        out[i] = (float(np.sum(logp[j, span], dtype=np.float64)), bool(greedy[j, span].all()))
    return out


class LmjaxLM(TemplateLM):
  """A harness model backed by lmjax params (module doc)."""

  def __init__(self, model, params, tokenizer, max_length, batch_size=16, name='lmjax'):
    require_harness()
    super().__init__()
    self.model, self.params, self.tok, self.name = model, params, tokenizer, name
    self._max_length = int(max_length)
    self.batch_size = int(batch_size)
    self.scorer = Scorer(model, params, self.batch_size, self._max_length)
    self._decoders = {}

  def set_params(self, params):
    """Answers with these params from now on (a training run's, at each evaluation)."""
    self.params = self.scorer.params = params

  @classmethod
  def from_run(cls, workdir, step=None, batch_size=16, max_length=0, params=None):
    from lmjax.data import loader
    from lmjax.train import trained
    run = trained.load(workdir, step, params)
    lm = cls(run.model, run.params, loader.load_tokenizer(run.config),
             max_length or run.config.data.seq_len, batch_size, name=os.path.basename(
                 os.path.normpath(workdir)))
    lm.run = run
    return lm

  # The tokenizer, as the harness sees it.
  @property
  def eot_token_id(self):
    return int(self.tok.sep_id)

  @property
  def max_length(self):
    return self._max_length

  def tok_encode(self, string, add_special_tokens=None, **kwargs):
    ids = [int(t) for t in self.tok.encode(string)]
    return ids if add_special_tokens is False else [self.eot_token_id] + ids

  def tok_decode(self, tokens, **kwargs):
    return self.tok.decode(tokens)

  # What the harness asks.
  def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
    rows = []
    for _, context_enc, continuation_enc in requests:
      if not continuation_enc:
        raise HarnessError('a loglikelihood request with an empty continuation')
      whole = (list(context_enc) + list(continuation_enc))[-(self._max_length + 1):]
      rows.append((whole, len(whole) - len(continuation_enc)))
    results = self.scorer(rows)
    for (key, _, _), result in zip(requests, results):
      self.cache_hook.add_partial('loglikelihood', key, result)
    return results

  def loglikelihood_rolling(self, requests, disable_tqdm=False):
    rows, owner = [], []
    for i, req in enumerate(requests):
      (text,) = req.args
      windows = map(make_disjoint_window, get_rolling_token_windows(
          token_list=self.tok_encode(text, add_special_tokens=False),
          prefix_token=self.eot_token_id, max_seq_len=self._max_length, context_len=1))
      for context, predicted in windows:
        rows.append((list(context) + list(predicted), len(context)))
        owner.append(i)
    totals = [0.0] * len(requests)
    for i, (logp, _) in zip(owner, self.scorer(rows)):
      totals[i] += logp
    for req, total in zip(requests, totals):
      self.cache_hook.add_partial('loglikelihood_rolling', req.args, total)
    return totals

  def generate_until(self, requests, disable_tqdm=False):
    out = [None] * len(requests)
    groups = {}
    for i, req in enumerate(requests):
      context, kwargs = req.args
      kwargs = dict(kwargs or {})
      until = kwargs.get('until') or []
      until = [until] if isinstance(until, str) else list(until)
      max_gen = int(kwargs.get('max_gen_toks', 256))
      if kwargs.get('do_sample') or float(kwargs.get('temperature', 0) or 0) > 0:
        raise HarnessError('generate_until with sampling: lmjax evaluates greedy generation '
                           'only (do_sample=false, temperature=0)')
      if max_gen >= self._max_length:
        raise HarnessError(f'max_gen_toks={max_gen} leaves no room for a context in '
                           f'max_length={self._max_length} tokens')
      ids = self.tok_encode(context)[-(self._max_length - max_gen):]
      groups.setdefault(max_gen, []).append((i, ids, until))
    for max_gen, items in groups.items():
      decoder = self._decoders.setdefault(max_gen, Decoder(
          self.model, max_gen, Sampler(temperature=0.0), self.eot_token_id))
      items.sort(key=lambda item: -len(item[1]))
      for k in range(0, len(items), self.batch_size):
        chunk = items[k:k + self.batch_size]
        prompts = [ids for _, ids, _ in chunk]
        prompts += [prompts[0]] * (self.batch_size - len(prompts))
        width = _width(len(prompts[0]), self._max_length - max_gen)
        result = decoder(self.params, prompts, width=width)
        for j, (i, _, until) in enumerate(chunk):
          n = int(result.lengths[j])
          text = self.tok.decode([t for t in result.tokens[j, :n] if t != self.eot_token_id])
          for stop in until:
            if stop:
              text = text.split(stop)[0]
          out[i] = text
          self.cache_hook.add_partial('generate_until', requests[i].args, text)
    return out


def _unreadable(names, e):
  return HarnessError(f'--tasks={",".join(names)}: the harness could not read a task\'s data '
                      f'({one_line(e, 200)})')


def load_tasks(manager, names) -> dict:
  """The harness's task objects of `names`, their documents read (lm_eval's get_task_dict); a
  task whose data cannot be read is a HarnessError naming the tasks."""
  from lm_eval.tasks import get_task_dict
  try:
    return get_task_dict(names, manager)
  except (FileNotFoundError, OSError, ValueError) as e:
    if isinstance(e, LmjaxError):
      raise
    raise _unreadable(names, e) from None


def run_tasks(lm, tasks, *, limit=None, num_fewshot=None, include_path=None, seed=0,
              log_samples=False, manager=None):
  """lm_eval.simple_evaluate of `lm` on `tasks`; the harness's results dict. A task whose data
  cannot be read is a HarnessError naming it."""
  from lm_eval import simple_evaluate
  names = task_names(tasks)
  manager = manager or task_manager(include_path, names)
  names = check_tasks(manager, names)
  if limit is not None and limit <= 0:
    raise HarnessError(f'--limit={limit}: give a positive number of documents per task')
  try:
    return simple_evaluate(model=lm, tasks=names, num_fewshot=num_fewshot,
                           limit=limit, task_manager=manager, log_samples=log_samples,
                           random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                           fewshot_random_seed=seed, bootstrap_iters=0)
  except (FileNotFoundError, OSError, ValueError) as e:
    if isinstance(e, LmjaxError):
      raise
    raise _unreadable(names, e) from None


def evaluate_run(workdir, tasks, *, step=None, limit=None, num_fewshot=None, include_path=None,
                 batch_size=16, max_length=0, output=None, log=print) -> str:
  """The run in `workdir` (at `step`, default its newest checkpoint) evaluated by the harness on
  `tasks`; writes `output` (default RUN/harness/STEP.json): the metrics, the harness's results
  and configs, and the settings. Returns the path."""
  require_harness()
  if batch_size < 1:
    raise HarnessError(f'--batch_size={batch_size}: at least 1')
  from lmjax.train import trained
  trained.read_config(workdir)  # a directory that holds no run: one line, before the rest
  names = task_names(tasks)
  manager = task_manager(include_path, names)
  load_tasks(manager, check_tasks(manager, names))  # their data, read before the run is
  t0 = time.time()
  lm = LmjaxLM.from_run(workdir, step, batch_size=batch_size, max_length=max_length)
  results = run_tasks(lm, names, limit=limit, num_fewshot=num_fewshot, manager=manager)
  seconds = time.time() - t0
  table = metrics(results)
  path = RunDir(workdir).write_harness(lm.run.step, {
      'step': lm.run.step, 'tasks': table, 'limit': limit, 'num_fewshot': num_fewshot,
      'max_length': lm.max_length, 'seconds': round(seconds, 2),
      'n_samples': results.get('n-samples', {}), 'versions': results.get('versions', {}),
      'configs': json.loads(json.dumps(results.get('configs', {}), default=str))}, output)
  for task, row in table.items():
    log(f'{task}: ' + ', '.join(f'{k} {v:.4f}' for k, v in row.items()
                                if math.isfinite(v)))
  log(f'wrote {path} ({seconds:.1f} s)')
  return path


