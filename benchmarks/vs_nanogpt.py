"""lmjax vs nanoGPT training throughput on this machine, side by side.

  python benchmarks/vs_nanogpt.py --torch_python=PATH/bin/python --nanogpt=PATH_TO_NANOGPT

Alternates `python -m launch.bench --configs=S,M` (this venv) with
`../shared/bench/nanogpt_cpu_bench.py --configs S,M --modes eager` (a PyTorch venv:
`pip install torch==2.13.0`; a karpathy/nanoGPT checkout) for `--rounds` rounds, then prints
per config the tokens/s of every run and the median over rounds of the per-round ratio
lmjax ÷ nanoGPT. On a shared machine absolute numbers drift; only such ratios count. Run nothing
else meanwhile.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from lmjax.core.errors import first_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NANOGPT_BENCH = os.path.join(ROOT, '..', 'shared', 'bench', 'nanogpt_cpu_bench.py')


def _json_lines(text):
  for line in text.splitlines():
    line = line.strip()
    if line.startswith('{'):
      yield json.loads(line)


def lmjax_round(configs):
  out = subprocess.run([sys.executable, '-m', 'launch.bench', f'--configs={",".join(configs)}'],
                       cwd=ROOT, capture_output=True, text=True, check=True)
  return {r['config']: r['tokens_per_s'] for r in _json_lines(out.stdout)}


def nanogpt_round(torch_python, nanogpt, configs):
  out = subprocess.run([torch_python, NANOGPT_BENCH, nanogpt, '--configs', ','.join(configs),
                        '--modes', 'eager'], capture_output=True, text=True, check=True)
  return {r['config']: r['tokens_per_s'] for r in _json_lines(out.stdout)
          if r.get('kind') == 'train'}


def main():
  ap = argparse.ArgumentParser(description=first_line(__doc__))
  ap.add_argument('--torch_python', required=True)
  ap.add_argument('--nanogpt', required=True)
  ap.add_argument('--configs', default='S,M')
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  for path, what in ((args.torch_python, '--torch_python'), (args.nanogpt, '--nanogpt'),
                     (NANOGPT_BENCH, 'shared/bench/nanogpt_cpu_bench.py')):
    if not os.path.exists(path):
      sys.exit(f'error: {what}: {path} does not exist')
  configs = args.configs.split(',')
  runs = []
  for r in range(args.rounds):
    ours = lmjax_round(configs)
    theirs = nanogpt_round(args.torch_python, args.nanogpt, configs)
    runs.append((ours, theirs))
    print(json.dumps({'round': r, 'lmjax': ours, 'nanogpt': theirs}), flush=True)
  for c in configs:
    ratios = [o[c] / t[c] for o, t in runs]
    print(f'{c}: lmjax {[round(o[c]) for o, _ in runs]} tok/s, nanoGPT '
          f'{[round(t[c]) for _, t in runs]} tok/s, ratios {[round(x, 3) for x in ratios]}, '
          f'median ratio {statistics.median(ratios):.3f}')


if __name__ == '__main__':
  main()
