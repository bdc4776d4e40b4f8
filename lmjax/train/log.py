"""What a training run reports: its banner, a metrics row every `log_every` steps, evaluations,
and the closing line.

The loop dispatches step k+1 before it reads step k's metrics back to the host (NanoDO's
pattern), so logging never stalls the device: a log step's metrics wait here (`defer`) until
`flush` reads them. Reading them is also where a non-finite loss or gradient norm is caught.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from lmjax.core.errors import EXIT_NONFINITE, LmjaxError
from lmjax.data import loader
from lmjax.model import flops, lora, moe
from lmjax.model.spec import ModelConfig
from lmjax.train import optim, preference
from lmjax.train.steps import evaluate, make_eval_step, token_bytes_table


class NonFinite(LmjaxError):
  """The loss or gradient norm of a step was not finite; nothing after the last good
  checkpoint is saved."""
  exit_code = EXIT_NONFINITE

  def __init__(self, step, last_good, path=None):
    named = f'step {last_good}, {path}' if path else f'step {last_good}'
    where = f'the last good checkpoint ({named}) is intact' if last_good else (
        'no checkpoint was saved before it')
    super().__init__(f'the loss or gradient norm was not finite at step {step}; stopped, {where}')
    self.step = step


def first_device():
  """The device a run's MFU is measured against (tests stand in another)."""
  return jax.devices()[0]


def _percent(x):
  return 'n/a' if x is None else f'{x:.1%}'


def fmt_time(s):
  return f'{int(s // 60)}:{int(s % 60):02d}'


