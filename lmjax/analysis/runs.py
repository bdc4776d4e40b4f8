"""Runs on disk as pandas DataFrames: one row per run, and the learning curves.

`load(path)` reads a launch.sweep directory (sweep.json), one launch.train run directory
(config.json / metrics.jsonl), or a directory whose subdirectories are run directories. It never
writes, and tolerates runs in every state: planned but not started, running (no summary.json
yet; a torn last line of metrics.jsonl is skipped), failed or diverged.

The runs table has, per run: name, path, status, every resolved config field flattened to a
column ('model.d_model', 'optim.lr', ...), N (all parameters), N_no_emb (without embeddings, Kaplan
et al. 2020, Sec. 2.1), N_active (the parameters a token uses: a mixture of experts' router, top-k
and shared experts; N for dense models), D (tokens trained so far), C = D · flops_per_token (lmjax.model.flops' exact
count, as launch.fit's tables), loss (the final eval loss; NaN until the run has finished),
eval_bpb, eval_ppl, final_train_loss, step (the last logged), steps (planned), where it ran
('machine.cpu', 'machine.jaxlib', ...; lmjax/train/machine.py: results differ across CPUs); and for
sweeps the plan's columns (design, budget, seed, branch_of, branch_step, cooldown_branch, planned_N,
planned_D, planned_C). `fit_table` keeps the finished data points, as
`launch.fit --sweep_dir` does.

The curves table has one row per (run, logged step): step, tokens, flops, loss (training), lr,
eval_loss, eval_bpb and every other logged number. A cooldown branch's curve starts with its
stable run's rows up to the step it branched at (`inherited` True), so every curve starts at 0.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import pandas as pd

from lmjax.core.errors import LmjaxError
from lmjax.core.rundir import RunDir, read_json
from lmjax.model import flops


class AnalysisError(LmjaxError, ValueError):
  """A path or table that cannot be analysed; the message is one line."""


class Runs(NamedTuple):
  runs: pd.DataFrame
  curves: pd.DataFrame
  source: str
  kind: str            # 'sweep', 'run' or 'runs'


def flatten(d: dict, prefix='') -> dict:
  """{'model': {'d_model': 64}} -> {'model.d_model': 64}; lists become tuples."""
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(flatten(v, key + '.'))
    else:
      out[key] = tuple(v) if isinstance(v, list) else v
  return out


def _model_numbers(config: dict) -> dict:
  """N, N_no_emb and flops_per_token computed from a config.json (for runs without a summary)."""
  try:
    counts = flops.config_counts(config)
  except Exception:  # noqa: BLE001  (an unreadable or foreign config: the columns stay empty)
    return {}
  return dict(N=counts.N, N_no_emb=counts.N_no_emb, N_active=counts.N_active,
              flops_per_token=counts.flops_per_token)


def _curve(run: RunDir, flops_per_token) -> pd.DataFrame:
  """One row per logged step: training and eval rows of the same step merged."""
  rows = run.read_metrics()
  by_step = {}
  for r in rows:
    if isinstance(r, dict) and 'step' in r:
      by_step.setdefault(int(r['step']), {}).update(r)
  frame = pd.DataFrame([by_step[s] for s in sorted(by_step)])
  if frame.empty:
    return pd.DataFrame(columns=['step', 'tokens', 'flops', 'loss', 'eval_loss', 'lr'])
  for col in ('tokens', 'loss', 'eval_loss', 'lr'):
    if col not in frame:
      frame[col] = np.nan
  frame['tokens'] = frame['tokens'].astype(float)
  if frame['tokens'].isna().any() and frame['tokens'].notna().any():  # eval-only rows
    frame['tokens'] = frame['tokens'].interpolate(limit_direction='both')
  frame['flops'] = frame['tokens'] * (flops_per_token or np.nan)
  return frame


def read_run(path: str, name: str | None = None, status: str | None = None) -> tuple:
  """(row dict, curve DataFrame) of one launch.train directory."""
  run = RunDir(path)
  config = read_json(run.config_path) or {}
  summary = run.read_summary()
  row = dict(name=name or os.path.basename(os.path.normpath(path)), path=path)
  numbers = _model_numbers(config) if config else {}
  if isinstance(summary, dict):
    numbers = dict(N=summary.get('N', numbers.get('N')),
                   N_no_emb=summary.get('N_no_emb', numbers.get('N_no_emb')),
                   N_active=summary.get('N_active', numbers.get('N_active',
                                                                summary.get('N'))),
                   flops_per_token=summary.get('flops_per_token', numbers.get('flops_per_token')))
  curve = _curve(run, numbers.get('flops_per_token'))
  last = curve.iloc[-1] if len(curve) else {}
  tokens = summary.get('tokens') if isinstance(summary, dict) else None
  if tokens is None and len(curve):
    tokens = float(curve['tokens'].max())
  fpt = numbers.get('flops_per_token')
  row.update(
      status=status or ('done' if isinstance(summary, dict) else
                        'running or stopped' if len(curve) else
                        'started' if config else 'not started'),
      N=numbers.get('N', np.nan), N_no_emb=numbers.get('N_no_emb', np.nan),
      N_active=numbers.get('N_active', numbers.get('N', np.nan)),
      D=np.nan if tokens is None else float(tokens),
      C=np.nan if tokens is None or not fpt else float(tokens) * fpt,
      flops_per_token=np.nan if not fpt else float(fpt),
      loss=_num(summary, 'eval_loss'), eval_bpb=_num(summary, 'eval_bpb'),
      eval_ppl=_num(summary, 'eval_ppl'), final_train_loss=_num(summary, 'final_loss'),
      step=int(last['step']) if len(curve) else 0,
      steps=config.get('train', {}).get('steps', np.nan),
      wall_s=_num(summary, 'wall_s'))
  machine = summary.get('machine') if isinstance(summary, dict) else None
  row.update(run.task_metrics())  # tasks/<task>/<metric>: config.eval.tasks or launch.harness
  row.update(flatten(config))
  row.update(flatten(machine if isinstance(machine, dict) else {}, 'machine.'))
  curve.insert(0, 'name', row['name'])
  curve['inherited'] = False
  return row, curve


def _num(summary, key):
  if not isinstance(summary, dict):
    return np.nan
  try:
    v = float(summary.get(key))
  except (TypeError, ValueError):
    return np.nan
  return v if math.isfinite(v) else np.nan


def _sweep(path) -> tuple:
  from lmjax.sweeps.collect import reason_left_out
  from lmjax.sweeps.sweepdir import SweepDir, SweepDirError
  try:
    sweep_dir = SweepDir.read(path)
  except SweepDirError as e:
    raise AnalysisError(str(e)) from None
  rows, curves = [], {}
  for run in sweep_dir.sweep.runs:
    state = sweep_dir.state(run.name)
    row, curve = read_run(sweep_dir.run_dir(run.name), run.name, state)
    row.update(design=run.design, budget=np.nan if run.budget is None else float(run.budget),
               seed=run.seed, branch_of=run.branch_of, branch_step=run.branch_step,
               cooldown_branch=run.branch_of is not None, planned_N=run.N,
               planned_N_no_emb=run.N_no_emb, planned_D=run.D, planned_C=run.C,
               left_out=reason_left_out(sweep_dir, run) or '')
    rows.append(row)
    curves[run.name] = (run, curve)
  # A branch's curve starts with its stable run's rows up to the branch step.
  out = []
  for name, (run, curve) in curves.items():
    if run.branch_of in curves and len(curves[run.branch_of][1]):
      parent = curves[run.branch_of][1]
      head = parent[parent['step'] <= run.branch_step].copy()
      head['name'], head['inherited'] = name, True
      curve = pd.concat([head, curve[curve['step'] > run.branch_step]], ignore_index=True)
    out.append(curve)
  return rows, out


def load(path: str) -> Runs:
  """The runs under `path` (a sweep directory, a run directory or a directory of runs)."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise AnalysisError(f'{path}: not a directory (give a sweep or run directory)')
  if os.path.isfile(os.path.join(path, 'sweep.json')):
    rows, curves, kind = *_sweep(path), 'sweep'
  elif RunDir(path).is_run():
    row, curve = read_run(path)
    rows, curves, kind = [row], [curve], 'run'
  else:
    subs = sorted(d for d in os.listdir(path) if RunDir(os.path.join(path, d)).is_run())
    if not subs:
      raise AnalysisError(f'{path}: no sweep.json, config.json or metrics.jsonl here or in its '
                          'subdirectories (not a sweep or run directory)')
    pairs = [read_run(os.path.join(path, d)) for d in subs]
    rows, curves, kind = [p[0] for p in pairs], [p[1] for p in pairs], 'runs'
  runs = pd.DataFrame(rows)
  curves = [c for c in curves if len(c)]
  curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
      columns=['name', 'step', 'tokens', 'flops', 'loss', 'eval_loss', 'lr', 'inherited'])
  return Runs(runs=runs, curves=curves, source=path, kind=kind)


