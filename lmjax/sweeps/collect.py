"""A sweep directory's finished runs as a runs table (lmjax/scaling/table.py), and what is missing.

The directory is read through lmjax.sweeps.sweepdir.SweepDir (its layout is described there):
sweep.json for the plan, each run's summary, config and metrics (lmjax/core/rundir.py), its
status file ({"state": "running"|"done"|"failed", "exit_code", "log_tail", ...}) and its log.

A row is a data-point run that finished with a finite eval_loss: N (all parameters), N_no_emb
(Kaplan et al. 2020, Sec. 2.1), D (tokens trained), C = D · flops_per_token (the exact count of
lmjax.model.flops, as planned), loss (the final eval loss), and tags (`TAGS`: among them the
run's lr, batch_size, d_model and parametrization as its config.json has them, for
lmjax.scaling.hparams and lr_transfer; a mixture of experts' moe_experts and N_active, the
parameters a token uses; C is active compute, lmjax/model/flops.py). Every other run of the sweep is in the report with its
reason; none is dropped silently.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from typing import NamedTuple

from lmjax.core import storage
from lmjax.core.errors import EXIT_NONFINITE, EXIT_PREEMPTED, LmjaxError
from lmjax.core.rundir import read_json
from lmjax.scaling.table import FIELDS, RunsTable, TableError, from_columns
from lmjax.sweeps.designs import BUDGET_RTOL
from lmjax.sweeps.runs import Run
from lmjax.sweeps.sweepdir import SweepDir, SweepDirError

SUMMARY_KEYS = ('eval_loss', 'N', 'N_no_emb', 'tokens', 'flops_per_token')
TAGS = ('name', 'design', 'config_hash', 'schedule', 'lr', 'batch_size', 'd_model',
        'parametrization', 'moe_experts', 'N_active', 'cooldown_branch', 'seed', 'budget')


class CollectError(LmjaxError, ValueError):
  """A sweep directory that cannot be collected; the message is one line."""


class Collected(NamedTuple):
  table: RunsTable     # the finished data points
  report: list[dict]   # every run left out: name, design, reason


def read_sweep_dir(sweep_dir: str) -> SweepDir:
  """The sweep directory, read-only; CollectError when it is not one."""
  try:
    return SweepDir.read(sweep_dir)
  except SweepDirError as e:
    raise CollectError(str(e)) from None


def _finite(value) -> bool:
  try:
    return math.isfinite(float(value))
  except (TypeError, ValueError):
    return False


def _last_line(sweep_dir: SweepDir, name, status) -> str:
  text = status.get('log_tail') or ''
  if not text.strip():
    text = sweep_dir.read_log(name)
    if not text:
      return '(no log)'
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1][:300] if lines else '(empty log)'


def _progress(sweep_dir: SweepDir, run) -> str:
  rows = sweep_dir.run(run.name).read_metrics()
  step = max((r.get('step', 0) for r in rows), default=0)
  return f'running or interrupted (step {step} of {run.steps})'


def reason_left_out(sweep_dir: SweepDir, run: Run) -> str | None:
  """Why a run is not a table row, or None when it is one (see the module doc)."""
  summary = sweep_dir.summary(run.name)
  status = sweep_dir.recorded_status(run.name)
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
      state = _progress(sweep_dir, run)
    else:
      state = f'failed (exit code {code}): {_last_line(sweep_dir, run.name, status)}'
  elif status is None and not sweep_dir.run(run.name).exists():
    state = 'not started'
  else:
    state = _progress(sweep_dir, run)
  if run.design == 'stable':
    return 'stable phase (not a data point)' + (f'; {state}' if state else '')
  return state


def config_hash(config_path: str) -> str:
  """A short hash of a run's resolved config.json (keys sorted), or 'missing'."""
  config = read_json(config_path)
  if config is None:
    return 'missing'
  return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _row(sweep_dir: SweepDir, run: Run) -> dict:
  """The table row of a finished data-point run."""
  s = sweep_dir.summary(run.name)
  config_path = sweep_dir.run(run.name).config_path
  config = read_json(config_path) or {}
  optim = config.get('optim', {})
  field = lambda section, name: config.get(section, {}).get(
      name, run.overrides.get(f'{section}.{name}', ''))
  return {'N': s['N'], 'N_no_emb': s['N_no_emb'], 'D': s['tokens'],
          'C': s['tokens'] * s['flops_per_token'], 'loss': s['eval_loss'], 'name': run.name,
          'design': run.design, 'config_hash': config_hash(config_path),
          'schedule': optim.get('schedule', run.overrides.get('optim.schedule', '')),
          'lr': repr(float(optim.get('lr', run.overrides.get('optim.lr', math.nan)))),
          'batch_size': field('data', 'batch_size'), 'd_model': field('model', 'd_model'),
          'parametrization': field('model', 'parametrization'),
          'moe_experts': field('model', 'moe_experts') or 0,
          'N_active': s.get('N_active', s['N']),  # a mixture of experts' (dense: N)
          'cooldown_branch': 'yes' if run.branch_of else 'no', 'seed': run.seed,
          'budget': repr(float(run.budget)) if run.budget is not None else 'nan'}


