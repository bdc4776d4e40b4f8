"""Train state, the jitted train and eval steps, and the training loop."""
from __future__ import annotations

import json
import math
import os
import resource
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmjax import data, flops, optim
from lmjax.config import to_dict
from lmjax.metrics import MetricsWriter
from lmjax.model import ModelConfig, Transformer


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def build(config):
  """(model, optimizer) for a resolved config."""
  model = Transformer(ModelConfig.from_config(config.model))
  return model, optim.optimizer(config.optim, config.train.steps)


def init_params(model, config, rng):
  """Unboxed parameters (logical axis annotations dropped; see `param_logical_axes`)."""
  tokens = jnp.zeros((1, config.data.seq_len), jnp.int32)
  return nn.meta.unbox(model.init(rng, tokens)['params'])


def param_logical_axes(model, config):
  tokens = jax.ShapeDtypeStruct((1, config.data.seq_len), jnp.int32)
  boxed = jax.eval_shape(lambda t: model.init(jax.random.PRNGKey(0), t), tokens)['params']
  return nn.get_partition_spec(boxed)


def init_state(model, tx, config) -> TrainState:
  params = init_params(model, config, jax.random.PRNGKey(config.seed))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def loss_sums(params, model, batch, rng=None):
  """(sum of token cross-entropies in nats, number of target tokens), logits in float32."""
  logits_BxTxV = model.apply({'params': params}, batch['inputs'], batch.get('positions'),
                             batch.get('segment_ids'), deterministic=rng is None,
                             rngs=None if rng is None else {'dropout': rng})
  nats_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch['targets'])
  weights_BxT = batch.get('weights', jnp.ones_like(nats_BxT))
  return (nats_BxT * weights_BxT).sum(), weights_BxT.sum()


