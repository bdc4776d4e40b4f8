"""Do the accelerator configs fit the targets their docstrings name? launch.memory for each.

  python benchmarks/tpu_configs_fit.py [--only=llama_1b,llama_7b] [--tpu_only]

For each config: the TPU compiler's figures for its v5p slice (--topology; needs libtpu:
pip install -e '.[tpu]') and XLA:CPU's stand-in for 8 GPUs of 80 GB. Prints launch.memory's
reports and, last, one line per check: the bytes per device it needs of the device's memory and
the compile's wall time. Exit 0 when all fit. tests/test_memory_launch.py runs it per config
(slow: a minute or two per TPU compile on a 2-core CPU).
"""
import argparse
import os
import re
import subprocess
import sys
import time

from lmjax.core.errors import first_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config -> launch.memory flags of each target its docstring names: a v5p slice, 8 × 80 GB GPUs.
TARGETS = {
    'llama_1b': [('--topology=v5p:2x2x2', '--mesh=1,8,1'),
                 ('--mesh=1,8,1', '--device_memory=80GB')],
    'llama_7b': [('--topology=v5p:2x2x2', '--mesh=1,8,1'),
                 ('--mesh=1,8,1', '--device_memory=80GB')],
    'llama3_8b': [('--topology=v5p:2x2x2', '--mesh=1,8,1'),
                  ('--mesh=1,8,1', '--device_memory=80GB')],
}


def main():
  ap = argparse.ArgumentParser(description=first_line(__doc__))
  ap.add_argument('--only', default=','.join(TARGETS), help='configs, comma-separated')
  ap.add_argument('--tpu_only', action='store_true', help='skip the XLA:CPU stand-ins')
  args = ap.parse_args()
  rows, ok = [], True
  for name in args.only.split(','):
    for flags in TARGETS[name]:
      if args.tpu_only and not flags[0].startswith('--topology'):
        continue
      argv = [sys.executable, '-m', 'launch.memory', f'--config=experiments/configs/{name}.py',
              *flags]
      print('$ python', ' '.join(argv[1:]), flush=True)
      start = time.perf_counter()
      out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
      seconds = time.perf_counter() - start
      print(out.stdout + out.stderr, flush=True)
      verdict = re.search(r'^verdict: (.*)$', out.stdout, re.M)
      rows.append(f'{name} {" ".join(flags)}: {verdict.group(1) if verdict else "no verdict"} '
                  f'[{seconds:.0f} s]')
      ok = ok and out.returncode == 0
  print('\n'.join(rows))
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  main()
