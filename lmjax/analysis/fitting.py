"""Fits from a notebook: the built-in laws through launch.fit's own call, laws of the user's form
and compute multipliers on DataFrames.

- `fit(source, **options)`: `source` a sweep directory (collected exactly as `launch.fit
  --sweep_dir` collects it) or a runs DataFrame; options are FitOptions' fields (launch.fit's
  flags). Returns the FitReport whose `.text()` is launch.fit's printed table.
- `fit_law(law, runs, inputs=..., **options)`: a userlaw.Law fitted to a DataFrame's columns
  (N, D, C or any other; `inputs` maps the law's input names to columns).
- `compute_multiplier(runs_a, runs_b, ...)`: scaling.multiplier on two DataFrames' C and loss.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from lmjax.analysis.runs import AnalysisError, fit_table
from lmjax.scaling import fit as scaling_fit
from lmjax.scaling import multiplier, userlaw
from lmjax.scaling.options import FitOptions, FitOptionsError
from lmjax.scaling.parametric import FitError


def fit(source, **options) -> scaling_fit.FitReport:
  """launch.fit's fit of `source` (a sweep directory or a runs DataFrame) with its options."""
  try:
    opts = FitOptions(**options)
  except TypeError as e:
    raise AnalysisError(f'fit: {e} (options are launch.fit\'s: '
                        f'{", ".join(f.name for f in FitOptions.__dataclass_fields__.values())})') \
        from None
  except FitOptionsError as e:
    raise AnalysisError(str(e)) from None
  if isinstance(source, (str, os.PathLike)):
    from lmjax.sweeps import collect
    try:
      table = collect.collect(os.fspath(source)).table
    except collect.CollectError as e:
      raise AnalysisError(str(e)) from None
  elif isinstance(source, pd.DataFrame):
    table = fit_table(source)
  else:
    raise AnalysisError(f'fit: give a sweep directory or a runs DataFrame, not {type(source)}')
  try:
    return scaling_fit.fit_runs(table, opts)
  except (FitOptionsError, scaling_fit.CannotFitError) as e:
    raise AnalysisError(str(e)) from None


def finished(runs: pd.DataFrame) -> pd.DataFrame:
  """The runs with a finite final eval loss that are data points (not a sweep's stable phase)."""
  keep = runs['loss'].astype(float).map(np.isfinite)
  if 'design' in runs:
    keep &= runs['design'] != 'stable'
  return runs[keep]


def _columns(runs, names, mapping):
  out = {}
  for name in names:
    col = mapping.get(name, name)
    if col not in runs:
      raise AnalysisError(f'input {name}: no column {col!r} in the runs table (map it with '
                          f'inputs={{{name!r}: COLUMN}})')
    out[name] = runs[col].astype(float).to_numpy()
  return out


def fit_law(law: userlaw.Law, runs: pd.DataFrame, inputs: dict | None = None, loss='loss',
            strata: str | None = None, **options) -> userlaw.LawFit:
  """userlaw.fit_law on the finished rows of `runs`: each input of the law read from the column
  of that name (or inputs[name]); strata: a column whose groups the bootstrap keeps."""
  rows = finished(runs) if loss == 'loss' else runs
  if rows.empty:
    raise AnalysisError('no finished runs to fit')
  x = _columns(rows, law.inputs, inputs or {})
  try:
    return userlaw.fit_law(law, x, rows[loss].astype(float).to_numpy(),
                           strata=None if strata is None else rows[strata].to_numpy(), **options)
  except FitError as e:
    raise AnalysisError(str(e)) from None


def compute_multiplier(runs_a: pd.DataFrame, runs_b: pd.DataFrame, names=('a', 'b'),
                       **options) -> multiplier.Multiplier:
  """The compute multiplier of runs_b over runs_a (scaling/multiplier.py) from their finished
  rows' C and loss columns."""
  a, b = finished(runs_a), finished(runs_b)
  try:
    return multiplier.compute_multiplier(a['C'].to_numpy(float), a['loss'].to_numpy(float),
                                         b['C'].to_numpy(float), b['loss'].to_numpy(float),
                                         names=names, **options)
  except FitError as e:
    raise AnalysisError(str(e)) from None
