"""Decoding speed: tokens generated per second with and without the KV cache, and with the
projection weights quantised.

  python benchmarks/decode_bench.py [--config=experiments/configs/small.py | --workdir=RUN]
      [--prompt_len=64] [--new_tokens=256] [--batches=1,8] [--repeats=3] [--cache=on,off]
      [--quantize=none,int8,int4,nf4]

The model of the config with random params (speed does not depend on the weights), or a run's
model and params (--workdir), each --quantize scheme's weights (lmjax/model/quantize.py: the
weights' bytes printed; dequantised inside the compiled program), greedy
decoding of --new_tokens tokens after a prompt of --prompt_len tokens, no end token (every row
generates them all). Each case is compiled once, then timed --repeats times; the median is
reported as generated tokens per second (batch × new tokens / seconds, the prefill included) and
milliseconds per step. One JSON line per case follows the table. Run it alone: with 2 cores any
other work halves the numbers.
"""
import argparse
import json
import statistics
import time

import jax
import numpy as np

from lmjax.config import resolve
from lmjax.core.cli import load_config_file
from lmjax.core.errors import first_line
from lmjax.infer import decode
from lmjax.model import quantize
from lmjax.train import trained
from lmjax.train.steps import build_model_and_optimizer, init_params


def main():
  p = argparse.ArgumentParser(description=first_line(__doc__))
  p.add_argument('--config', default='experiments/configs/small.py')
  p.add_argument('--prompt_len', type=int, default=64)
  p.add_argument('--new_tokens', type=int, default=256)
  p.add_argument('--batches', default='1,8')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--workdir', default=None, help="a run's model and params instead of --config's")
  p.add_argument('--cache', default='on,off')
  p.add_argument('--quantize', default='none')
  args = p.parse_args()
  if args.workdir:
    loaded = trained.load(args.workdir)
    name, model, params = args.workdir, loaded.model, loaded.params
  else:
    config = resolve(load_config_file(args.config))
    model, _ = build_model_and_optimizer(config)
    name, params = args.config, init_params(model, config, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  greedy = decode.Sampler(temperature=0)
  print(f'{name}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, prompt '
        f'{args.prompt_len}, {args.new_tokens} new tokens, greedy, {jax.devices()[0].platform}')
  schemes = {}
  for scheme in args.quantize.split(','):
    q = params if scheme == 'none' else quantize.quantize_params(params, scheme)
    schemes[scheme] = (model if scheme == 'none' else quantize.Dequantized(model), q)
    print(f'weights {scheme}: {quantize.weight_bytes(q)["total"]:,} bytes')
  print(f'{"batch":>5} {"cache":>6} {"weights":>7} {"compile s":>9} {"tokens/s":>9} '
        f'{"ms/step":>8}')
  rows = []
  cases = [(cache == 'on', scheme) for cache in args.cache.split(',') for scheme in schemes]
  for batch in [int(b) for b in args.batches.split(',')]:
    prompts = [rng.integers(0, 256, args.prompt_len).astype(np.int32) for _ in range(batch)]
    for cache, scheme in cases:
      model, params = schemes[scheme]
      run = decode.Decoder(model, args.new_tokens, greedy, cache=cache)
      t0 = time.perf_counter()
      run(params, prompts)
      compile_s = time.perf_counter() - t0
      times = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = run(params, prompts)
        times.append(time.perf_counter() - t0)
      assert (out.lengths == args.new_tokens).all()
      t = statistics.median(times)
      row = {'model': name, 'batch': batch, 'cache': cache, 'weights': scheme,
             'prompt_len': args.prompt_len, 'new_tokens': args.new_tokens,
             'tokens_per_s': batch * args.new_tokens / t, 'ms_per_step': 1e3 * t / args.new_tokens,
             'compile_and_first_s': compile_s, 'seconds': times}
      rows.append(row)
      print(f'{batch:>5} {str(cache):>6} {scheme:>7} {compile_s:>9.1f} '
            f'{row["tokens_per_s"]:>9.0f} {row["ms_per_step"]:>8.2f}')
  for batch in sorted({r['batch'] for r in rows}):
    speed = {(r['cache'], r['weights']): r['tokens_per_s'] for r in rows if r['batch'] == batch}
    if (True, 'none') in speed and (False, 'none') in speed:
      print(f'batch {batch}: the cache is {speed[True, "none"] / speed[False, "none"]:.1f}x '
            'faster')
    for scheme in schemes:
      if scheme != 'none' and (True, scheme) in speed and (True, 'none') in speed:
        print(f'batch {batch}: {scheme} weights decode at '
              f'{speed[True, scheme] / speed[True, "none"]:.2f}x the float speed')
  for row in rows:
    print(json.dumps(row))


if __name__ == '__main__':
  main()
