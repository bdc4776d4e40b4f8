"""Fits from a notebook: the built-in laws through launch.fit's own call, laws of the user's form
and compute multipliers on DataFrames.

- `fit(source, **options)`: `source` a sweep directory (collected exactly as `launch.fit
  --sweep_dir` collects it) or a runs DataFrame; options are FitOptions' fields (launch.fit's
  flags). Returns the FitReport whose `.text()` is launch.fit's printed table.
- `fit_law(law, runs, inputs=..., **options)`: a userlaw.Law fitted to a DataFrame's columns
  (N, D, C or any other; `inputs` maps the law's input names to columns).
- `compute_multiplier(runs_a, runs_b, ...)`: scaling.multiplier on two DataFrames' C and loss.
- `fit_hparams(source, **options)`: the optimal lr and batch size per budget and their laws
  against C, N, D (scaling.hparams.fit_laws, launch.fit --law=hparams); `figures.hparams` draws it.
- `lr_shift(runs, ...)`: the optimal lr's shift per doubling of width (scaling.lr_transfer), per
  parametrization with `by`; `figures.lr_shift` draws it.
- `fit_accuracy(runs, column, ...)`: a downstream task's accuracy against the loss (Gadre et al.'s
  law, Llama 3's sigmoid) and from C in two steps (scaling.downstream, launch.fit --accuracy);
  `figures.accuracy` draws it.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from lmjax.analysis.runs import AnalysisError, fit_table
from lmjax.scaling import fit as scaling_fit
from lmjax.scaling import downstream, hparams, multiplier, userlaw
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
  table = _table(source, 'fit')
  try:
    return scaling_fit.fit_runs(table, opts)
  except (FitOptionsError, scaling_fit.CannotFitError) as e:
    raise AnalysisError(str(e)) from None


def _table(source, what):
  """The runs table of a sweep directory (as launch.fit --sweep_dir collects it) or of a runs
  DataFrame (fit_table)."""
  if isinstance(source, (str, os.PathLike)):
    from lmjax.sweeps import collect
    try:
      return collect.collect(os.fspath(source)).table
    except collect.CollectError as e:
      raise AnalysisError(str(e)) from None
  if isinstance(source, pd.DataFrame):
    return fit_table(source)
  raise AnalysisError(f'{what}: give a sweep directory or a runs DataFrame, not {type(source)}')


def fit_hparams(source, **options) -> hparams.HparamFit:
  """scaling.hparams.fit_laws on `source` (a sweep directory or a runs DataFrame: its lr and
  batch size columns are `lr`/`batch_size` or the config's `optim.lr`/`data.batch_size`);
  options are fit_laws' (bootstrap, level, budgets, rtol, min_budgets, predict_c, ...)."""
  table = _table(source, 'fit_hparams')
  try:
    return hparams.fit_laws(table, **options)
  except TypeError as e:
    raise AnalysisError(f'fit_hparams: {e}') from None
  except hparams.HparamsError as e:
    raise AnalysisError(str(e)) from None


def lr_shift(runs: pd.DataFrame, width='model.d_model', lr='optim.lr', seed='seed', loss='loss',
             by: str | None = None, **options):
  """scaling.lr_transfer.lr_shift of the finished runs of a runs DataFrame (analysis.load),
  the columns named; with `by` (e.g. a tag of the parametrization), {value: LrShift}. options:
  bootstrap, seed (of the bootstrap: `boot_seed` here, as `seed` names the column), level,
  points."""
  rows = finished(runs)
  if rows.empty:
    raise AnalysisError('lr_shift: no finished runs')
  keys = dict(width=width, lr=lr, seed=seed, loss=loss)
  if 'boot_seed' in options:
    options['seed'] = options.pop('boot_seed')
  try:
    if by is None:
      return hparams.lr_shift(rows, keys=keys, **options)
    return hparams.lr_shifts(rows, by, keys=keys, **options)
  except hparams.HparamsError as e:
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


def fit_accuracy(runs: pd.DataFrame, column: str, loss='loss', chance=None, predict_c=(),
                 **options) -> dict:
  """scaling.downstream's fits of accuracy `column` of the finished runs against `loss` (any
  column: the held-out loss, or a task's own such as tasks/stdlib_bpb/bits_per_byte) and C:
  {'gadre', 'sigmoid', 'two_step'} fits, 'loss', 'acc', 'C' (the rows fitted), 'column', and
  'predictions' at predict_c. options: bootstrap, seed, level."""
  rows = finished(runs)
  missing = [c for c in (column, loss) if c not in rows]
  if missing:
    raise AnalysisError(f'no column {missing[0]!r} in the runs table (task columns come from '
                        'config.eval.tasks or launch.harness)')
  keep = rows[[column, loss, 'C']].astype(float).dropna()
  acc, x, c = (keep[k].to_numpy() for k in (column, loss, 'C'))
  try:
    out = dict(column=column, loss_column=loss, acc=acc, loss=x, C=c,
               gadre=downstream.fit_accuracy('gadre', x, acc, **options),
               sigmoid=downstream.fit_accuracy('sigmoid', x, acc, chance=chance, **options),
               two_step=downstream.two_step(c, x, acc, chance=chance, **options))
  except FitError as e:
    raise AnalysisError(str(e)) from None
  if len(predict_c):
    out['predictions'] = out['two_step'].predict(np.asarray(predict_c, float))
  return out