def make_train_step(model, tx, config):
  """state, batch -> (state, metrics). The batch (B, T) is split into `grad_accum` micro-batches
  whose summed gradients are divided by the total token count: the update of the whole batch."""
  accum, lr_at = config.train.grad_accum, optim.schedule(config.optim, config.train.steps)
  base_rng = jax.random.PRNGKey(config.seed + 1)
  use_rng = config.model.dropout > 0

  def sum_and_grad(params, batch, rng):
    fn = lambda p: loss_sums(p, model, batch, rng if use_rng else None)
    return jax.value_and_grad(fn, has_aux=True)(params)

  def step_fn(state, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    if accum == 1:
      (nats, count), grads = sum_and_grad(state.params, batch, rng)
    else:
      micro = jax.tree_util.tree_map(
          lambda x: x.reshape(accum, x.shape[0] // accum, *x.shape[1:]), batch)

      def body(carry, xs):
        i, mb = xs
        (n, c), g = sum_and_grad(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree_util.tree_map(jnp.add, carry, (n, c, g)), None

      zeros = (jnp.zeros(()), jnp.zeros(()),
               jax.tree_util.tree_map(jnp.zeros_like, state.params))
      (nats, count, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
    grads = jax.tree_util.tree_map(lambda g: g / count, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': nats / count, 'grad_norm': optax.tree.norm(grads),
               'lr': lr_at(state.step)}
    return TrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(step_fn, donate_argnums=0)


def make_eval_step(model, token_bytes):
  """params, batch -> summed nats, target tokens and their UTF-8 bytes (for bits per byte)."""
  bytes_per_token = jnp.asarray(token_bytes, jnp.float32)

  def eval_fn(params, batch):
    nats, count = loss_sums(params, model, batch)
    weights = batch.get('weights', jnp.ones(batch['targets'].shape, jnp.float32))
    return {'nats': nats, 'tokens': count,
            'bytes': (bytes_per_token[batch['targets']] * weights).sum()}
  return jax.jit(eval_fn)


def evaluate(eval_step, params, batches) -> dict:
  """Mean loss per token, perplexity and bits per byte over the evaluation batches."""
  total = {'nats': 0.0, 'tokens': 0.0, 'bytes': 0.0}
  for batch in batches:
    out = jax.device_get(eval_step(params, batch))
    for k in total:
      total[k] += float(out[k])
  loss = total['nats'] / total['tokens']
  bpb = total['nats'] / math.log(2) / total['bytes'] if total['bytes'] else float('nan')
  return {'eval_loss': loss, 'eval_ppl': math.exp(min(loss, 700)), 'eval_bpb': bpb}


def token_bytes_table(tokenizer, vocab_size):
  table = np.zeros(vocab_size, np.float32)
  own = tokenizer.token_bytes()
  table[:len(own)] = own
  return table


def peak_memory_bytes() -> int:
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_json_atomic(path, obj):
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _fmt_time(s):
  return f'{int(s // 60)}:{int(s % 60):02d}'


def train(config, workdir=None, writer=None) -> dict:
  """Trains a resolved config; returns the summary (also written to workdir/summary.json)."""
  t_begin = time.time()
  model, tx = build(config)
  mcfg = ModelConfig.from_config(config.model)
  counts = flops.param_counts(mcfg)
  seq_len, batch_size, steps = config.data.seq_len, config.data.batch_size, config.train.steps
  tokens_per_step = batch_size * seq_len
  flops_per_token = flops.exact_flops_per_token(mcfg, seq_len)
  dev = jax.devices()[0]
  peak, peak_source = flops.peak_flops_per_device(dev.device_kind, dev.platform,
                                                  config.train.peak_flops)
  writer = writer or MetricsWriter(workdir)
  if workdir:
    write_json_atomic(os.path.join(workdir, 'config.json'), to_dict(config))
  writer.print(
      f'model: {counts["total"]:,} params ({counts["non_embedding"]:,} non-embedding; '
      f'12·L·d² = {counts["kaplan_approx"]:,}); {flops_per_token / 1e6:.2f} MFLOPs/token '
      f'(6N+12LdT: {flops.kaplan_flops_per_token(mcfg, seq_len) / 1e6:.2f}); '
      f'peak {peak / 1e9:.1f} GFLOP/s per device ({peak_source}, {dev.device_kind})')

  dataset = data.load(config)
  eval_set = data.eval_batches(dataset, config)
  if dataset.stats:
    st = dataset.stats['train']
    writer.print(f'data: {config.data.dataset}, {st["documents"]:,} train documents, '
                 f'{st["bytes"]:,} bytes, {st["tokens"]:,} tokens ({config.data.tokenizer}); '
                 f'{len(eval_set)} eval batches; unigram entropy of the eval text '
                 f'{dataset.stats["eval"]["unigram_bits_per_byte"]:.3f} bits per byte')
  state = init_state(model, tx, config)
  train_iter = data.train_iterator(dataset, config)
  first = next(train_iter)
  t0 = time.time()
  train_step = make_train_step(model, tx, config).lower(state, first).compile()
  compile_s = time.time() - t0
  cost = train_step.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = (cost or {}).get('flops', float('nan'))
  computed = flops.exact_flops_per_token(mcfg, seq_len, attention='computed')
  writer.print(f'compiled train step in {compile_s:.1f}s; XLA counts '
               f'{xla_flops / tokens_per_step / 1e6:.2f} MFLOPs/token, the analytic count of '
               f'the matmuls it runs {computed / 1e6:.2f}')
  eval_step = make_eval_step(
      model, token_bytes_table(dataset.tokenizer, config.model.vocab_size))

  def log_row(step, m, dt, n_steps):
    tps = n_steps * tokens_per_step / dt
    row = {'step': step, 'loss': float(m['loss']), 'lr': float(m['lr']),
           'grad_norm': float(m['grad_norm']), 'tokens': step * tokens_per_step,
           'tokens_per_s': tps, 'step_time_s': dt / n_steps,
           'mfu': flops.mfu(flops_per_token, tps, peak, jax.device_count()),
           'epoch': data.epochs_seen(dataset, config, step)}
    writer.write(row)
    eta = (steps - step) * dt / n_steps
    writer.print(f'step {step}/{steps} loss {row["loss"]:.4f} lr {row["lr"]:.2e} '
                 f'gnorm {row["grad_norm"]:.3f} {tps:,.0f} tok/s mfu {row["mfu"]:.1%} '
                 f'eta {_fmt_time(eta)}', live=True)
    return row

  last_eval, last_row = None, None
  pending = None  # (step, metrics) of a log step, read after the next step is dispatched
  t_log, step_log = time.time(), 0
  batch = first
  for step in range(1, steps + 1):
    state, m = train_step(state, batch)
    if pending is not None:
      jax.block_until_ready(pending[1])
      now = time.time()
      last_row = log_row(pending[0], jax.device_get(pending[1]), now - t_log,
                         pending[0] - step_log)
      t_log, step_log, pending = now, pending[0], None
    if step % config.train.log_every == 0 or step == steps:
      pending = (step, m)
    if step % config.train.eval_every == 0 or step == steps:
      if pending is not None:  # read before evaluating, so eval time is not counted as steps
        jax.block_until_ready(pending[1])
        now = time.time()
        last_row = log_row(pending[0], jax.device_get(pending[1]), now - t_log,
                           pending[0] - step_log)
        pending = None
      last_eval = {'step': step, **evaluate(eval_step, state.params, eval_set)}
      writer.write(last_eval)
      writer.print(f'eval step {step}: loss {last_eval["eval_loss"]:.4f} '
                   f'ppl {last_eval["eval_ppl"]:.2f} bpb {last_eval["eval_bpb"]:.4f}')
      t_log, step_log = time.time(), step
    if step < steps:
      batch = next(train_iter)

  wall = time.time() - t_begin
  summary = {'steps': steps, 'tokens': steps * tokens_per_step, 'params': counts['total'],
             'params_non_embedding': counts['non_embedding'],
             'flops_per_token': flops_per_token, 'final_loss': last_row and last_row['loss'],
             'compile_s': compile_s, 'wall_s': wall, 'peak_memory_bytes': peak_memory_bytes(),
             'unigram_bits_per_byte': dataset.stats.get('eval', {}).get('unigram_bits_per_byte'),
             **{k: v for k, v in last_eval.items() if k != 'step'}}
  if workdir:
    write_json_atomic(os.path.join(workdir, 'summary.json'), summary)
  writer.print(f'done: {steps} steps, {summary["tokens"]:,} tokens in {_fmt_time(wall)}; '
               f'final eval loss {summary["eval_loss"]:.4f}, bits per byte '
               f'{summary["eval_bpb"]:.4f}')
  writer.close()
  summary['state'] = state
  return summary
