"""Evaluate a trained run over a whole split: python -m launch.eval --workdir=RUN.

Reads the run's config and the params of its newest checkpoint (or --step, or --params, params
written by checkpoint.export_params), builds the model on the run's mesh, and evaluates every
token of --split (default: the run's evaluation split; --documents=K for the first K documents)
as lmjax/eval/per_token.py describes: loss, perplexity, bits per token and per byte, accuracy,
calibration (ECE), loss by position and by document group. --rows=training evaluates the
training loop's evaluation batches instead (the same numbers the run logged).

Writes, into RUN/eval/ (each file whole or not at all; the JSON last):
  <split>-<step>.json             every number above
  <split>-<step>-reliability.png  the reliability diagram
  <split>-<step>-position.png     loss against position in the context
  <split>-<step>-logprobs.html    the first --page_documents documents, each token coloured by
                                  its log-probability (--compare=RUN2: by the difference)
and the headline numbers to RUN/tb as eval_<split>/... at the step. Exit status 2 for a bad run
directory, step, split or flag, with one line saying which.
"""

from absl import app, flags, logging

from launch.flags_util import fail, parse_flags, parse_mesh

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory to evaluate.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_PARAMS = flags.DEFINE_string('params', None, 'Evaluate params written by export_params here '
                              'instead of a checkpoint (the run supplies config and tokenizer).')
_SPLIT = flags.DEFINE_string('split', None, "Split to evaluate (default: the run's eval split).")
_DOCUMENTS = flags.DEFINE_integer('documents', 0, 'Only the first K documents (0: all).')
_ROWS = flags.DEFINE_enum('rows', 'split', ['split', 'training'], 'split: every token of the '
                          "split; training: the training loop's evaluation batches.")
_BATCH = flags.DEFINE_integer('batch_size', 0, "Rows per batch (0: the run's data.batch_size).")
_PAGE = flags.DEFINE_integer('page_documents', 8, 'Documents on the log-probability page (0: '
                             'no page).')
_MESH = flags.DEFINE_string('mesh', None, "data,fsdp,tensor sizes of the mesh to evaluate on "
                            "(-1: the devices left over), like config.mesh (default: the run's).")
_COMPARE = flags.DEFINE_string('compare', None, 'A second run (same tokenizer and seq_len) to '
                               'colour the page by the difference of log-probabilities.')
_COMPARE_STEP = flags.DEFINE_integer('compare_step', None, "The second run's step (default: "
                                     'its newest).')
flags.mark_flags_as_required(['workdir'])


def _check_flags():
  for name, flag in (('documents', _DOCUMENTS), ('batch_size', _BATCH),
                     ('page_documents', _PAGE)):
    if flag.value < 0:
      fail(f'--{name}={flag.value} is not allowed: an integer >= 0')
  if _STEP.value is not None and _PARAMS.value:
    fail('--step and --params are exclusive: a checkpoint step or exported params')


def _mesh():
  if not _MESH.value:
    return None
  return dict(zip(('data', 'fsdp', 'tensor'), parse_mesh(_MESH.value, allow_rest=True)))


def _load(workdir, step, params=None, mesh=None):
  from lmjax.train import trained
  try:
    return trained.load(workdir, step, params, mesh)
  except trained.RunError as e:
    fail(str(e))


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  _check_flags()
  from lmjax.data import datasets, loader
  from lmjax.eval import outputs, per_token
  run = _load(_WORKDIR.value, _STEP.value, _PARAMS.value, _mesh())
  config = run.config
  if config.data.dataset == 'random':
    fail(f'--workdir={_WORKDIR.value} trained on random tokens (data.dataset=random): there is '
         'no split to evaluate')
  split = _SPLIT.value or datasets.splits(config.data)[1]
  if _BATCH.value:
    config.data.batch_size = _BATCH.value
  try:
    if _ROWS.value == 'training':
      loaded = loader.load(config)
      tokenizer, store, batches = loaded.tokenizer, None, loader.eval_batches(loaded, config)
    else:
      tokenizer, store = loader.load_split(config, split)
      batches = per_token.batches_of_split(store, config.data.seq_len, config.data.batch_size,
                                            _DOCUMENTS.value)
      per_token.split_rows(store, config.data.seq_len, _DOCUMENTS.value)  # too small: fails
  except datasets.DataError as e:
    fail(str(e).replace('(config.data.train_split / eval_split)', f'(--split={split})'))
  except per_token.EvalError as e:
    fail(f'--split={split}: {e}')
  other = None
  if _COMPARE.value:
    other = _load(_COMPARE.value, _COMPARE_STEP.value, mesh=_mesh())
    if other.config.data.seq_len != config.data.seq_len or (
        other.config.data.tokenizer != config.data.tokenizer):
      fail(f'--compare={_COMPARE.value}: its data.seq_len and data.tokenizer must equal this '
           "run's")
  name = split if _ROWS.value == 'split' else f'{split}-training_batches'
  outputs.evaluate_and_write(run, tokenizer, store, batches, name, _PAGE.value, other)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
