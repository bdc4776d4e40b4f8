"""Lower envelopes: the runs best for their size or compute, and Hoffmann's Approach 1.

- `lower_envelope(x, loss)`: the points whose loss is below that of every point with smaller x
  (ties in x keep the lowest loss). Against C this is the compute-efficient frontier from which
  Kaplan et al. 2020 read L(C) (Fig. 1).
- `approach1(table, run_tags)`: Hoffmann et al. 2022, Approach 1 (Sec. 3.1): each run's loss
  curve, interpolated linearly in log C, is evaluated on `n_grid` log-spaced FLOP values (they
  use 1,500); at each value the run with the lowest loss gives N_opt(C) and D_opt(C); then
  N_opt ∝ C^a and D_opt ∝ C^b by least squares in log-log space. Hoffmann et al. smooth the
  curves first; here the losses are taken as the table gives them, so it matters which losses
  those are: a sweep's table holds evaluation losses (each a mean over data.eval_batches held-out
  batches), a notebook's learning curves the logged train loss, which is the mean over each
  log window (metrics.jsonl `loss`; runs logged before that carried one batch's loss, whose
  swings of about ±0.15 nats at the main job's sizes made the envelope follow noise).
  Intermediate checkpoints of a cosine schedule are not compute-optimal runs at their own D
  (Hoffmann et al. 2022, Sec. 3.1; Li et al. 2025), so a table of checkpoints from one long
  schedule biases this towards small D.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.scaling import laws


class EnvelopeError(LmjaxError, ValueError):
  """Approach 1 cannot be run on these runs; the message is one line."""


def lower_envelope(x, loss) -> np.ndarray:
  """Boolean mask of the points strictly below the loss of every point with smaller x."""
  x = np.asarray(x, np.float64)
  loss = np.asarray(loss, np.float64)
  order = np.lexsort((loss, x))
  mask = np.zeros(len(x), bool)
  best = np.inf
  last_x = None
  for i in order:
    if x[i] == last_x:
      continue  # a tie in x: the first (lowest loss) was already considered
    last_x = x[i]
    if loss[i] < best:
      mask[i] = True
      best = loss[i]
  return mask


@dataclasses.dataclass(frozen=True)
class Approach1Fit:
  c: np.ndarray         # FLOP grid where at least one run has a value
  n_opt: np.ndarray
  d_opt: np.ndarray
  loss: np.ndarray
  run: np.ndarray       # the winning run's key at each grid point
  a: float              # N_opt ∝ C^a
  b: float              # D_opt ∝ C^b
  log_k_n: float
  log_k_d: float
  n_runs: int

  def to_json(self) -> dict:
    return dict(a=self.a, b=self.b, n_opt_coef=float(np.exp(self.log_k_n)),
                d_opt_coef=float(np.exp(self.log_k_d)), n_runs=self.n_runs,
                n_grid=len(self.c), distinct_winners=int(len(set(self.run.tolist()))))


def run_keys(table, run_tags) -> np.ndarray:
  """One key per row: the run's tags joined with '|'."""
  missing = [t for t in run_tags if t not in table.tags]
  if missing:
    raise EnvelopeError(f'{table.source}: no tag column {missing[0]!r} to identify runs (tags: '
                        f'{", ".join(sorted(table.tags)) or "none"})')
  return np.array(['|'.join(str(table.tags[t][i]) for t in run_tags) for i in range(len(table))],
                  dtype=object)


def approach1(table, run_tags, n_grid=1500) -> Approach1Fit:
  """Hoffmann et al. 2022 Approach 1 on a table with one row per checkpoint; see module doc."""
  keys = run_keys(table, run_tags)
  runs = {}
  for key in dict.fromkeys(keys):
    idx = np.nonzero(keys == key)[0]
    idx = idx[np.argsort(table.C[idx])]
    if len(idx) >= 2:
      runs[key] = idx
  if len(runs) < 2:
    raise EnvelopeError(f'approach 1: {len(runs)} run(s) with at least 2 checkpoints; needs '
                        'loss curves of at least 2 runs')
  log_c = np.log(table.C)
  grid = np.linspace(log_c.min(), log_c.max(), n_grid)
  names = list(runs)
  curves = np.full((len(names), n_grid), np.inf)
  log_d = np.full((len(names), n_grid), np.nan)
  for j, key in enumerate(names):
    idx = runs[key]
    inside = (grid >= log_c[idx[0]]) & (grid <= log_c[idx[-1]])
    curves[j, inside] = np.interp(grid[inside], log_c[idx], table.loss[idx])
    log_d[j, inside] = np.interp(grid[inside], log_c[idx], np.log(table.D[idx]))
  covered = np.isfinite(curves).any(0)
  win = np.argmin(curves[:, covered], 0)
  cols = np.nonzero(covered)[0]
  n_of_run = np.array([table.N[runs[k][0]] for k in names])
  n_opt = n_of_run[win]
  d_opt = np.exp(log_d[win, cols])
  c = np.exp(grid[covered])
  if len(set(win.tolist())) < 2:
    raise EnvelopeError('approach 1: one run is best at every FLOP value; no trend to fit')
  a, log_k_n = laws.power_law_fit(np.log(c), np.log(n_opt))
  b, log_k_d = laws.power_law_fit(np.log(c), np.log(d_opt))
  return Approach1Fit(c=c, n_opt=n_opt, d_opt=d_opt, loss=curves[win, cols],
                      run=np.array(names, dtype=object)[win], a=a, b=b, log_k_n=log_k_n,
                      log_k_d=log_k_d, n_runs=len(runs))
