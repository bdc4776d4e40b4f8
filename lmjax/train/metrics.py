"""Where metrics go: metrics.jsonl, TensorBoard event files, and the terminal.

Every metrics.jsonl row is one JSON object with `step`, written with a single `os.write` on an
O_APPEND descriptor, so a crash leaves whole lines only (lmjax/core/rundir.py reads them back).
A run on object storage writes both into a local staging directory, uploaded whole by `sync`
(at every checkpoint, and when the writer closes): after a crash the run directory holds the
rows up to the last checkpoint, which is where a resumed run cuts metrics.jsonl back to anyway.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile

from lmjax.core import storage
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
  """Appends rows to a run directory's metrics.jsonl (unless `metrics` is False: TensorBoard
  alone, as launch.eval writes) and TensorBoard events; prints to the terminal. Without a
  `workdir`, it only prints."""

  def __init__(self, workdir, tensorboard=True, stream=None, purge_step=None, metrics=True):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self._live = False
    self.fd = None
    self.tb = None
    self.run = self.staging = None
    if workdir:
      self.run = run = RunDir(workdir)
      rows, events = run.metrics_path, run.tensorboard
      if run.remote:
        self.staging = tempfile.mkdtemp(prefix='lmjax-staging-')
        rows, events = (os.path.join(self.staging, 'metrics.jsonl'),
                        os.path.join(self.staging, 'tb'))
        if metrics and storage.isfile(run.metrics_path):
          with storage.open_file(run.metrics_path, 'rb') as src, open(rows, 'wb') as dst:
            shutil.copyfileobj(src, dst)
      self.metrics_file, self.events_dir = rows, events
      if metrics:
        self.fd = os.open(rows, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
      if tensorboard:
        # purge_step: a resumed run hides the events it is about to write again.
        self.tb = summary_writer(events, purge_step=purge_step)

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

  def sync(self):
    """Makes what was written durable: fsync, or, for a run on object storage, uploads
    metrics.jsonl and the TensorBoard events whole."""
    self.flush()
    if self.staging is None:
      return
    if self.fd is not None:
      with open(self.metrics_file, 'rb') as f:
        storage.write_bytes(self.run.metrics_path, f.read())
    if os.path.isdir(self.events_dir):
      storage.put_tree(self.events_dir, self.run.tensorboard)

  def close(self):
    if self._live:
      self.stream.write('\n')
      self._live = False
    if self.tb is not None:
      self.tb.close()  # its events written; sync uploads them (a run on object storage)
      self.tb = None
    self.sync()
    if self.fd is not None:
      os.close(self.fd)
      self.fd = None
    if self.staging is not None:
      shutil.rmtree(self.staging, ignore_errors=True)
      self.staging = None
