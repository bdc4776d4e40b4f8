"""The training loop: logging, evaluation, checkpoints, resumption, preemption, loss guards.

`train(config, workdir)` resumes from the newest complete checkpoint in `workdir` when there is
one (metrics.jsonl is cut back to that step first, so no row is duplicated or orphaned), and
otherwise starts at step 0. Exit paths, as exceptions the launcher maps to exit codes:
- `Preempted`: SIGTERM or SIGINT arrived; the step under way finished, a checkpoint of it was
  saved and waited for (multi-host runs agree on the step through JAX's preemption sync point);
- `NonFinite`: the loss or gradient norm of a step was not finite (or more than
  `train.skip_nonfinite` updates in a row were); nothing after the last good checkpoint is saved.
The loop dispatches step k+1 before it reads step k's metrics, so logging does not stall the
device (NanoDO's pattern).
"""
from __future__ import annotations

import ast
import os
import signal
import time

import jax

from lmjax import data, flops, sharding
from lmjax.checkpoint import CheckpointError, Checkpoints, abstract_like
from lmjax.config import flatten, to_dict
from lmjax.metrics import MetricsWriter, truncate_metrics
from lmjax.model import ModelConfig
from lmjax.steps import (build_model_and_optimizer, evaluate, init_state, make_eval_step, make_train_step,
                         peak_memory_bytes, schedule_arg, state_shardings, token_bytes_table,
                         write_json_atomic)

EXIT_NONFINITE = 3   # the loss or gradient norm went non-finite
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after saving; run again to resume


class Preempted(Exception):
  def __init__(self, step):
    super().__init__(f'preempted: saved step {step}; run the same command again to resume')
    self.step = step


class NonFinite(Exception):
  def __init__(self, step, last_good):
    where = f'the last good checkpoint (step {last_good}) is intact' if last_good else (
        'no checkpoint was saved before it')
    super().__init__(f'the loss or gradient norm was not finite at step {step}; stopped, {where}')
    self.step = step


class _Signals:
  """Notes SIGTERM/SIGINT instead of dying, for the loop to stop at a step boundary."""

  def __enter__(self):
    self.received = None
    self._old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _preempt_now(signals, step):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.reached_preemption_sync_point(step) or signals.received is not None
  return signals.received is not None


def _fmt_time(s):
  return f'{int(s // 60)}:{int(s % 60):02d}'


# Fields a cooldown branch may set differently from the run it starts from.
_BRANCH_MAY_DIFFER = ('train.', 'checkpoint.', 'optim.schedule', 'optim.decay_fraction',
                      'optim.decay_shape', 'optim.min_lr_ratio', 'data.eval_batches',
                      'data.workers', 'data.data_dir', 'mesh.')


def _init_from(config, abstract, new_iterator):
  """State, meta, data iterator and step of `train.init_from`'s checkpoint at `train.init_step`:
  the start of a cooldown branch (Hägele et al. 2024), which then continues that run's batches
  with its own schedule. The two configs must agree on the model, data and optimizer."""
  parent, step = config.train.init_from, config.train.init_step
  source = Checkpoints(parent, config.checkpoint, read_only=True)
  if step not in source.steps():
    raise CheckpointError(f'config.train.init_from={parent}: no checkpoint at step {step} '
                          f'(has {source.steps()})')
  state, meta = source.restore(step, abstract, None)
  ours, theirs = flatten(to_dict(config)), flatten(meta['config'])
  differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)
                  and not k.startswith(_BRANCH_MAY_DIFFER))
  if differ:
    raise CheckpointError(f'config.train.init_from={parent}: that run differs in '
                          f'{", ".join(differ[:6])}; a branch may change only its schedule')
  iterator = new_iterator()
  iterator.set_state(ast.literal_eval(meta['data']))
  source.close()
  return state, meta, iterator, step


