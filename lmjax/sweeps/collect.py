"""A sweep directory's finished runs as a runs table (lmjax/scaling/table.py), and what is missing.

The layout, written by the sweep launcher:
  DIR/sweep.json          plan.Sweep.to_json() and its fingerprint
  DIR/runs/NAME/          launch.train's workdir: config.json, metrics.jsonl, summary.json (once
                          the run finished)
  DIR/logs/NAME.log       the run's stdout and stderr
  DIR/status/NAME.json    {"state": "running"|"done"|"failed", "exit_code", "log_tail", ...}

A row is a data-point run whose summary.json has a finite eval_loss: n (all parameters),
n_no_emb (Kaplan et al. 2020, Sec. 2.1), d (tokens trained), c = d · flops_per_token (the exact
count of lmjax.flops, as planned), loss (the final eval loss), and tags. Every other run of the
sweep is in the report with its reason; none is dropped silently.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os

from lmjax.metrics import read_metrics
from lmjax.sweeps import plan
from lmjax.exitcodes import EXIT_NONFINITE, EXIT_PREEMPTED
from lmjax.sweeps.sweepdir import read_json
from lmjax.scaling.table import FIELDS, RunsTable, TableError, from_columns

SUMMARY_KEYS = ('eval_loss', 'params', 'params_non_embedding', 'tokens', 'flops_per_token')
TAGS = ('name', 'design', 'config_hash', 'schedule', 'lr', 'cooldown_branch', 'seed', 'budget')


class CollectError(ValueError):
  """A sweep directory that cannot be collected; the message is one line."""


def read_sweep(sweep_dir: str) -> plan.Sweep:
  path = os.path.join(sweep_dir, 'sweep.json')
  if not os.path.isfile(path):
    raise CollectError(f'{sweep_dir}: no sweep.json (not a sweep directory?)')
  doc = read_json(path)
  if doc is None:
    raise CollectError(f'{path}: unreadable or not valid JSON')
  try:
    return plan.Sweep.from_json(doc)
  except plan.PlanError as e:
    raise CollectError(f'{path}: {e}') from None


def _finite(value) -> bool:
  try:
    return math.isfinite(float(value))
  except (TypeError, ValueError):
    return False


def _last_line(sweep_dir, name, status) -> str:
  text = status.get('log_tail') or ''
  if not text.strip():
    try:
      with open(os.path.join(sweep_dir, 'logs', f'{name}.log'), errors='replace') as f:
        text = f.read()[-4096:]
    except OSError:
      return '(no log)'
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1][:300] if lines else '(empty log)'


def _progress(run_dir, run) -> str:
  path = os.path.join(run_dir, 'metrics.jsonl')
  rows = read_metrics(path) if os.path.isfile(path) else []
  step = max((r.get('step', 0) for r in rows), default=0)
  return f'running or interrupted (step {step} of {run.steps})'


def reason_left_out(sweep_dir: str, run: plan.Run) -> str | None:
  """Why a run is not a table row, or None when it is one (see the module doc)."""
  run_dir = os.path.join(sweep_dir, 'runs', run.name)
  summary = read_json(os.path.join(run_dir, 'summary.json'))
  status = read_json(os.path.join(sweep_dir, 'status', f'{run.name}.json'))
  status = status if isinstance(status, dict) else None
  if isinstance(summary, dict):
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    state = (f'summary.json lacks {", ".join(missing)}' if missing else
             None if _finite(summary['eval_loss']) else 'diverged (non-finite loss)')
  elif status is not None and (status.get('state') == 'failed' or
                               status.get('exit_code') == EXIT_NONFINITE):
    code = status.get('exit_code')
    if code == EXIT_NONFINITE:
      state = 'diverged (non-finite loss)'
    elif code == EXIT_PREEMPTED:
      state = _progress(run_dir, run)
    else:
      state = f'failed (exit code {code}): {_last_line(sweep_dir, run.name, status)}'
  elif status is None and not os.path.isdir(run_dir):
    state = 'not started'
  else:
    state = _progress(run_dir, run)
  if run.design == 'stable':
    return 'stable phase (not a data point)' + (f'; {state}' if state else '')
  return state


def config_hash(config_path: str) -> str:
  """A short hash of a run's resolved config.json (keys sorted), or 'missing'."""
  config = read_json(config_path)
  if config is None:
    return 'missing'
  return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def collect(sweep_dir: str) -> tuple[RunsTable, list[dict]]:
  """(table of the finished data points, report of every run left out: name, design, reason)."""
  sweep = read_sweep(sweep_dir)
  columns = {k: [] for k in (*FIELDS, *TAGS)}
  report = []
  for run in sweep.runs:
    reason = reason_left_out(sweep_dir, run)
    if reason:
      report.append({'name': run.name, 'design': run.design, 'reason': reason})
      continue
    run_dir = os.path.join(sweep_dir, 'runs', run.name)
    s = read_json(os.path.join(run_dir, 'summary.json'))
    config = read_json(os.path.join(run_dir, 'config.json')) or {}
    optim = config.get('optim', {})
    row = {'n': s['params'], 'n_no_emb': s['params_non_embedding'], 'd': s['tokens'],
           'c': s['tokens'] * s['flops_per_token'], 'loss': s['eval_loss'], 'name': run.name,
           'design': run.design,
           'config_hash': config_hash(os.path.join(run_dir, 'config.json')),
           'schedule': optim.get('schedule', run.overrides.get('optim.schedule', '')),
           'lr': repr(float(optim.get('lr', run.overrides.get('optim.lr', math.nan)))),
           'cooldown_branch': 'yes' if run.branch_of else 'no', 'seed': run.seed,
           'budget': repr(float(run.budget)) if run.budget is not None else 'nan'}
    for k, v in row.items():
      columns[k].append(v)
  planned = {r.name for r in sweep.runs}
  runs_dir = os.path.join(sweep_dir, 'runs')
  extra = sorted(set(os.listdir(runs_dir)) - planned) if os.path.isdir(runs_dir) else []
  report += [{'name': name, 'design': '', 'reason': 'not in sweep.json'} for name in extra]
  if not columns['loss']:
    counts = {}
    for r in report:
      key = r['reason'].split(' (')[0].split(':')[0]
      counts[key] = counts.get(key, 0) + 1
    raise CollectError(f'{sweep_dir}: no finished runs among {len(sweep.runs)} planned ('
                       + ', '.join(f'{v} {k}' for k, v in counts.items()) + ')')
  try:
    table = from_columns(columns, source=os.path.join(sweep_dir, 'sweep.json'),
                         meta={'sweep': sweep.name, 'budgets': list(sweep.budgets) or None,
                               'budget_rtol': plan.BUDGET_RTOL})
  except TableError as e:
    raise CollectError(str(e)) from None
  return table, report


def write_csv(table: RunsTable, path: str) -> str:
  """Writes the table as CSV (floats exact) atomically; table.load_runs reads it back."""
  fields = [f for f in FIELDS if f != 'n_no_emb' or table.n_no_emb is not None]
  header = fields + list(table.tags)
  tmp = f'{path}.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for i in range(len(table)):
      writer.writerow([repr(float(getattr(table, k)[i])) for k in fields]
                      + [table.tags[k][i] for k in table.tags])
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path
