"""Batches made and put on the devices by a background thread while the step before runs.

`DevicePrefetch(batches, put)` wraps this process's batch iterator (lmjax/data/pipeline.py) and
`put`, the host-to-device transfer (lmjax.train.sharding.put_batch): a thread reads the next `depth`
batches and transfers them while the main thread dispatches steps, so neither reading the store
nor the transfer sits between two dispatches. Its `get_state()` is the position of the batches
handed out, not of those read ahead, so a checkpoint resumes at the step that follows it.
An error in the thread is raised by the `next()` that would have returned its batch.
"""
from __future__ import annotations

import queue
import threading


class DevicePrefetch:

  def __init__(self, batches, put, depth: int = 2):
    self._batches, self._put = batches, put
    self._queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = None
    self._state = batches.get_state()

  def __iter__(self):
    return self

  def _fill(self):
    try:
      while not self._stop.is_set():
        item = (self._put(next(self._batches)), None)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except Exception as e:  # noqa: BLE001  (handed to the consumer)
      self._queue.put((None, e))

  def __next__(self):
    if self._thread is None:
      self._thread = threading.Thread(target=self._fill, name='lmjax-prefetch', daemon=True)
      self._thread.start()
    batch, error = self._queue.get()
    if error is not None:
      raise error
    self._state = {'step': self._state['step'] + 1}
    return batch

  def get_state(self) -> dict:
    return dict(self._state)

  def set_state(self, state: dict):
    if self._thread is not None:
      raise RuntimeError('DevicePrefetch.set_state after the first batch')
    self._batches.set_state(state)
    self._state = self._batches.get_state()

  def close(self):
    """Stops the thread (it may be waiting to hand over a batch)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)
