"""Evaluate a trained run over a whole split: python -m launch.eval --workdir=RUN.

Reads the run's config and the params of its newest checkpoint (or --step, or --params, params
written by checkpoint.export_params), builds the model on the run's mesh (or --mesh), and
evaluates every token of --split (default: the run's evaluation split; --documents=K for the
first K documents) as lmjax/eval/per_token.py describes: loss, perplexity, bits per token and
per byte, accuracy, calibration (ECE), loss by position and by document group. --rows=training
evaluates the training loop's evaluation batches instead (the same numbers the run logged).

Writes, into RUN/eval/ (each file whole or not at all; the JSON last):
  <split>-<step>.json             every number above
  <split>-<step>-reliability.png  the reliability diagram
  <split>-<step>-position.png     loss against position in the context
  <split>-<step>-logprobs.html    the first --page_documents documents, each token coloured by
                                  its log-probability (--compare=RUN2: by the difference)
and the headline numbers to RUN/tb as eval_<split>/... at the step. --quantize=int8|int4|nf4
evaluates the float model, then the model with its projection weights quantised (int8 per output
channel; int4 and nf4 in blocks of --quantize_block input rows; lmjax/model/quantize.py), and
writes the quantised model's files as <split>-<scheme>-<step>.*, with the float model's numbers
and both models' weight bytes in its JSON ("quantization"). Exit status 2 for a bad run
directory, step, split or flag, with one line saying which. The work is
lmjax/eval/outputs.py's evaluate_run.
"""
from absl import flags, logging

from lmjax.config import parse_mesh
from lmjax.core.cli import run
from lmjax.eval.outputs import ROWS, evaluate_run

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory to evaluate.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_PARAMS = flags.DEFINE_string('params', None, 'Evaluate params written by export_params here '
                              'instead of a checkpoint (the run supplies config and tokenizer).')
_SPLIT = flags.DEFINE_string('split', None, "Split to evaluate (default: the run's eval split).")
_DOCUMENTS = flags.DEFINE_integer('documents', 0, 'Only the first K documents (0: all).')
_ROWS = flags.DEFINE_enum('rows', 'split', ROWS, 'split: every token of the split; training: '
                          "the training loop's evaluation batches.")
_BATCH = flags.DEFINE_integer('batch_size', 0, "Rows per batch (0: the run's data.batch_size).")
_PAGE = flags.DEFINE_integer('page_documents', 8, 'Documents on the log-probability page (0: '
                             'no page).')
_MESH = flags.DEFINE_string('mesh', None, "data,fsdp,tensor sizes of the mesh to evaluate on "
                            "(-1: the devices left over), like config.mesh (default: the run's).")
_COMPARE = flags.DEFINE_string('compare', None, 'A second run (same tokenizer and seq_len) to '
                               'colour the page by the difference of log-probabilities.')
_COMPARE_STEP = flags.DEFINE_integer('compare_step', None, "The second run's step (default: "
                                     'its newest).')
_QUANTIZE = flags.DEFINE_string('quantize', None, 'Also evaluate the model with its projection '
                                'weights quantised: int8 (per channel), int4 or nf4 (per block); '
                                'lmjax/model/quantize.py.')
_BLOCK = flags.DEFINE_integer('quantize_block', 64, 'int4 and nf4: input rows per block.')
flags.mark_flags_as_required(['workdir'])


def main():
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  evaluate_run(_WORKDIR.value, step=_STEP.value, params=_PARAMS.value, split=_SPLIT.value,
               documents=_DOCUMENTS.value, rows=_ROWS.value, batch_size=_BATCH.value,
               page_documents=_PAGE.value,
               mesh=parse_mesh(_MESH.value, allow_rest=True) if _MESH.value else None,
               compare=_COMPARE.value, compare_step=_COMPARE_STEP.value,
               quantize=_QUANTIZE.value, quantize_block=_BLOCK.value)


if __name__ == '__main__':
  run(main)
