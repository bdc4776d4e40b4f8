"""Training throughput, what launch.bench measures: the real train step of a config
(lmjax/train/steps.py's build_train_step, on one device's mesh) on its corpus or synthetic
tokens, `warmup` untimed steps after compiling, then `steps` individually timed steps; and the
input pipeline's own rate.

`measure(config, name)` is one config in this process (its peak memory is the process's: run one
per process); `table(rows)` the summary launch.bench prints. MFU counts attention causal, as
launch.train logs it (lmjax/model/flops.py). S and M are nanoGPT's shapes
(shared/bench/nanogpt_cpu_bench.py times nanoGPT itself on them).
"""
from __future__ import annotations

import statistics
import time


def _input_rates(dataset, config, batches) -> dict:
  """{processes: global tokens/s}: for 1 and 2 processes, the rate that process 0's reading of
  its B/P rows of each global batch keeps up with."""
  from lmjax.data import loader
  tokens = config.data.batch_size * config.data.seq_len
  out = {}
  for count in (1, 2):
    if config.data.batch_size % count == 0:
      rows = loader.train_iterator(dataset, config, 0, count)
      t0 = time.perf_counter()
      for _ in range(batches):
        next(rows)
      out[count] = batches * tokens / (time.perf_counter() - t0)
  return out


def measure(config, name, steps=20, warmup=3, pipeline_batches=200) -> dict:
  """Tokens/s (from the median step), step times, compile time, MFU, peak memory and the input
  pipeline's rate of a resolved config."""
  import jax

  from lmjax.data import loader
  from lmjax.model import flops
  from lmjax.model.spec import ModelConfig
  from lmjax.train import sharding
  from lmjax.train.steps import build_train_step, peak_memory_bytes
  train_step = build_train_step(config, sharding.make_mesh(config, jax.devices()[:1]))
  state = train_step.init_state()
  dataset = loader.load(config)
  it = loader.train_iterator(dataset, config)
  batches = [sharding.put_batch(next(it), sharding.batch_sharding(train_step.mesh))
             for _ in range(4)]
  tokens = config.data.batch_size * config.data.seq_len
  input_tps = _input_rates(dataset, config, pipeline_batches)
  t0 = time.perf_counter()
  step, schedule = train_step.lower(state, batches[0]).compile(), train_step.schedule()
  compile_s = time.perf_counter() - t0
  for i in range(warmup):
    state, m = step(state, batches[i % 4], schedule)
  jax.block_until_ready(m)
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, batches[i % 4], schedule)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  dev = jax.devices()[0]
  peak, source = flops.peak_flops_per_device(dev.device_kind, dev.platform,
                                             config.train.peak_flops)
  mcfg = ModelConfig.from_config(config.model)
  fpt = flops.exact_flops_per_token(mcfg, config.data.seq_len)
  causal = flops.exact_flops_per_token(mcfg, config.data.seq_len, attention='causal')
  mfu = flops.mfu(causal, tokens / step_s, peak)
  return {'config': name, 'device': dev.device_kind, 'N': flops.count_tree(state.params),
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


def table(rows) -> str:
  """One line per config: parameters, tokens/s, step ms, compile s, MFU, peak MB, data tok/s."""
  pct = lambda x: 'n/a' if x is None else f'{x:.1%}'
  lines = [f'{"config":>8} {"params":>11} {"tok/s":>9} {"step ms":>8} {"compile s":>9} '
           f'{"MFU":>6} {"peak MB":>8} {"data tok/s":>11}']
  lines += [f'{r["config"]:>8} {r["N"]:>11,} {r["tokens_per_s"]:>9,.0f} '
            f'{r["step_s"] * 1e3:>8.1f} {r["compile_s"]:>9.1f} {pct(r["mfu"]):>6} '
            f'{r["peak_memory_mb"]:>8.0f} {r["pipeline_tokens_per_s"]:>11,.0f}' for r in rows]
  return '\n'.join(lines)
