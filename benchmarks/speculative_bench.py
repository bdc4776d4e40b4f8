"""Speculative decoding against plain decoding (a benchmark, not a test): a target run, a draft
run of the same tokenizer, prompts from held-out standard-library files (the first bytes of
each), greedy and sampled; the draft's acceptance rate (kept / proposed tokens) and tokens/s of
each, compile excluded (every program runs once before it is timed).

  python benchmarks/speculative_bench.py --target=RUN --draft=RUN [--k=2,4,6] [--prompts=8]
      [--max_new_tokens=128] [--repeats=3]

With the main job (README): its smallest model drafting for its largest. Never time it while
anything else runs (two cores).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_TARGET = flags.DEFINE_string('target', None, 'The target run directory.')
_DRAFT = flags.DEFINE_string('draft', None, 'The draft run directory.')
_K = flags.DEFINE_string('k', '2,4,6', 'Drafted tokens per round, comma-separated.')
_PROMPTS = flags.DEFINE_integer('prompts', 8, 'Prompts (rows) per batch.')
_PROMPT_BYTES = flags.DEFINE_integer('prompt_bytes', 64, 'Bytes of each prompt.')
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 128, 'Tokens generated per prompt.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls of each program (the best is kept).')
flags.mark_flags_as_required(['target', 'draft'])


def _prompts(tokenizer, n, size):
  """The first `size` bytes of n held-out stdlib files (the corpus's own split)."""
  import numpy as np

  from lmjax.data import datasets
  files = [(p, rel) for p, rel in datasets._list_files(datasets.stdlib_config().settings)
           if datasets.is_validation(rel, 5)]
  out = []
  for path, _ in files[:n]:
    text = path.read_bytes()[:size].decode('utf-8', 'ignore')
    out.append(np.concatenate([[tokenizer.sep_id], tokenizer.encode(text)]).astype(np.int32))
  return out


def _best(fn, repeats):
  fn()  # compiles
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  return min(times), out


def main(argv):
  del argv
  import jax

  from lmjax.data import loader
  from lmjax.infer.decode import Decoder, Sampler
  from lmjax.infer.speculative import Speculative
  from lmjax.train import trained
  target, draft = trained.load(_TARGET.value), trained.load(_DRAFT.value)
  tokenizer = loader.load_tokenizer(target.config)
  prompts = _prompts(tokenizer, _PROMPTS.value, _PROMPT_BYTES.value)
  n = _MAX_NEW.value
  count = lambda params: sum(x.size for x in jax.tree_util.tree_leaves(params))
  print(f'target {_TARGET.value}: {count(target.params):,} params; draft {_DRAFT.value}: '
        f'{count(draft.params):,}')
  print(f'{len(prompts)} prompts of {_PROMPT_BYTES.value} bytes, {n} new tokens each (no early '
        'stop), best of', _REPEATS.value)
  print('| sampling | decoding | k | acceptance | target calls / token | tokens/s | speed-up |')
  print('|---|---|---|---|---|---|---|')
  for name, sampler in (('greedy', Sampler(0.0)), ('temperature 1', Sampler(1.0))):
    plain = Decoder(target.model, n, sampler)
    seconds, _ = _best(lambda: plain(target.params, prompts, seed=0), _REPEATS.value)
    base = len(prompts) * n / seconds
    print(f'| {name} | plain | - | - | 1.00 | {base:,.0f} | 1.00 |')
    for k in (int(x) for x in _K.value.split(',')):
      spec = Speculative(target.model, draft.model, n, k, sampler)
      seconds, out = _best(lambda: spec(target.params, draft.params, prompts, seed=0),
                           _REPEATS.value)
      rate = out.accepted.sum() / max(out.drafted.sum(), 1)
      calls = out.rounds.max() / n
      tps = len(prompts) * n / seconds
      print(f'| {name} | speculative | {k} | {rate:.3f} | {calls:.2f} | {tps:,.0f} | '
            f'{tps / base:.2f} |')


if __name__ == '__main__':
  app.run(main)