def fit_table(runs: pd.DataFrame, n='N'):
  """The finished data points of a runs table as a scaling.table.RunsTable (the rows
  `launch.fit` fits): a finite loss, and not a sweep's stable phase; n: 'N' or 'N_no_emb'. Config
  columns and the sweep's tags become tag columns (for `where`)."""
  from lmjax.scaling.table import TableError, from_columns
  keep = runs['loss'].notna() & np.isfinite(runs['loss'].astype(float))
  if 'design' in runs:
    keep &= runs['design'] != 'stable'
  t = runs[keep]
  if t.empty:
    raise AnalysisError('no finished runs with a finite eval loss to fit')
  columns = {'N': t[n].astype(float).to_numpy(), 'D': t['D'].astype(float).to_numpy(),
             'C': t['C'].astype(float).to_numpy(), 'loss': t['loss'].astype(float).to_numpy()}
  if n == 'N' and 'N_no_emb' in t:
    columns['N_no_emb'] = t['N_no_emb'].astype(float).to_numpy()
  tags = [c for c in t.columns if c not in ('N', 'N_no_emb', 'D', 'C', 'loss', 'path')
          and t[c].map(lambda v: isinstance(v, (str, int, float, bool, np.integer,
                                                np.floating))).all()]
  for c in tags:
    columns[c] = t[c].map(str).to_numpy()
  try:
    return from_columns(columns, source='runs table')
  except TableError as e:
    raise AnalysisError(str(e)) from None
