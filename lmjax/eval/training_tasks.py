"""Downstream tasks during training: what launch.train calls.

`run(config, workdir, ...)` is lmjax/train/run.py's training run, with config.eval's tasks
evaluated through lm-evaluation-harness (lmjax/eval/harness.py) at the evaluation steps that are
multiples of eval.every and at the last step, on the params being trained (no checkpoint read),
eval.limit documents per task. Their metrics join that evaluation's row of metrics.jsonl and
TensorBoard as `tasks/<task>/<metric>` (with `tasks_s`, the seconds they took), so summary.json,
the runs table and a sweep's collected table carry the last step's. The task names are checked
before anything is written: an unknown one is one line, exit 2.
"""
from __future__ import annotations

import time

from lmjax.eval import tasks
from lmjax.train.run import run as train_run


def task_names(config) -> list[str]:
  return tasks.split_names(config.eval.tasks)


class TaskHook:
  """The `on_eval` of a training run: the harness's tasks at the steps config.eval asks for."""

  def __init__(self, config):
    self.config, self.names = config, task_names(config)
    self.manager = tasks.task_manager(config.eval.include_path or None, self.names)
    tasks.check_tasks(self.manager, self.names, flag='config.eval.tasks')
    self.lm = None

  def due(self, step) -> bool:
    every, steps = self.config.eval.every, self.config.train.steps
    return step == steps or bool(every and step % every == 0)

  def __call__(self, step, params, setup) -> dict:
    if not self.due(step):
      return {}
    from lmjax.eval import harness  # JAX: imported once the run has started it
    t0 = time.time()
    if self.lm is None:  # compiled once, fed each evaluation's params
      self.lm = harness.LmjaxLM(setup.model, params, setup.dataset.tokenizer,
                                self.config.data.seq_len, self.config.eval.batch_size)
    self.lm.set_params(params)
    results = harness.run_tasks(self.lm, self.names, limit=self.config.eval.limit or None,
                                include_path=self.config.eval.include_path or None,
                                manager=self.manager)
    row = {f'tasks/{task}/{metric}': value
           for task, values in tasks.metrics(results).items()
           for metric, value in values.items()}
    row['tasks_s'] = round(time.time() - t0, 2)
    return row


def run(config, workdir, **kwargs):
  """lmjax.train.run.run with config.eval's tasks (module doc)."""
  hook = TaskHook(config) if task_names(config) else None
  return train_run(config, workdir, on_eval=hook, **kwargs)
