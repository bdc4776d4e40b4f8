"""The training loop: checkpoints, resumption, preemption and loss guards around the train step.

`train(config, workdir)` resumes from the newest complete checkpoint in `workdir` when there is
one (metrics.jsonl is cut back to that step first, so no row is duplicated or orphaned), branches
from `train.init_from` when asked, and otherwise starts at step 0 (lmjax/train/start.py). A workdir
holding a run with an incompatible config is refused before anything is written (ResumeError).
Exit paths, as exceptions the launcher maps to exit codes (lmjax/core/errors.py):
- `Preempted`: SIGTERM or SIGINT arrived; the step under way finished, a checkpoint of it was
  saved and waited for (multi-host runs agree on the step through JAX's preemption sync point);
- `NonFinite`: the loss or gradient norm of a step was not finite (or more than
  `train.skip_nonfinite` updates in a row were); nothing after the last good checkpoint is saved.
The loop dispatches step k+1 before it reads step k's metrics (lmjax/train/log.py). Steps
`train.profile_start` ... + `train.profile_steps` - 1 are traced by jax.profiler into DIR/tb
(lmjax/train/profiling.py).
"""
from __future__ import annotations

import os
import signal
import time
from typing import NamedTuple

import jax

from lmjax.config import to_dict
from lmjax.core.errors import EXIT_PREEMPTED, LmjaxError
from lmjax.core.rundir import RunDir
from lmjax.data.prefetch import DevicePrefetch
from lmjax.model import lora
from lmjax.train import compile_cache, machine
from lmjax.train.checkpoint import Checkpoints
from lmjax.train.log import NonFinite, TrainLog
from lmjax.train.metrics import MetricsWriter
from lmjax.train.profiling import ProfileWindow
from lmjax.train.start import check_resume, set_up, start_state
from lmjax.train.steps import TrainState, peak_memory_bytes, xla_flops


class Preempted(LmjaxError):
  """SIGTERM or SIGINT arrived; the step under way finished and a checkpoint of it was saved."""
  exit_code, label = EXIT_PREEMPTED, ''  # not an error: the same command resumes

  def __init__(self, step):
    super().__init__(f'preempted: saved step {step}; run the same command again to resume')
    self.step = step


def train(config, workdir=None, writer=None, restore_step=None, notes=(),
          resume_changes=None, on_eval=None) -> tuple[dict, TrainState]:
  """Trains a resolved config (fresh, resumed or branched); returns (summary, final state). The
  summary is also written to the run directory; `notes` are printed with the banner.
  `resume_changes`: what check_resume returned, when the caller checked already (train/run.py).
  `on_eval(step, params, setup)`: more numbers for each evaluation's row (train/run.py)."""
  t_begin = time.time()
  changed = resume_changes
  if changed is None:
    changed = check_resume(workdir, config) if workdir else {}  # before anything is written
  setup = set_up(config)
  ckpt = Checkpoints(workdir, config.checkpoint) if workdir else None
  start = start_state(config, setup, ckpt, restore_step)
  if ckpt is not None:
    ckpt.base = start.base  # a LoRA run saves its adapters alone
  primary = jax.process_index() == 0  # only process 0 writes logs, metrics and summaries
  writer, opened = _open_run(config, workdir, start.step, writer, primary)
  log = TrainLog(config, setup, writer, start.step, start.loss_window, on_eval)
  log.checkpoint_path = ckpt.path if ckpt is not None else None
  log.banner((*notes, *([f'resuming with changed fields: {", ".join(changed)}'] if changed else []),
              *start.messages, *opened))
  # A finished run (resumed to evaluate) still needs a batch to compile the step with.
  batches = DevicePrefetch(start.data_iterator if start.step < config.train.steps
                           else setup.new_iterator(), setup.put_batch)
  profile = ProfileWindow(config, workdir, start.step)
  # The signal guard also covers the teardown after a preemption: a repeated SIGTERM (srun
  # forwards the one its step got from SLURM) must not kill a run that has saved and is leaving.
  with _Signals() as signals:
    try:
      batch = next(batches)
      compiled = _compile(setup, start.state, batch)
      log.compiled(compiled.seconds, compiled.xla_flops, compiled.from_cache)
      state = _run_steps(config, compiled, start, batches, batch, log, ckpt, profile, signals)
    finally:
      profile.close()
      batches.close()
  if ckpt is not None:
    ckpt.close()
  wall = time.time() - t_begin
  summary = _summary(config, setup, log, start, compiled, wall, log.final_eval(state.params))
  if workdir and primary:
    log.writer.sync()
    RunDir(workdir).write_summary(summary)
  log.done(summary, wall)
  return summary, state


