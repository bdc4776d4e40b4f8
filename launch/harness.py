"""Evaluate a run on lm-evaluation-harness tasks: python -m launch.harness --workdir=RUN
--tasks=stdlib_next_line,stdlib_identifier,stdlib_bpb.

The run's newest checkpoint (or --step) answers the harness's requests through
lmjax/eval/harness.py (log-likelihoods, rolling log-likelihoods, greedy generation; batched, on
the run's mesh). Tasks: lmjax's own, made from the default corpus's held-out files with no
download (lmjax/eval/corpus_tasks.py), the harness's catalogue (those download their data the
first time), or your own YAML files under --include_path. Writes RUN/harness/<step>.json (or
--output): each task's metrics, the harness's task configs and sample counts, and the settings,
whole or not at all. Needs the `harness` extra (pip install -e '.[harness]').

The harness's own `lm_eval` command cannot load lmjax models: lm_eval 0.4.13 finds models only
in its registry, which nothing outside the package fills before its command line is parsed.
Exit status 2, with one line, for an unknown task, a task whose data cannot be read, a run
without a checkpoint, or a bad flag.
"""
from absl import flags, logging

from lmjax.core.cli import run
from lmjax.eval.harness import evaluate_run

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory to evaluate.')
_TASKS = flags.DEFINE_list('tasks', None, 'Task names, comma-separated.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_LIMIT = flags.DEFINE_float('limit', None, 'Documents per task (a fraction if below 1; '
                            'default: all).')
_FEWSHOT = flags.DEFINE_integer('num_fewshot', None, 'Examples in each prompt (default: the '
                                "task's own).")
_INCLUDE = flags.DEFINE_string('include_path', None, 'A directory of your own task YAML files.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Requests per batch.')
_MAX_LENGTH = flags.DEFINE_integer('max_length', 0, "Tokens of context (0: the run's "
                                   'data.seq_len).')
_OUTPUT = flags.DEFINE_string('output', None, 'Where to write the results (default: '
                              'RUN/harness/<step>.json).')
flags.mark_flags_as_required(['workdir', 'tasks'])


def main():
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  limit = _LIMIT.value
  evaluate_run(_WORKDIR.value, _TASKS.value, step=_STEP.value,
               limit=int(limit) if limit is not None and limit >= 1 else limit,
               num_fewshot=_FEWSHOT.value, include_path=_INCLUDE.value, batch_size=_BATCH.value,
               max_length=_MAX_LENGTH.value, output=_OUTPUT.value)


if __name__ == '__main__':
  run(main)