def train(config, workdir=None, writer=None, restore_step=None) -> dict:
  """Trains (or resumes) a resolved config; returns the summary (also workdir/summary.json)."""
  t_begin = time.time()
  model, tx = build_model_and_optimizer(config)
  mcfg = ModelConfig.from_config(config.model)
  counts = flops.param_counts(mcfg)
  seq_len, batch_size, steps = config.data.seq_len, config.data.batch_size, config.train.steps
  tokens_per_step = batch_size * seq_len
  flops_per_token = flops.exact_flops_per_token(mcfg, seq_len)
  dev = jax.devices()[0]
  peak, peak_source = flops.peak_flops_per_device(dev.device_kind, dev.platform,
                                                  config.train.peak_flops)
  mesh = sharding.make_mesh(config)
  shardings = state_shardings(model, tx, config, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  process = (jax.process_index(), jax.process_count())
  if process[1] > 1:  # process 0 prepares the dataset and tokenizer; the others then read them
    from jax.experimental import multihost_utils
    if process[0] == 0:
      data.load(config)
    multihost_utils.sync_global_devices('lmjax: data prepared')
  dataset = data.load(config)
  eval_set = [sharding.put_batch(b, batch_sharding)
              for b in data.eval_batches(dataset, config, *process)]
  new_iterator = lambda: data.train_iterator(dataset, config, *process)

  ckpt = Checkpoints(workdir, config.checkpoint) if workdir else None
  messages = []
  restored = None
  abstract = abstract_like(jax.eval_shape(lambda: init_state(model, tx, config)), shardings)
  if ckpt is not None:
    restored = ckpt.restore_latest(abstract, new_iterator, restore_step, log=messages.append)
  if restored is None and config.train.init_from:
    restored = _init_from(config, abstract, new_iterator)
    messages.append(f'started from {config.train.init_from} at step {config.train.init_step} '
                    '(a cooldown branch)')
  elif restored is not None:
    messages.append(f'resumed from the checkpoint at step {restored[3]}')
  if restored is not None:
    state, _, train_iter, start = restored
  else:
    state, train_iter, start = init_state(model, tx, config, shardings), new_iterator(), 0
  primary = jax.process_index() == 0  # only process 0 writes logs, metrics and summaries
  if workdir and primary:
    dropped = truncate_metrics(os.path.join(workdir, 'metrics.jsonl'), start)
    if dropped:
      messages.append(f'dropped {dropped} metrics rows after step {start}')
    write_json_atomic(os.path.join(workdir, 'config.json'), to_dict(config))
  writer = writer or MetricsWriter(workdir if primary else None,
                                   stream=None if primary else open(os.devnull, 'w'),
                                   purge_step=start + 1 if start else None)
  for message in messages:
    writer.print(message)
  writer.print(f'mesh: data×fsdp×tensor = {"×".join(map(str, mesh.devices.shape))} over '
               f'{jax.device_count()} devices, {jax.process_count()} process(es)')
  writer.print(
      f'model: {counts["total"]:,} params ({counts["non_embedding"]:,} non-embedding; '
      f'12·L·d² = {counts["kaplan_approx"]:,}); {flops_per_token / 1e6:.2f} MFLOPs/token '
      f'(6N+12LdT: {flops.kaplan_flops_per_token(mcfg, seq_len) / 1e6:.2f}); '
      f'peak {peak / 1e9:.1f} GFLOP/s per device ({peak_source}, {dev.device_kind})')
  if dataset.stats:
    st = dataset.stats['train']
    writer.print(f'data: {config.data.dataset}, {st["documents"]:,} train documents, '
                 f'{st["bytes"]:,} bytes, {st["tokens"]:,} tokens ({config.data.tokenizer}); '
                 f'{len(eval_set)} eval batches; unigram entropy of the eval text '
                 f'{dataset.stats["eval"]["unigram_bits_per_byte"]:.3f} bits per byte')

  next_batch = lambda it: sharding.put_batch(next(it), batch_sharding)
  batch = next_batch(train_iter) if start < steps else next_batch(new_iterator())
  t0 = time.time()
  lr_schedule = jax.device_put(schedule_arg(config), sharding.replicated(mesh))
  train_step = make_train_step(model, tx, config, mesh, shardings).lower(
      state, batch, lr_schedule).compile()
  compile_s = time.time() - t0
  cost = train_step.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = (cost or {}).get('flops', float('nan'))
  computed = flops.exact_flops_per_token(mcfg, seq_len, attention='computed')
  writer.print(f'compiled train step in {compile_s:.1f}s; XLA counts '
               f'{xla_flops / tokens_per_step / 1e6:.2f} MFLOPs/token, the analytic count of '
               f'the matmuls it runs {computed / 1e6:.2f}')
  eval_step = make_eval_step(
      model, token_bytes_table(dataset.tokenizer, config.model.vocab_size), mesh,
      shardings.params)

  last = {'row': None, 'eval': None, 'saved': start or None}
  timer = {'t': time.time(), 'step': start}

  def log_row(step, m):
    m = jax.device_get(m)  # waits for the step: the time below is the step's
    now = time.time()
    dt, n_steps = now - timer['t'], step - timer['step']
    timer['t'], timer['step'] = now, step
    if int(m['bad_step']) >= 0:
      raise NonFinite(int(m['bad_step']), last['saved'])
    tps = n_steps * tokens_per_step / dt
    row = {'step': step, 'loss': float(m['loss']), 'lr': float(m['lr']),
           'grad_norm': float(m['grad_norm']), 'tokens': step * tokens_per_step,
           'tokens_per_s': tps, 'step_time_s': dt / n_steps,
           'mfu': flops.mfu(flops_per_token, tps, peak, jax.device_count()),
           'epoch': data.epochs_seen(dataset, config, step)}
    if config.train.skip_nonfinite:
      row['skipped_updates'] = int(m['skipped'])
    writer.write(row)
    writer.print(f'step {step}/{steps} loss {row["loss"]:.4f} lr {row["lr"]:.2e} '
                 f'gnorm {row["grad_norm"]:.3f} {tps:,.0f} tok/s mfu {row["mfu"]:.1%} '
                 f'eta {_fmt_time((steps - step) * dt / n_steps)}', live=True)
    last['row'] = row

  def save(step, state, force=False):
    if int(jax.device_get(state.bad_step)) >= 0:
      raise NonFinite(int(jax.device_get(state.bad_step)), last['saved'])
    meta = {'step': step, 'config': to_dict(config)}
    ckpt.save(step, state, train_iter, meta, force=force)
    last['saved'] = step

  keep_steps = set(config.checkpoint.keep_steps or ())
  pending = None  # (step, metrics) of a log step, read after the next step is dispatched
  with _Signals() as signals:
    for step in range(start + 1, steps + 1):
      if step > start + 1:
        batch = next_batch(train_iter)
      state, m = train_step(state, batch, lr_schedule)
      if pending is not None:
        log_row(*pending)
        pending = None
      if step % config.train.log_every == 0 or step == steps:
        pending = (step, m)
      boundary = step % config.train.eval_every == 0 or step == steps
      keep = step in keep_steps
      saving = ckpt is not None and (step % config.checkpoint.every_steps == 0 or step == steps
                                     or keep)
      if pending is not None and (boundary or saving):
        log_row(*pending)  # before eval (not timed as steps) and before a checkpoint
        pending = None
      if boundary:
        last['eval'] = {'step': step, **evaluate(eval_step, state.params, eval_set)}
        writer.write(last['eval'])
        writer.print(f'eval step {step}: loss {last["eval"]["eval_loss"]:.4f} '
                     f'ppl {last["eval"]["eval_ppl"]:.2f} bpb {last["eval"]["eval_bpb"]:.4f}')
        timer['t'] = time.time()
      if saving:
        save(step, state, force=step == steps or keep)
      if step < steps and _preempt_now(signals, step):
        if pending is not None:
          log_row(*pending)
          pending = None
        if ckpt is not None:
          if last['saved'] != step:
            save(step, state, force=True)
          ckpt.wait()
        writer.close()
        raise Preempted(step)
  if ckpt is not None:
    ckpt.close()

  wall = time.time() - t_begin
  final = last['eval'] or {'step': steps, **evaluate(eval_step, state.params, eval_set)}
  summary = {'steps': steps, 'tokens': steps * tokens_per_step, 'params': counts['total'],
             'params_non_embedding': counts['non_embedding'],
             'flops_per_token': flops_per_token,
             'final_loss': last['row'] and last['row']['loss'],
             'compile_s': compile_s, 'wall_s': wall, 'peak_memory_bytes': peak_memory_bytes(),
             'resumed_from': start or None,
             'unigram_bits_per_byte': dataset.stats.get('eval', {}).get('unigram_bits_per_byte'),
             **{k: v for k, v in final.items() if k != 'step'}}
  if workdir and primary:
    write_json_atomic(os.path.join(workdir, 'summary.json'), summary)
  writer.print(f'done: {steps} steps, {summary["tokens"]:,} tokens in {_fmt_time(wall)}; '
               f'final eval loss {summary["eval_loss"]:.4f}, bits per byte '
               f'{summary["eval_bpb"]:.4f}')
  writer.close()
  summary['state'] = state
  return summary