def _open_run(config, workdir, start_step, writer, primary):
  """Cuts metrics.jsonl back to the start step and writes config.json (process 0); returns the
  metrics writer and what to report."""
  messages = []
  if workdir and primary:
    run = RunDir(workdir)
    dropped = run.truncate_metrics(start_step)
    if dropped:
      messages.append(f'dropped {dropped} metrics rows after step {start_step}')
    run.write_config(to_dict(config))
  writer = writer or MetricsWriter(workdir if primary else None,
                                   stream=None if primary else open(os.devnull, 'w'),
                                   purge_step=start_step + 1 if start_step else None)
  return writer, messages


def _summary(config, setup, log, start, compiled, wall, final) -> dict:
  return {'steps': config.train.steps, 'tokens': config.train.steps * log.tokens_per_step,
          'N': log.counts.N, 'N_no_emb': log.counts.N_no_emb, 'N_active': log.counts.N_active,
          'N_trainable': (lora.count(setup.train_step.abstract_state().params)
                          if lora.has_adapters(config.model) else log.counts.N),
          'N_active_no_emb': log.counts.N_active_no_emb,
          'flops_per_token': log.flops_per_token,
          'flops_per_token_causal': log.flops_per_token_causal,
          'final_loss': log.last_row and log.last_row['loss'], 'compile_s': compiled.seconds,
          'compile_cache_hit': compiled.from_cache,
          'wall_s': wall, 'peak_memory_bytes': peak_memory_bytes(),
          'resumed_from': start.step or None,
          'unigram_bits_per_byte': setup.dataset.stats.get('eval', {}).get(
              'unigram_bits_per_byte'),
          'machine': machine.describe(),
          **({'moe_load': log.moe_load} if log.moe_load is not None else {}),
          **{k: v for k, v in final.items() if k != 'step'}}


class Compiled(NamedTuple):
  step: object        # the compiled train step: (state, batch, schedule) -> (state, metrics)
  schedule: object    # its schedule argument (lmjax.train.steps.schedule_arg), on the devices
  seconds: float
  xla_flops: float    # per step, from XLA's cost analysis
  from_cache: bool    # loaded from the persistent compilation cache (lmjax/train/compile_cache.py)


def _compile(setup, state, batch) -> Compiled:
  t0 = time.time()
  lowered = setup.train_step.lower(state, batch)
  schedule = setup.train_step.schedule()
  hits = compile_cache.hits()  # counted over the step's own compile, not what lowering ran
  step = lowered.compile()
  from_cache = compile_cache.hits() > hits
  seconds = time.time() - t0
  return Compiled(step, schedule, seconds, xla_flops(step), from_cache)


def _run_steps(config, compiled, start, iterator, batch, log, ckpt, profile, signals):
  """Steps start.step + 1 ... train.steps; `batch` is the first step's, `iterator` hands out
  the others (its position is what checkpoints save); returns the final state. Stops early,
  saved, when `signals` (_Signals) has noted SIGTERM/SIGINT."""
  steps, state = config.train.steps, start.state
  keep_steps = set(config.checkpoint.keep_steps or ())
  for step in range(start.step + 1, steps + 1):
    if step > start.step + 1:
      batch = next(iterator)
    state, metrics = profile.run(step, compiled.step, state, batch, compiled.schedule)
    log.accumulate(metrics)
    log.flush()  # the previous log step's metrics, read now that this step is dispatched
    if step % config.train.log_every == 0 or step == steps:
      log.defer(step, metrics)
    evaluating = step % config.train.eval_every == 0 or step == steps
    keep = step in keep_steps
    saving = ckpt is not None and (step % config.checkpoint.every_steps == 0
                                   or step == steps or keep)
    if evaluating or saving:
      log.flush()  # before an evaluation (not timed as steps) and before a checkpoint
    if evaluating:
      log.evaluate(step, state.params)
    if saving:
      _save(ckpt, config, step, state, iterator, log, force=step == steps or keep)
    if step < steps and _preempt_now(signals, step):
      log.flush()
      if ckpt is not None:
        if log.last_saved != step:
          _save(ckpt, config, step, state, iterator, log, force=True)
        ckpt.wait()
      log.writer.close()
      raise Preempted(step)
  return state


def _save(ckpt, config, step, state, iterator, log, force):
  """Saves a checkpoint of `step`, unless the loss guard has tripped (then raises NonFinite)."""
  bad_step = int(jax.device_get(state.bad_step))
  if bad_step >= 0:
    raise NonFinite(bad_step, log.last_saved, log.last_saved_path())
  ckpt.save(step, state, iterator, {'step': step, 'config': to_dict(config),
                                    'loss_window': log.window_state()}, force=force)
  log.writer.sync()  # the metrics up to the checkpoint, durable with it
  log.last_saved = step


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
