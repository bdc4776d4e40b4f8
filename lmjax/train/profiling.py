"""A profiler window of a training run: `train.profile_start` and `train.profile_steps` trace
those steps with `jax.profiler` into the run's TensorBoard directory, DIR/tb/plugins/profile/
<time>/ (TensorBoard's profile plugin reads it; its perfetto_trace.json.gz opens in
ui.perfetto.dev). Each step is a `StepTraceAnnotation` named `train` with its `step_num`, and
waits for its device work inside the annotation, so the step's time is the step's own. A run
resumed past the window traces nothing; one resumed inside it traces the steps left. Process 0
alone traces (the trace files are named by host).
"""
from __future__ import annotations

import jax

from lmjax.core.rundir import RunDir


class ProfileWindow:

  def __init__(self, config, workdir, start_step):
    first, n = config.train.profile_start, config.train.profile_steps
    on = bool(first and workdir and jax.process_index() == 0)
    self.steps = range(max(first, start_step + 1), first + n) if on else range(0)
    self.logdir = RunDir(workdir).tensorboard if on else None
    self.tracing = False

  def run(self, step: int, step_fn, *args):
    """`step_fn(*args)`; inside the window traced, annotated with `step` and waited for."""
    if step not in self.steps:
      return step_fn(*args)
    if not self.tracing:
      jax.profiler.start_trace(self.logdir, create_perfetto_trace=True)
      self.tracing = True
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      out = jax.block_until_ready(step_fn(*args))
    if step == self.steps[-1]:
      self.close()
    return out

  def close(self):
    """Writes the trace, if one is under way (also when a run stops inside the window)."""
    if self.tracing:
      self.tracing = False
      jax.profiler.stop_trace()
