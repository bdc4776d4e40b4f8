"""Downstream tasks by name, without JAX: which tasks lm-evaluation-harness knows (its own,
lmjax's corpus tasks, a user's YAML directory), the check that fails in one line, and the
metrics of its results. Imported by launch.train before JAX starts; lm_eval itself is imported
only when tasks are asked for (it takes seconds)."""
from __future__ import annotations

import importlib.util

from lmjax.core.errors import LmjaxError

OWN = ('stdlib_next_line', 'stdlib_identifier', 'stdlib_bpb')  # lmjax/eval/corpus_tasks.py


class HarnessError(LmjaxError, ValueError):
  """A task, option or run the harness cannot evaluate; one line naming the flag."""


def require_harness():
  if importlib.util.find_spec('lm_eval') is None:
    raise HarnessError("lm-evaluation-harness is not installed: pip install -e '.[harness]' "
                       '(lm_eval)')


def task_manager(include_path=None, names=()):
  """The harness's TaskManager over lmjax's corpus tasks and `include_path`, and over the
  harness's own catalogue (indexing its ~15,000 task files takes seconds) unless every name in
  `names` is found without it."""
  require_harness()
  from lm_eval.tasks import TaskManager

  from lmjax.eval import corpus_tasks
  paths = [corpus_tasks.task_dir()] + ([include_path] if include_path else [])
  if names:
    local = TaskManager(include_path=paths, include_defaults=False)
    if set(names) <= set(local.all_tasks):
      return local
  return TaskManager(include_path=paths)


def split_names(tasks) -> list[str]:
  """Task names from a list or a comma-separated string, blanks dropped."""
  items = tasks.split(',') if isinstance(tasks, str) else tasks
  return [t.strip() for t in items if t.strip()]


def check_tasks(manager, tasks, flag='--tasks'):
  """The task names, each one the harness knows; HarnessError naming the first it does not."""
  names_ = split_names(tasks)
  if not names_:
    raise HarnessError(f'{flag} is empty: name tasks (lmjax\'s {", ".join(OWN)}, or the '
                       "harness's, listed by `lm_eval ls tasks`)")
  known = set(manager.all_tasks)
  for name in names_:
    if name not in known:
      raise HarnessError(f'{flag}: unknown task {name!r}; lmjax\'s own are {", ".join(OWN)}, '
                         'the harness lists its own with `lm_eval ls tasks` (add yours with '
                         'an include path)')
  return names_


def metrics(results) -> dict:
  """{task: {metric: value}} from the harness's results, its ',none' filter suffix dropped and
  standard errors left out."""
  out = {}
  for task, values in results.get('results', {}).items():
    row = {}
    for key, value in values.items():
      name = key.split(',')[0]
      if name in ('alias', 'sample_len', 'samples') or name.endswith('_stderr') or (
          not isinstance(value, (int, float))):
        continue
      row[name] = float(value)
    out[task] = row
  return out
