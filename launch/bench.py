"""Training-throughput benchmark: python -m launch.bench [--configs=S,M,small] [--steps=20].

Each config runs in a fresh subprocess (so peak memory is its own): the real train step of
lmjax.train.steps on synthetic tokens (config `random` data) or the config's corpus, `warmup` untimed
steps, then `steps` individually timed steps. Prints one JSON line per config (tokens/s from the
median step time, step time, compile time, MFU against the device peak (attention counted
causal, as launch.train logs it; lmjax/model/flops.py), peak memory, and the input pipeline's own
rate over `pipeline_batches` batches: for 1 and 2 processes, the global tokens per second that
process 0's reading of its rows keeps up with) and a table.
S and M are nanoGPT's shapes (shared/bench/nanogpt_cpu_bench.py times nanoGPT itself on them).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from launch.flags_util import fail, load_config_file, parse_flags

CONFIGS = {
    'S': 'experiments/configs/nanogpt_s.py',
    'M': 'experiments/configs/nanogpt_m.py',
    'tiny': 'experiments/configs/tiny.py',
    'small': 'experiments/configs/small.py',
}
_CONFIGS = flags.DEFINE_list('configs', ['S', 'M', 'small'], f'names ({", ".join(CONFIGS)}) or '
                             'config file paths')
_STEPS = flags.DEFINE_integer('steps', 20, 'timed steps')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'untimed steps after compiling')
_PIPELINE_BATCHES = flags.DEFINE_integer('pipeline_batches', 200, 'batches timed for the input '
                                         'pipeline alone, per process count')
_CHILD = flags.DEFINE_string('child', None, 'internal: run one config in this process')


def load_config(name):
  path = CONFIGS.get(name, name)
  if not os.path.isfile(path):
    fail(f'--configs: {name!r} is neither one of {", ".join(CONFIGS)} nor a config file')
  return load_config_file(path)


def run_one(name):
  import jax
  from lmjax.data import loader
  from lmjax.model import flops
  from lmjax.config import resolve
  from lmjax.model.transformer import ModelConfig
  from lmjax.train.steps import (build_model_and_optimizer, init_state, make_train_step,
                           peak_memory_bytes, schedule_arg)

  config = resolve(load_config(name))
  model, tx = build_model_and_optimizer(config)
  mcfg = ModelConfig.from_config(config.model)
  state = init_state(model, tx, config)
  dataset = loader.load(config)
  it = loader.train_iterator(dataset, config)
  batches = [jax.device_put(next(it)) for _ in range(4)]
  tokens = config.data.batch_size * config.data.seq_len
  # The input pipeline alone: process 0 of P reads its B/P rows of each global batch; the
  # global tokens per second that one process's reading keeps up with.
  input_tps = {}
  for count in (1, 2):
    if config.data.batch_size % count == 0:
      rows = loader.train_iterator(dataset, config, 0, count)
      t0 = time.perf_counter()
      for _ in range(_PIPELINE_BATCHES.value):
        next(rows)
      input_tps[count] = _PIPELINE_BATCHES.value * tokens / (time.perf_counter() - t0)
  t0 = time.perf_counter()
  lr = schedule_arg(config)
  step = make_train_step(model, tx, config).lower(state, batches[0], lr).compile()
  compile_s = time.perf_counter() - t0
  for i in range(_WARMUP.value):
    state, m = step(state, batches[i % 4], lr)
  jax.block_until_ready(m)
  times = []
  for i in range(_STEPS.value):
    t0 = time.perf_counter()
    state, m = step(state, batches[i % 4], lr)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  dev = jax.devices()[0]
  peak, source = flops.peak_flops_per_device(dev.device_kind, dev.platform,
                                             config.train.peak_flops)
  fpt = flops.exact_flops_per_token(mcfg, config.data.seq_len)
  causal = flops.exact_flops_per_token(mcfg, config.data.seq_len, attention='causal')
  mfu = flops.mfu(causal, tokens / step_s, peak)  # causal attention, as launch.train logs it
  return {'config': name, 'device': dev.device_kind, 'params': flops.count_tree(state.params),
          'tokens_per_s': round(tokens / step_s, 1), 'step_s': round(step_s, 5),
          'step_s_min': round(min(times), 5), 'compile_s': round(compile_s, 2),
          'flops_per_token': fpt, 'flops_per_token_causal': causal,
          'kaplan_flops_per_token': flops.kaplan_flops_per_token(mcfg, config.data.seq_len),
          'mfu': mfu and round(mfu, 4), 'peak_flops': peak,
          'peak_source': source, 'peak_memory_mb': round(peak_memory_bytes() / 2**20, 1),
          'pipeline_tokens_per_s': round(input_tps[1], 1),
          'pipeline_over_training': round(input_tps[1] / (tokens / step_s), 1),
          'input_tokens_per_s_by_processes': {p: round(v, 1) for p, v in input_tps.items()},
          'loss': float(m['loss'])}


def _percent(x):
  return 'n/a' if x is None else f'{x:.1%}'


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(run_one(_CHILD.value)), flush=True)
    return
  rows = []
  for name in _CONFIGS.value:
    load_config(name)  # fail early on a bad name
    out = subprocess.run([sys.executable, '-m', 'launch.bench', f'--child={name}',
                          f'--steps={_STEPS.value}', f'--warmup={_WARMUP.value}',
                          f'--pipeline_batches={_PIPELINE_BATCHES.value}'],
                         capture_output=True, text=True)
    if out.returncode:
      sys.exit(f'bench {name} failed:\n{out.stderr[-2000:]}')
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    rows.append(row)
  print(f'{"config":>8} {"params":>11} {"tok/s":>9} {"step ms":>8} {"compile s":>9} '
        f'{"MFU":>6} {"peak MB":>8} {"data tok/s":>11}', file=sys.stderr)
  for r in rows:
    print(f'{r["config"]:>8} {r["params"]:>11,} {r["tokens_per_s"]:>9,.0f} '
          f'{r["step_s"] * 1e3:>8.1f} {r["compile_s"]:>9.1f} {_percent(r["mfu"]):>6} '
          f'{r["peak_memory_mb"]:>8.0f} {r["pipeline_tokens_per_s"]:>11,.0f}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
