"""What launch.eval and notebooks call: `evaluate_run(workdir, ...)` evaluates a run directory
over a whole split (or the training loop's evaluation batches), writes the report, figures and
log-prob page into RUN/eval/ and the headline numbers to TensorBoard, and returns the report.
Every bad input (run, step, params, split, flag) is an LmjaxError naming its flag, raised before
anything is written."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from lmjax.core import storage
from lmjax.core.errors import LmjaxError
from lmjax.core.rundir import RunDir
from lmjax.data import datasets, loader
from lmjax.eval import pages, per_token
from lmjax.model import quantize as quantization
from lmjax.train import steps, trained

HEADLINE = ('loss', 'perplexity', 'bits_per_token', 'bits_per_byte', 'accuracy', 'ece')


ROWS = ('split', 'training')


class EvalInputError(LmjaxError, ValueError):
  """An evaluation that cannot run as asked; one line naming the flag."""


def evaluate_run(workdir, *, step=None, params=None, split=None, documents=0, rows='split',
                 batch_size=0, page_documents=8, mesh=None, compare=None, compare_step=None,
                 quantize=None, quantize_block=quantization.BLOCK, log=print) -> dict:
  """Evaluates the run in `workdir` (its newest checkpoint, `step`, or exported `params`) on the
  mesh `mesh` ({'data':, 'fsdp':, 'tensor':}; None: the run's) over every token of `split`
  (default: its evaluation split; `documents`: the first K only), or with rows='training' the
  training loop's evaluation batches; `compare`, a second run directory, colours the page by the
  difference. Writes RUN/eval/<split>-<step>.* and returns the report. `quantize` (int8 |
  int4 | nf4): the run's projection weights quantised (lmjax/model/quantize.py), evaluated
  beside the float model, into RUN/eval/<split>-<quantize>-<step>.*."""
  for name, value in (('documents', documents), ('batch_size', batch_size),
                      ('page_documents', page_documents)):
    if value < 0:
      raise EvalInputError(f'--{name}={value} is not allowed: an integer >= 0')
  if step is not None and params:
    raise EvalInputError('--step and --params are exclusive: a checkpoint step or exported '
                         'params')
  if rows not in ROWS:
    raise EvalInputError(f'--rows={rows}: one of {", ".join(ROWS)}')
  if quantize:
    quantization.check(quantize, quantize_block)
  run = trained.load(workdir, step, params, mesh)
  config = run.config
  if config.data.dataset == 'random':
    raise EvalInputError(f'--workdir={workdir} trained on random tokens (data.dataset=random): '
                         'there is no split to evaluate')
  if config.data.dataset in ('chat_jsonl', 'preference_jsonl'):
    raise EvalInputError(f'--workdir={workdir} was fine-tuned on data.dataset='
                         f'{config.data.dataset}: launch.eval reads corpora; its held-out '
                         'examples were evaluated during training (metrics.jsonl, summary.json)')
  split = split or datasets.splits(config.data)[1]
  if batch_size:
    config.data.batch_size = batch_size
  try:
    if rows == 'training':
      loaded = loader.load(config)
      tokenizer, store, batches = loaded.tokenizer, None, loader.eval_batches(loaded, config)
    else:
      tokenizer, store = loader.load_split(config, split)
      per_token.split_rows(store, config.data.seq_len, documents)  # too small: EvalError
      batches = _Batches(lambda: per_token.batches_of_split(
          store, config.data.seq_len, config.data.batch_size, documents))
  except datasets.DataError as e:
    raise EvalInputError(str(e).replace('(config.data.train_split / eval_split)',
                                        f'(--split={split})')) from None
  except per_token.EvalError as e:
    raise EvalInputError(f'--split={split}: {e}') from None
  other = None
  if compare:
    other = trained.load(compare, compare_step, mesh_override=mesh)
    if other.config.data.seq_len != config.data.seq_len or (
        other.config.data.tokenizer != config.data.tokenizer):
      raise EvalInputError(f'--compare={compare}: its data.seq_len and data.tokenizer must '
                           "equal this run's")
  name = split if rows == 'split' else f'{split}-training_batches'
  if quantize:
    return _evaluate_quantized(run, tokenizer, store, batches, name, quantize, quantize_block,
                               page_documents, other, log)
  return evaluate_and_write(run, tokenizer, store, batches, name, page_documents, other, log)


class _Batches:
  """A split's batches, read from its store again on each pass (a quantised evaluation makes
  two) rather than held in memory."""

  def __init__(self, make):
    self.make = make

  def __iter__(self):
    return iter(self.make())


def _evaluate_quantized(run, tokenizer, store, batches, name, scheme, block, page_documents,
                        other, log):
  """The float model's headline numbers, then the quantised model's whole report with them
  beside its own and the weights' bytes of both."""
  t0 = time.time()
  log('the float model first')
  floats, _ = evaluate(run, tokenizer, store, batches)
  quantized = trained.quantized(run, scheme, block)
  size = quantization.weight_bytes(quantized.params)
  extra = {'quantization': {
      'scheme': scheme, 'block': block if scheme != 'int8' else None,
      'weight_bytes': size['total'], 'quantized_weight_bytes': size['quantized'],
      'float_weight_bytes': quantization.weight_bytes(run.params)['total'],
      'float': {k: floats[k] for k in HEADLINE if floats.get(k) is not None},
      'float_seconds': round(time.time() - t0, 1)}}
  report = evaluate_and_write(quantized, tokenizer, store, batches, f'{name}-{scheme}',
                              page_documents, other, lambda line: None, extra)
  q = extra['quantization']
  for k in HEADLINE:
    if report.get(k) is not None:
      log(f'{k:>15} {report[k]:.5f}  (float {q["float"][k]:.5f}, '
          f'{report[k] - q["float"][k]:+.5f})')
  log(f'weights {q["weight_bytes"]:,} bytes {scheme} against {q["float_weight_bytes"]:,} '
      f'float ({q["weight_bytes"] / q["float_weight_bytes"]:.3f}x; the projections '
      f'{q["quantized_weight_bytes"]:,})')
  log(f'{report["tokens"]:,} tokens in {report["seconds"]} s; wrote {report["files"]["report"]}')
  return report