class TrainLog:
  """Owns a run's deferred metrics, its evaluations and the timing of its steps; writes rows to
  a lmjax.train.metrics.MetricsWriter. `last_saved` is the newest checkpoint step, saved or
  restored (verified against its digests), for errors."""

  def __init__(self, config, setup, writer, start_step, loss_window=(0.0, 0), on_eval=None):
    self.config, self.setup, self.writer, self.on_eval = config, setup, writer, on_eval
    self.model_config = ModelConfig.from_config(config.model)
    self.counts = flops.config_counts(config)  # as the sweeps planned them
    self.tokens_per_step = config.data.batch_size * config.data.seq_len
    # MFU counts attention over the pairs the causal mask keeps (Megatron-LM's and MaxText's
    # convention; Levanter and PaLM count all T² pairs): both counts go in the banner and in
    # summary.json, the dense one as `flops_per_token` (C = D · flops_per_token in the sweeps).
    self.flops_per_token = self.counts.flops_per_token
    self.flops_per_token_causal = self.counts.flops_per_token_causal
    self.device = first_device()
    self.peak, self.peak_source = flops.peak_flops_per_device(
        self.device.device_kind, self.device.platform, config.train.peak_flops)
    self.eval_step = preference.make_eval_step(setup.model, config.dpo) if (
        config.train.objective == 'dpo') else make_eval_step(
        setup.model, token_bytes_table(setup.dataset.tokenizer, config.model.vocab_size),
        setup.mesh, setup.shardings.params, config.train.loss_chunk)
    self.pending = None  # (step, metrics on the device) of the last log step, not yet read
    self.last_row = self.last_eval = None
    self.moe_load = None  # the (MoE layers, experts) load table of the last logged step
    self.last_saved = start_step or None
    self.checkpoint_path = None  # step -> the directory of its checkpoint (set by the loop)
    self.clock = (time.time(), start_step)  # (time, step) the next row's rate is counted from
    # The train loss summed over the steps since the last log step, on the device (no waiting);
    # a resumed run starts from the window its checkpoint cut (window_state, in the meta).
    total, steps = loss_window
    self.window = (jnp.asarray(total, jnp.float32), int(steps)) if steps else (None, 0)

  def banner(self, messages):
    """The lines before compiling: what resumed or branched, the mesh, model and data."""
    config, setup, counts, w = self.config, self.setup, self.counts, self.writer
    for message in messages:
      w.print(message)
    w.print(f'mesh: data×fsdp×tensor = {"×".join(map(str, setup.mesh.devices.shape))} over '
            f'{jax.device_count()} devices, {jax.process_count()} process(es)')
    kaplan = flops.kaplan_flops_per_token(self.model_config, config.data.seq_len)
    w.print(f'model: N = {counts.N:,} params (N_no_emb = {counts.N_no_emb:,} without embeddings; '
            f'12·L·d² = {flops.param_counts(self.model_config).kaplan_approx:,}); training '
            'MFLOPs/token '
            f'{self.flops_per_token_causal / 1e6:.2f} with causal attention (Megatron, MaxText; '
            f'mfu counts these), {self.flops_per_token / 1e6:.2f} with dense attention (PaLM, '
            f'Levanter), 6N+12LdT {kaplan / 1e6:.2f}')
    if self.peak:
      w.print(f'peak {self.peak / 1e9:,.1f} GFLOP/s per device ({self.peak_source}, '
              f'{self.device.device_kind})')
    else:
      w.print(f'warning: {self.peak_source}')
    if config.model.parametrization == 'mup':
      w.print(optim.describe(config.model, config.optim))
    if config.model.moe_experts:
      w.print(moe.describe(self.model_config, counts))
    if lora.has_adapters(config.model):
      w.print(lora.describe(self.model_config, setup.train_step.abstract_state().params,
                            counts.N))
    stats = setup.dataset.stats
    if config.train.objective == 'dpo':
      d = config.dpo
      w.print(f'data: preference_jsonl, {stats["train"]["documents"]:,} train pairs, '
              f'{stats["eval"]["documents"]:,} eval pairs ({len(setup.eval_set)} eval batches); '
              f'DPO ({d.loss_type}, beta {d.beta:g}'
              + (f', label smoothing {d.label_smoothing:g}' if d.label_smoothing else '')
              + f') against {config.train.init_from}, its log-probabilities computed once')
    elif stats:
      st = stats['train']
      w.print(f'data: {config.data.dataset}, {st["documents"]:,} train documents, '
              f'{st["bytes"]:,} bytes, {st["tokens"]:,} tokens ({config.data.tokenizer}); '
              f'{len(setup.eval_set)} eval batches; unigram entropy of the eval text '
              f'{stats["eval"]["unigram_bits_per_byte"]:.3f} bits per byte')
      if 'learned_tokens' in st:
        w.print(f'fine-tuning: {st["learned_tokens"]:,} of the train tokens learned (the loss '
                f'mask), {stats["eval"]["learned_tokens"]:,} of the eval tokens; eval loss, bits '
                'per byte and accuracy are over the learned tokens')

  def compiled(self, compile_s, xla_flops, from_cache=False):
    """The compile line, XLA's FLOPs beside the analytic count; the step clock starts here."""
    computed = flops.exact_flops_per_token(self.model_config, self.config.data.seq_len,
                                           attention='computed')
    how = 'loaded the train step from the compilation cache' if from_cache else (
        'compiled train step')
    self.writer.print(f'{how} in {compile_s:.1f}s; XLA counts '
                      f'{xla_flops / self.tokens_per_step / 1e6:.2f} MFLOPs/token, the analytic '
                      f'count of the matmuls it runs {computed / 1e6:.2f}')
    self.clock = (time.time(), self.clock[1])

  def accumulate(self, metrics):
    """Adds a step's loss to the log window's sum (a device op: nothing waits for the step)."""
    total, steps = self.window
    self.window = (metrics['loss'] if total is None else total + metrics['loss'], steps + 1)

  def defer(self, step, metrics):
    """Step `step` is a log step: its row (the window's mean loss) is written by `flush`."""
    self.pending = (step, metrics, self.window)
    self.window = (None, 0)

  def window_state(self) -> list:
    """[Σ loss, steps] of the window under way, for a checkpoint's meta (waits for it)."""
    total, steps = self.window
    return [float(jax.device_get(total)), steps] if steps else [0.0, 0]

  def last_saved_path(self):
    """The checkpoint the run last saved or resumed from, for messages (None: none)."""
    if self.last_saved and self.checkpoint_path:
      return self.checkpoint_path(self.last_saved)
    return None

  def flush(self):
    """Reads, writes and prints the deferred metrics, if any (waits for their step)."""
    if self.pending is None:
      return
    (step, m, (total, steps)), self.pending = self.pending, None
    m, total = jax.device_get((m, total))  # waits for the step: the time below is the step's
    now = time.time()
    dt, n_steps = now - self.clock[0], step - self.clock[1]
    self.clock = (now, step)
    if int(m['bad_step']) >= 0:
      raise NonFinite(int(m['bad_step']), self.last_saved, self.last_saved_path())
    tps = n_steps * self.tokens_per_step / dt
    # `loss`: the mean train loss of the window's steps (one batch each, from the last log
    # step's exclusive); `loss_last`: the log step's own batch.
    row = {'step': step, 'loss': float(total) / steps, 'loss_last': float(m['loss']),
           'lr': float(m['lr']),
           'grad_norm': float(m['grad_norm']), 'tokens': step * self.tokens_per_step,
           'tokens_per_s': tps, 'step_time_s': dt / n_steps,
           'mfu': flops.mfu(self.flops_per_token_causal, tps, self.peak, jax.device_count()),
           'epoch': loader.epochs_seen(self.setup.dataset, self.config, step)}
    if self.config.train.skip_nonfinite:
      row['skipped_updates'] = int(m['skipped'])
    moe = ''
    if 'moe_load' in m:  # a mixture of experts (lmjax/model/moe.py)
      self.moe_load = m['moe_load'].tolist()
      row.update({k: float(v) for k, v in m.items() if k.startswith('moe_') and k != 'moe_load'})
      if not self.config.model.moe_capacity_factor:
        del row['moe_dropped']
      e = self.config.model.moe_experts
      moe = (f'load {row["moe_load_min"] * e:.2f}-{row["moe_load_max"] * e:.2f} '
             f'lb {row["moe_lb_loss"]:.3f} ')
    dpo = ''
    if 'dpo_reward_accuracy' in m:  # train.objective=dpo (lmjax/train/preference.py)
      row.update({k: float(v) for k, v in m.items() if k.startswith('dpo_')})
      dpo = (f'reward acc {row["dpo_reward_accuracy"]:.3f} margin '
             f'{row["dpo_reward_margin"]:.3f} ')
    self.writer.write(row)
    steps = self.config.train.steps
    self.writer.print(f'step {step}/{steps} loss {row["loss"]:.4f} lr {row["lr"]:.2e} '
                      f'gnorm {row["grad_norm"]:.3f} {moe}{dpo}{tps:,.0f} tok/s '
                      f'mfu {_percent(row["mfu"])} '
                      f'eta {fmt_time((steps - step) * dt / n_steps)}', live=True)
    self.last_row = row

  def evaluate(self, step, params):
    """Evaluates, writes and prints; the time it takes is not counted as steps."""
    self.last_eval = {'step': step, **evaluate(self.eval_step, params, self.setup.eval_set)}
    more = self.on_eval(step, params, self.setup) if self.on_eval else {}
    self.last_eval.update(more)
    self.writer.write(self.last_eval)
    short = {'eval_ppl': 'ppl', 'eval_bpb': 'bpb', 'eval_accuracy': 'acc',
             'eval_reward_accuracy': 'reward acc', 'eval_reward_margin': 'margin'}
    self.writer.print(f'eval step {step}: loss {self.last_eval["eval_loss"]:.4f} ' + ' '.join(
        f'{name} {self.last_eval[k]:.4f}' for k, name in short.items() if k in self.last_eval)
        + ''.join(f'; {k} {v:.4f}' for k, v in more.items()))
    self.clock = (time.time(), self.clock[1])

  def final_eval(self, params) -> dict:
    """The last evaluation, or one of `params` when the run ended without one."""
    return self.last_eval or {'step': self.config.train.steps,
                              **evaluate(self.eval_step, params, self.setup.eval_set)}

  def done(self, summary, wall):
    last = (f'reward accuracy {summary["eval_reward_accuracy"]:.4f}'
            if 'eval_reward_accuracy' in summary else f'bits per byte {summary["eval_bpb"]:.4f}')
    self.writer.print(f'done: {summary["steps"]} steps, {summary["tokens"]:,} tokens in '
                      f'{fmt_time(wall)}; final eval loss {summary["eval_loss"]:.4f}, {last}')
    self.writer.close()
