"""One trained run from a notebook: evaluate it as `launch.eval` does, read the evaluation back as
tables, and continue prompts as `launch.sample` does.

- `evaluate(run_dir, split=None, documents=0)`: the whole split (or its first K documents),
  written to RUN/eval/<split>-<step>.{json,png,html} like launch.eval; returns the report.
- `eval_tables(report)`: DataFrames of the loss by group (directory, extension, ...), by
  position in the sequence, and the calibration bins (Guo et al. 2017).
- `sample(run_dir, prompts, ...)`: lmjax.infer.decode.continue_prompts on the run's newest checkpoint.
"""
from __future__ import annotations

import pandas as pd


def evaluate(run_dir, split=None, documents=0, batch_size=0, page_documents=4, step=None,
             log=print) -> dict:
  """launch.eval's whole-split evaluation of `run_dir` (see module doc)."""
  from absl import logging

  from lmjax.data import datasets, loader
  from lmjax.eval import outputs, per_token
  from lmjax.train import trained
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  run = trained.load(run_dir, step)
  config = run.config
  split = split or datasets.splits(config.data)[1]
  if batch_size:
    config.data.batch_size = batch_size
  tokenizer, store = loader.load_split(config, split)
  batches = per_token.batches_of_split(store, config.data.seq_len, config.data.batch_size,
                                        documents)
  return outputs.evaluate_and_write(run, tokenizer, store, batches, split, page_documents,
                                         log=log)


def eval_tables(report: dict) -> dict:
  """{'by_group': DataFrame (grouping, group, loss, bits_per_byte, tokens, documents),
  'by_position': DataFrame, 'calibration': DataFrame} of an evaluation report."""
  groups = [dict(grouping=grouping, group=name, **values)
            for grouping, table in (report.get('by_group') or {}).items()
            for name, values in table.items()]
  by_group = pd.DataFrame(groups)
  if len(by_group):
    by_group = by_group.sort_values(['grouping', 'tokens'], ascending=[True, False],
                                    ignore_index=True)
  return dict(by_group=by_group, by_position=pd.DataFrame(report.get('by_position') or {}),
              calibration=pd.DataFrame({k: v for k, v in (report.get('calibration') or {}).items()
                                        if isinstance(v, list)}))


def sample(run_dir, prompts, max_new_tokens=128, temperature=1.0, top_k=0, top_p=1.0,
           min_p=0.0, epsilon=0.0, beam=0, length_alpha=1.0, seed=0, step=None) -> list[dict]:
  """Continuations of `prompts` by the run's model (launch.sample's decoding)."""
  from absl import logging

  from lmjax.data import loader
  from lmjax.infer import decode
  from lmjax.train import trained
  logging.set_verbosity(logging.ERROR)
  run = trained.load(run_dir, step)
  tokenizer = loader.load_tokenizer(run.config)
  sampler = decode.Sampler(temperature, top_k, top_p, min_p, epsilon)
  return decode.continue_prompts(run, tokenizer, list(prompts), max_new_tokens, sampler, beam,
                                 length_alpha, seed=seed)