def evaluate(run, tokenizer, store, batches, page_documents=0, progress=None):
  """(report dict, Tally) of `run` (lmjax.train.trained.Trained) on `batches`."""
  token_bytes = steps.token_bytes_table(tokenizer, run.config.model.vocab_size)
  tally = per_token.Tally(token_bytes, run.config.data.seq_len,
                           store.n_documents if store is not None else 0,
                           np.asarray(store.starts) if store is not None else None,
                           page_documents)
  step = per_token.make_token_step(run.model, run.mesh, run.param_shardings)
  per_token.run(step, run.params, batches, tally, progress)
  names = store.names() if store is not None else None
  return tally.report(names), tally


def _other_nats(other, tally, store, seq_len, batch_size):
  """The page tokens' nats under a second run, on the same rows."""
  page = tally.page_tokens()
  if not page:
    return None
  want = {int(i): n for n, i in enumerate(page['index'])}
  out = np.full(len(page['index']), np.nan)
  step = per_token.make_token_step(other.model, other.mesh, other.param_shardings)
  documents = int(page['doc'].max()) + 1
  for batch in per_token.batches_of_split(store, seq_len, batch_size, documents):
    keys = ('inputs', 'targets', 'positions', 'segment_ids')
    nats = np.asarray(step(other.params, {k: batch[k] for k in keys})['nats'])
    for idx, n, w in zip(batch['target_index'].ravel(), nats.ravel(),
                         batch['weights'].ravel()):
      if w and int(idx) in want:
        out[want[int(idx)]] = n
  return out


def evaluate_and_write(run, tokenizer, store, batches, split_name, page_documents=8,
                       other=None, log=print, extra=None) -> dict:
  """Evaluates and writes RUN/eval/<split_name>-<step>.{json,png,html} (`evaluate_run`);
  `extra` joins the report."""
  workdir = run.workdir
  step_name = str(run.step) if run.step >= 0 else 'params'
  stem = RunDir(workdir).eval_stem(split_name, step_name)
  t0 = time.time()
  progress = lambda i: log(f'  {i + 1} batches, {time.time() - t0:.0f} s') if (
      i + 1) % 50 == 0 else None
  report, tally = evaluate(run, tokenizer, store, batches,
                           page_documents if store is not None else 0, progress)
  report.update(split=split_name, step=run.step, seconds=round(time.time() - t0, 1),
                seq_len=run.config.data.seq_len, tokenizer=tokenizer.name, **(extra or {}))
  title = f'{os.path.basename(os.path.abspath(workdir))} step {step_name}, {split_name}'
  if not storage.is_remote(stem):
    os.makedirs(os.path.dirname(stem), exist_ok=True)
  files = {'reliability': storage.write_bytes(f'{stem}-reliability.png',
                                              pages.reliability_png(report, title)),
           'position': storage.write_bytes(f'{stem}-position.png',
                                           pages.position_png(report, title))}
  page = tally.page_tokens()
  if page:
    names = store.names()
    other_nats = other_title = None
    if other is not None:
      other_nats = _other_nats(other, tally, store, run.config.data.seq_len,
                               run.config.data.batch_size)
      other_title = f'{other.workdir} step {other.step}'
    html = pages.logprob_page(page, tokenizer.piece, names, title, other_nats, other_title)
    files['logprobs'] = storage.write_text(f'{stem}-logprobs.html', html)
  files['report'] = f'{stem}.json'
  report['files'] = files
  path = storage.write_text(f'{stem}.json', json.dumps(report, indent=1))
  _tensorboard(workdir, split_name, run.step, report)
  for k in HEADLINE:
    if report.get(k) is not None:
      log(f'{k:>15} {report[k]:.5f}')
  log(f'{report["tokens"]:,} tokens in {report["seconds"]} s; wrote {path}')
  return report


def _tensorboard(workdir, split_name, step, report):
  if step < 0:
    return
  from lmjax.train.metrics import MetricsWriter
  writer = MetricsWriter(workdir, metrics=False)
  writer.write({'step': step, **{f'eval_{split_name}/{k}': report[k] for k in HEADLINE
                                  if report.get(k) is not None}})
  writer.close()
