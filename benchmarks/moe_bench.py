"""Mixture-of-experts training throughput against a dense model of the same active FLOPs.

  python benchmarks/moe_bench.py [--steps=20] [--variants=dense,e8_blocked,...]

The base is experiments/configs/small.py (LLaMA-style, d_model 256, 4 layers, 16 × 256 tokens,
the default corpus). Every MoE variant has experts of width 384, two per token; the dense model's
MLP is 768 wide, so a token's matmul FLOPs are the same but for the router's (lmjax/model/flops.py
counts both). Each variant runs in its own process (lmjax/train/throughput.py: compile, 3
untimed steps, then timed steps; tokens/s from the median). Prints one JSON line per variant and
a table with the ratio to dense. Run nothing else meanwhile: on 2 cores a parallel job halves
every number.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERT_WIDTH, TOP_K = 384, 2
VARIANTS = {
    'dense': {'d_ff': TOP_K * EXPERT_WIDTH},
    'e4_blocked': {'moe_experts': 4, 'moe_impl': 'blocked'},
    'e8_blocked': {'moe_experts': 8, 'moe_impl': 'blocked'},
    'e8_ragged': {'moe_experts': 8, 'moe_impl': 'ragged'},
    'e8_capacity1.25': {'moe_experts': 8, 'moe_capacity_factor': 1.25},
}


def config(name):
  sys.path.insert(0, ROOT)
  from experiments.configs import small
  from lmjax.config import resolve
  c = small.get_config()
  fields = dict(VARIANTS[name])
  if 'moe_experts' in fields:
    fields.update(moe_top_k=TOP_K, moe_d_ff=EXPERT_WIDTH)
  c.model.update(fields)
  return resolve(c)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--variants', default=','.join(VARIANTS))
  ap.add_argument('--child', default=None, help='internal: measure one variant here')
  args = ap.parse_args()
  if args.child:
    sys.path.insert(0, ROOT)
    from lmjax.train import throughput
    row = throughput.measure(config(args.child), args.child, args.steps, 3, 20)
    print(json.dumps(row), flush=True)
    return
  names = args.variants.split(',')
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    sys.exit(f'error: --variants: {unknown[0]!r} is not one of {", ".join(VARIANTS)}')
  rows = []
  for name in names:
    out = subprocess.run([sys.executable, __file__, f'--child={name}', f'--steps={args.steps}'],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
      sys.exit(f'error: {name}: {out.stderr.strip().splitlines()[-1]}')
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    rows.append(row)
  dense = next((r for r in rows if r['config'] == 'dense'), None)
  print(f'{"variant":>16} {"N":>11} {"MFLOPs/tok":>10} {"tok/s":>9} {"step ms":>8} '
        f'{"MFU":>6} {"vs dense":>8}')
  for r in rows:
    ratio = f'{r["tokens_per_s"] / dense["tokens_per_s"]:.2f}' if dense else 'n/a'
    print(f'{r["config"]:>16} {r["N"]:>11,} {r["flops_per_token"] / 1e6:>10.2f} '
          f'{r["tokens_per_s"]:>9,.0f} {r["step_s"] * 1e3:>8.1f} {r["mfu"]:>6.1%} {ratio:>8}')


if __name__ == '__main__':
  main()
