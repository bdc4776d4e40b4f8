"""One trained run from a notebook: evaluate it as `launch.eval` does, read the evaluation back as
tables, and continue prompts as `launch.sample` does.

- `evaluate(run_dir, split=None, documents=0)`: the whole split (or its first K documents),
  written to RUN/eval/<split>-<step>.{json,png,html} like launch.eval; returns the report.
- `eval_tables(report)`: DataFrames of the loss by group (directory, extension, ...), by
  position in the sequence, and the calibration bins (Guo et al. 2017).
- `sample(run_dir, prompts, ...)`: lmjax.infer.samples.continue_run on the run's newest
  checkpoint.
"""
from __future__ import annotations

import pandas as pd


def evaluate(run_dir, split=None, documents=0, batch_size=0, page_documents=4, step=None,
             log=print) -> dict:
  """launch.eval's whole-split evaluation of `run_dir` (lmjax.eval.outputs.evaluate_run)."""
  from absl import logging

  from lmjax.eval.outputs import evaluate_run
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  return evaluate_run(run_dir, step=step, split=split, documents=documents,
                      batch_size=batch_size, page_documents=page_documents, log=log)


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
  """Continuations of `prompts` by the run's model (launch.sample's decoding, nothing
  written)."""
  from absl import logging

  from lmjax.infer.decode import Sampler
  from lmjax.infer.samples import continue_run
  logging.set_verbosity(logging.ERROR)
  sampler = Sampler(temperature, top_k, top_p, min_p, epsilon)
  return continue_run(run_dir, prompts, step=step, max_new_tokens=max_new_tokens,
                      sampler=sampler, beam=beam, length_alpha=length_alpha, seed=seed)[1]
