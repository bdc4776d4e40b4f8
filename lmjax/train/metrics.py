"""Where metrics go: metrics.jsonl, TensorBoard event files, and the terminal.

Every metrics.jsonl row is one JSON object with `step`, written with a single `os.write` on an
O_APPEND descriptor, so a crash leaves whole lines only (lmjax/core/rundir.py reads them back).
"""
from __future__ import annotations

import json
import math
import os
import sys

from lmjax.core.rundir import RunDir


def _clean(value):
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf
  return value


def summary_writer(logdir, **kwargs):
  """A tensorboardX SummaryWriter, imported without PyTorch.

  tensorboardX's writer module imports torch when it is installed, only so that it can accept
  torch tensors; lmjax writes Python floats. Importing torch costs about 3 s of every run's
  start-up on this project's CPU (the test extras install it), so torch is hidden while
  tensorboardX imports, unless something has already imported it.
  """
  if 'tensorboardX.writer' not in sys.modules and 'torch' not in sys.modules:
    sys.modules['torch'] = None  # `import torch` raises ImportError: tensorboardX goes without
    try:
      import tensorboardX.writer  # noqa: F401
    finally:
      del sys.modules['torch']
  from tensorboardX import SummaryWriter
  return SummaryWriter(logdir, **kwargs)


class MetricsWriter:
  """Appends rows to a run directory's metrics.jsonl and TensorBoard events; prints to the
  terminal. Without a `workdir`, it only prints."""

  def __init__(self, workdir, tensorboard=True, stream=None, purge_step=None):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self._live = False
    self.fd = None
    self.tb = None
    if workdir:
      run = RunDir(workdir)
      self.fd = os.open(run.metrics_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
      if tensorboard:
        # purge_step: a resumed run hides the events it is about to write again.
        self.tb = summary_writer(run.tensorboard, purge_step=purge_step)

  def write(self, row: dict):
    row = {k: _clean(v) for k, v in row.items()}
    if self.fd is not None:
      os.write(self.fd, (json.dumps(row) + '\n').encode())
    if self.tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self.tb.add_scalar(k, v, row['step'])

  def print(self, line: str, live=False):
    """A live line is redrawn in place on a terminal; other lines are printed plainly."""
    if self.tty and live:
      self.stream.write('\r\033[K' + line)
      self._live = True
    else:
      if self._live:
        self.stream.write('\n')
        self._live = False
      self.stream.write(line + '\n')
    self.stream.flush()

  def flush(self):
    if self.fd is not None:
      os.fsync(self.fd)
    if self.tb is not None:
      self.tb.flush()

  def close(self):
    if self._live:
      self.stream.write('\n')
      self._live = False
    if self.fd is not None:
      os.fsync(self.fd)
      os.close(self.fd)
      self.fd = None
    if self.tb is not None:
      self.tb.close()
      self.tb = None