def collect(sweep_dir: str) -> Collected:
  """The table of the finished data points, and the report of every run left out."""
  sweep_dir = read_sweep_dir(sweep_dir)
  sweep = sweep_dir.sweep
  columns = {k: [] for k in (*FIELDS, *TAGS)}
  report, tasks = [], []
  for run in sweep.runs:
    reason = reason_left_out(sweep_dir, run)
    if reason:
      report.append({'name': run.name, 'design': run.design, 'reason': reason})
      continue
    for k, v in _row(sweep_dir, run).items():
      columns[k].append(v)
    tasks.append(sweep_dir.run(run.name).task_metrics())
  for key in sorted(set().union(*tasks)):  # downstream tasks' metrics, where runs have them
    columns[key] = [repr(float(t.get(key, math.nan))) for t in tasks]
  extra = sorted(sweep_dir.run_names_on_disk() - set(sweep_dir.runs))
  report += [{'name': name, 'design': '', 'reason': 'not in sweep.json'} for name in extra]
  if not columns['loss']:
    counts = {}
    for r in report:
      key = r['reason'].split(' (')[0].split(':')[0]
      counts[key] = counts.get(key, 0) + 1
    raise CollectError(f'{sweep_dir.path}: no finished runs among {len(sweep.runs)} planned ('
                       + ', '.join(f'{v} {k}' for k, v in counts.items()) + ')')
  try:
    table = from_columns(columns, source=sweep_dir.sweep_json_path(),
                         meta={'sweep': sweep.name, 'budgets': list(sweep.budgets) or None,
                               'budget_rtol': BUDGET_RTOL})
  except TableError as e:
    raise CollectError(str(e)) from None
  return Collected(table, report)


def collect_to_csv(sweep_dir: str, log=print) -> RunsTable:
  """launch.fit --sweep_dir: the table of the finished runs, written to DIR/runs.csv, every run
  left out logged with its reason."""
  table, left_out = collect(sweep_dir)
  for item in left_out:
    log(f'left out {item["name"]}: {item["reason"]}')
  path = write_csv(table, storage.join(sweep_dir, 'runs.csv'))
  log(f'collected {len(table)} finished runs of {sweep_dir} into {path}')
  return table


def write_csv(table: RunsTable, path: str) -> str:
  """Writes the table as CSV (floats exact) atomically (or in one upload); table.load_runs
  reads it back."""
  fields = [f for f in FIELDS if f != 'N_no_emb' or table.N_no_emb is not None]
  header = fields + list(table.tags)
  with storage.text_writer(path) as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for i in range(len(table)):
      writer.writerow([repr(float(getattr(table, k)[i])) for k in fields]
                      + [table.tags[k][i] for k in table.tags])
  return path
