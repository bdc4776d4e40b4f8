"""Where metrics go: metrics.jsonl, TensorBoard event files, and the terminal.

Every metrics.jsonl row is one JSON object with `step`, written with a single `os.write` on an
O_APPEND descriptor, so a crash leaves whole lines only (a reader also skips a torn last line).
"""
from __future__ import annotations

import json
import math
import os
import sys

from lmjax.core.atomic import atomic_open


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
  """Appends rows to `workdir/metrics.jsonl` and TensorBoard; prints to the terminal."""

  def __init__(self, workdir, tensorboard=True, stream=None, purge_step=None):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self._live = False
    self.fd = None
    self.tb = None
    if workdir:
      self.fd = os.open(os.path.join(workdir, 'metrics.jsonl'),
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
      if tensorboard:
        # purge_step: a resumed run hides the events it is about to write again.
        self.tb = summary_writer(os.path.join(workdir, 'tb'), purge_step=purge_step)

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


def read_metrics(path) -> list[dict]:
  """All whole rows of a metrics.jsonl (a torn final line, if any, is skipped)."""
  rows = []
  with open(path, 'rb') as f:
    for line in f:
      if line.endswith(b'\n'):
        rows.append(json.loads(line))
  return rows


def truncate_metrics(path, max_step) -> int:
  """Keeps the whole rows with step <= max_step (atomically); returns how many were dropped."""
  if not os.path.exists(path):
    return 0
  rows = read_metrics(path)
  keep = [r for r in rows if r['step'] <= max_step]
  with atomic_open(path) as f:
    f.writelines(json.dumps(r) + '\n' for r in keep)
  return len(rows) - len(keep)
