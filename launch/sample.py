"""Sample from a trained run: python -m launch.sample --workdir=RUN --prompt='def main(' ...

Each prompt (--prompt, repeatable, and/or --prompts_file, one prompt per line with \\n and \\t
escapes) is tokenised with the run's tokenizer after the separator that starts every document,
and continued by the model of the newest checkpoint (or --step, or --params) for up to
--max_new_tokens tokens or until the model ends the document. Decoding is lmjax/infer/decode.py:
a KV cache, the samplers (--temperature 0 is greedy; --top_k, --top_p, --min_p, --epsilon
truncate), or beam search (--beam=W with --length_alpha; diverse beam search with
--beam_groups=G --diversity=L, each group's best text in the row). The same --seed gives the same
samples.
--mbr=N samples N continuations of each prompt and keeps the one of highest expected utility
against the others (minimum Bayes risk; --mbr_utility=chrf or rouge1; lmjax/infer/mbr.py).
--draft=RUN drafts --draft_k tokens per round with a smaller run of the same tokenizer, which the
target verifies in one pass (speculative decoding, lmjax/infer/speculative.py): the same
distribution as plain sampling, the same text at --temperature=0. --quantize=int8|int4|nf4
decodes with the projection weights quantised (lmjax/model/quantize.py; their bytes printed).

Prints each prompt and its continuation, and writes one JSON line per prompt (prompt, text,
tokens, per-token log-probabilities, settings) to --output (default
RUN/samples/<step>-seed<seed>.jsonl, written whole). Exit status 2 for a bad run, step, flag or
output path. The work is lmjax/infer/samples.py.
"""
from absl import flags, logging

from lmjax.core.cli import run
from lmjax.infer.decode import Sampler
from lmjax.infer.samples import read_prompts, sample_run

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run directory.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_PARAMS = flags.DEFINE_string('params', None, 'Params written by export_params instead of a '
                              'checkpoint.')
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'A prompt (repeatable).')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'A file of prompts, one per line.')
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 256, 'Tokens to generate at most.')
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, '0 is greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens (0: off).')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass (1: off).')
_MIN_P = flags.DEFINE_float('min_p', 0.0, 'Keep tokens of probability >= min_p x the largest.')
_EPSILON = flags.DEFINE_float('epsilon', 0.0, 'Keep tokens of probability >= epsilon.')
_BEAM = flags.DEFINE_integer('beam', 0, 'Beam search of this width (0: sample).')
_ALPHA = flags.DEFINE_float('length_alpha', 1.0, 'Beam search length normalisation: score / '
                            'length^alpha.')
_GROUPS = flags.DEFINE_integer('beam_groups', 1, 'Diverse beam search: groups of --beam / G '
                              'beams each (1: plain beam search).')
_DIVERSITY = flags.DEFINE_float('diversity', 0.0, 'Diverse beam search: the penalty per earlier '
                                "group's choice of a token at the same step.")
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_STOP = flags.DEFINE_bool('stop_at_end', True, 'Stop a prompt when the model ends the document.')
_CACHE = flags.DEFINE_bool('cache', True, 'Use the KV cache (off: the full forward pass per '
                           'token, for checking).')
_OUTPUT = flags.DEFINE_string('output', None, 'JSONL output path.')
_MBR = flags.DEFINE_integer('mbr', 0, 'Minimum Bayes risk: sample this many continuations of '
                            'each prompt and keep the one that agrees most with the others '
                            '(0: off).')
_DRAFT = flags.DEFINE_string('draft', None, 'Speculative decoding: a run of the same tokenizer '
                             '(a sweep\'s small model) drafts for this one.')
_DRAFT_K = flags.DEFINE_integer('draft_k', 4, 'Speculative decoding: tokens drafted per round.')
_MBR_UTILITY = flags.DEFINE_string('mbr_utility', 'chrf', 'MBR\'s utility: chrf or rouge1.')
_QUANTIZE = flags.DEFINE_string('quantize', None, 'Decode with the projection weights quantised: '
                                'int8 (per channel), int4 or nf4 (per block); '
                                'lmjax/model/quantize.py.')
_BLOCK = flags.DEFINE_integer('quantize_block', 64, 'int4 and nf4: input rows per block.')
flags.mark_flags_as_required(['workdir'])


def main():
  logging.set_verbosity(logging.ERROR)  # orbax warns about every read-only manager
  sampler = Sampler(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, _MIN_P.value, _EPSILON.value)
  sample_run(_WORKDIR.value, read_prompts(_PROMPT.value, _PROMPTS_FILE.value),
             output=_OUTPUT.value, seed=_SEED.value, step=_STEP.value, params=_PARAMS.value,
             max_new_tokens=_MAX_NEW.value, sampler=sampler, beam=_BEAM.value,
             length_alpha=_ALPHA.value, stop_at_end=_STOP.value, cache=_CACHE.value,
             mbr=_MBR.value, mbr_utility=_MBR_UTILITY.value, draft=_DRAFT.value,
             draft_k=_DRAFT_K.value, quantize=_QUANTIZE.value, quantize_block=_BLOCK.value,
             beam_groups=_GROUPS.value, diversity=_DIVERSITY.value)


if __name__ == '__main__':
  run(main)
