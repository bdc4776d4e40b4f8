"""Scaling laws fitted to a runs table in one call: options in, a report out.

  report = fit_runs(table.load_runs('runs.csv'), FitOptions(laws=('chinchilla',), bootstrap=100))
  print(report.text())
  write_report(report, 'fits/')

`fit_runs` keeps the rows asked for (`where`, `drop_highest_loss`), fits each law with each
parameter count (N, and N without embeddings when the table has it), bootstraps every fit over
runs and predicts at new budgets. The report holds the fits as JSON, the laws skipped and why,
and the fitted objects for the plots. `python -m launch.fit` is this call behind flags.
`hparams`, fitted only when asked for by name, is the optimal learning rate and batch size
against C, N and D (hparams.py); sweeps.fitted_lr reads its JSON back.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import textwrap
import time

import numpy as np

from lmjax.core import atomic, storage
from lmjax.core.errors import LmjaxError
from lmjax.scaling import (bootstrap, envelope, hparams, isoflop, laws, parametric, predict,
                           table)
from lmjax.scaling.options import FitOptions, FitOptionsError

_FIT_ERRORS = (parametric.FitError, isoflop.IsoflopError, envelope.EnvelopeError,
               hparams.HparamsError, table.TableError)
# The 72 coarse Chinchilla starts [a, b, α, β, e]: α = β, a subset of Hoffmann's grid's values.
COARSE_STARTS = np.array([[a, b, s, s, e] for a in (0, 10, 20) for b in (0, 10, 20)
                          for s in (0, .5, 1, 2) for e in (-1, 0, 1)], float)


class CannotFitError(LmjaxError, ValueError):
  """A law asked for by name, or every law, cannot be fitted to the table; the message is one
  line (the fitter's own, or each law's reason)."""


def select_rows(t: table.RunsTable, options: FitOptions):
  """(the rows to fit, what was done): `where` kept, then the highest losses dropped."""
  read = len(t)
  if options.where:
    t = t.where(**options.where)
    if len(t) == 0:
      pairs = ','.join(f'{k}={v}' for k, v in options.where.items())
      raise FitOptionsError('where', f'--where={pairs}: no rows match')
  drop = options.drop_highest_loss
  drop = t.meta.get('drop_highest_loss', 0) if drop is None else drop
  return t.drop_highest_loss(drop), dict(read=read, where=dict(options.where),
                                         dropped_highest=drop)


COUNTED = {'N': 'N, every parameter', 'N_no_emb': 'N_no_emb, without embeddings'}


def n_counts(t: table.RunsTable, options: FitOptions) -> list:
  """The parameter counts to fit with: 'N', 'N_no_emb' or both."""
  if options.n_count == 'N_no_emb' and t.N_no_emb is None:
    raise FitOptionsError('n_count', f'--n_count=N_no_emb: {t.source} has no N_no_emb column '
                          '(map one with --columns)')
  if options.n_count == 'both':
    return ['N', 'N_no_emb'] if t.N_no_emb is not None else ['N']
  return [options.n_count]


def fit_law(t: table.RunsTable, law: str, o: FitOptions):
  """One law fitted to the whole table; raises the fitter's error when it cannot be."""
  if law == 'chinchilla':
    starts = COARSE_STARTS if o.starts == 'coarse' else None
    return parametric.fit_chinchilla(t, delta=o.huber_delta, objective=o.objective,
                                     reduction=o.reduction, starts=starts)
  if law.startswith('kaplan'):
    return parametric.fit_kaplan(t, law, irreducible=o.kaplan_irreducible,
                                 frontier=o.kaplan_frontier, delta=o.huber_delta,
                                 objective=o.objective, reduction=o.reduction)
  if law == 'hparams':
    return hparams.fit_laws(t, budgets=o.budgets or t.meta.get('budgets'),
                            rtol=o.budget_rtol or t.meta.get('budget_rtol', 0.1),
                            bootstrap=o.bootstrap, seed=o.seed, level=o.level,
                            predict_c=o.predict_c)
  if law == 'isoflop':
    return isoflop.fit_isoflop(t, budgets=o.budgets or t.meta.get('budgets'),
                               rtol=o.budget_rtol or t.meta.get('budget_rtol', 0.1),
                               min_points=o.isoflop_min_points,
                               n_nearest=o.isoflop_nearest or None)
  return envelope.approach1(t, list(o.run_tags))


def _bootstrap(t, law, fit, o: FitOptions):
  """(replicates, their JSON summary), or (None, None) without bootstrap, for Approach 1, or for
  hparams (its fit resamples runs within each budget itself)."""
  reps = o.bootstrap
  if not reps or law in ('approach1', 'hparams'):
    return None, None
  if law == 'isoflop':
    boot = bootstrap.bootstrap_isoflop(t, fit, reps, o.seed)
    samples = {k: boot[k] for k in ('a', 'b')}
    return boot, dict(replicates=reps, **bootstrap.replicate_counts(samples),
                      summary=bootstrap.summarize(samples, o.level))
  boot = bootstrap.bootstrap_parametric(fit, reps, o.seed, o.bootstrap_starts)
  samples = {**boot['params'], **boot['derived']}
  return boot, dict(replicates=reps, starts=boot['starts'], unconverged=boot['unconverged'],
                    **bootstrap.replicate_counts(samples),
                    summary=bootstrap.summarize(samples, o.level))


def _predictions(law, fit, boot, o: FitOptions):
  optimal = predict.compute_optimal_at(fit, o.predict_c, boot, o.level)
  if law == 'isoflop':
    return dict(compute_optimal=optimal)
  return dict(compute_optimal=optimal,
              loss=[predict.loss_at(fit, n, d, boot, o.level)[0] for n, d in o.predict_nd])


def _fit_count(t, o: FitOptions):
  """Every law for one parameter count: (JSON per law, skipped with reasons, (fit, boot) per
  law, seconds per law)."""
  res, skipped, objs, timings = {}, {}, {}, {}
  for law in o.law_list():
    t0 = time.perf_counter()
    try:
      fit = fit_law(t, law, o)
    except _FIT_ERRORS as e:
      if o.explicit:
        raise CannotFitError(str(e)) from e
      skipped[law] = str(e)
      continue
    out = fit.to_json()
    boot, summary = _bootstrap(t, law, fit, o)
    if summary:
      out['bootstrap'] = summary
    if law in ('chinchilla', 'isoflop'):
      out['predictions'] = _predictions(law, fit, boot, o)
    res[law], objs[law] = out, (fit, boot)
    timings[law] = round(time.perf_counter() - t0, 3)
  return res, skipped, objs, timings


def fit_runs(t: table.RunsTable, options: FitOptions = FitOptions()) -> FitReport:
  """Fits `options.laws` to the runs table; see module doc. Raises FitOptionsError (an option
  the table cannot serve), table.TableError, or CannotFitError."""
  t, selection = select_rows(t, options)
  counts = n_counts(t, options)
  report = FitReport(table=t, options=options, runs={**t.describe(), **selection})
  for count in counts:
    fits, skipped, objects, timings = _fit_count(t.with_n(count), options)
    report.fits[count], report.skipped[count] = fits, skipped
    report.objects[count], report.timings[count] = objects, timings
  if not any(report.fits.values()):
    raise CannotFitError('no law could be fitted: ' + '; '.join(
        f'{k}: {v}' for s in report.skipped.values() for k, v in s.items()))
  return report


def clean_json(x):
  """numpy scalars and arrays to JSON types; NaN and inf to None."""
  if isinstance(x, dict):
    return {str(k): clean_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [clean_json(v) for v in x]
  if isinstance(x, np.ndarray):
    return clean_json(x.tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if math.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


@dataclasses.dataclass
class FitReport:
  table: table.RunsTable  # the rows fitted (after where and drop_highest_loss)
  options: FitOptions
  runs: dict              # the table's description, rows read, where, highest losses dropped
  fits: dict = dataclasses.field(default_factory=dict)     # count -> law -> JSON
  skipped: dict = dataclasses.field(default_factory=dict)  # count -> law -> reason
  objects: dict = dataclasses.field(default_factory=dict)  # count -> law -> (fit, bootstrap)
  timings: dict = dataclasses.field(default_factory=dict)  # count -> law -> seconds

  def to_json(self, plots=(), flags=None) -> dict:
    """The fits.json document; `flags`: the command line that asked (default: the options)."""
    return clean_json(dict(
        runs=self.runs, flags=self.options.to_json() if flags is None else flags,
        fits=self.fits, skipped={k: v for k, v in self.skipped.items() if v},
        published=dict(chinchilla_approach3=laws.CHINCHILLA_APPROACH3,
                       chinchilla_exponents=laws.CHINCHILLA_EXPONENTS,
                       epoch_approach3=laws.EPOCH_APPROACH3,
                       epoch_approach3_se=laws.EPOCH_APPROACH3_SE,
                       kaplan_n_opt=laws.KAPLAN_N_OPT),
        plots=list(plots), timings_s=self.timings))

  def source_line(self) -> str:
    r = self.runs
    return (f'runs: {r["source"]}: {r["rows"]} rows fitted of {r["read"]} read'
            + (f', {r["dropped_highest"]} highest losses dropped' if r['dropped_highest'] else '')
            + (f'; {", ".join(r["derived"])}' if r['derived'] else '')
            + (f'; format {r["format"]}' if 'format' in r else ''))

  def text(self) -> str:
    """The runs line, then per parameter count a table of fitted values with the bootstrap's
    robust spread (half the central 68% interval) and percentile interval, the count of failed,
    unconverged and far-out replicates, the laws skipped, and Chinchilla's compute-optimal N,
    D."""
    lines = [self.source_line()]
    pct = f'{100 * self.options.level:g}% interval'
    for count, fits in self.fits.items():
      lines.append(f'\nN counted as {COUNTED[count]}')
      if any(law != 'hparams' for law in fits):  # hparams' lines are its own (hparams.py)
        lines.append(f'  {"law":<11}{"quantity":<10}{"value":>12}{"spread":>12}   {pct}')
      for law, out in fits.items():
        lines += _law_lines(law, out)
      lines += [f'  {law:<11}skipped: {reason}' for law, reason in self.skipped[count].items()]
      if any('bootstrap' in out for out in fits.values()):
        lines += textwrap.wrap(f'({SPREAD_NOTE})', 96, initial_indent='  ',
                               subsequent_indent='   ')
      chin = fits.get('chinchilla', {}).get('predictions')
      if chin:
        lines.append('  compute-optimal (Chinchilla fit):')
        iv = lambda r: f' [{_fmt(r.get("lo"))}, {_fmt(r.get("hi"))}]' if 'lo' in r else ''
        lines += [f'    C={row["c"]:.3g}: N_opt={_fmt(row["n_opt"]["value"])}{iv(row["n_opt"])}, '
                  f'D_opt={_fmt(row["d_opt"]["value"])}{iv(row["d_opt"])}, '
                  f'L={_fmt(row["loss"]["value"])}' for row in chin['compute_optimal']]
    return '\n'.join(lines)


def _fmt(v):
  return '—' if v is None or (isinstance(v, float) and not math.isfinite(v)) else f'{v:.4g}'


def replicates_line(boot: dict) -> str:
  """'bootstrap: R replicates, k failed, j unconverged, i far out' from a bootstrap summary."""
  parts = [f'{boot.get("failed", 0)} failed']
  if 'unconverged' in boot:
    parts.append(f'{boot["unconverged"]} unconverged')
  parts.append(f'{boot.get("far_out", 0)} far out')
  return f'bootstrap: {boot["replicates"]} replicates: ' + ', '.join(parts)


SPREAD_NOTE = ('spread: half the central 68% bootstrap interval (a standard error that runaway '
               'replicates cannot inflate); far out: replicates beyond 3 IQR of the quartiles '
               '(log scale for positive quantities) on some quantity')


def _law_lines(law, out) -> list:
  """One law's rows of the text table: each quantity, then its convergence or budgets."""
  if law == 'hparams':
    return [f'  {law if i == 0 else "":<11}{line}' for i, line in
            enumerate(hparams.text_lines(out))]
  summary = out.get('bootstrap', {}).get('summary', {})
  if law in ('isoflop', 'approach1'):
    values = dict(a=out['a'], b=out['b'], n_opt_coef=out['n_opt_coef'])
  else:
    values = {**out['params'], **out.get('derived', {})}
  lines = []
  for i, (name, v) in enumerate(values.items()):
    s = summary.get(name, {})
    interval = f'[{_fmt(s.get("lo"))}, {_fmt(s.get("hi"))}]' if s else ''
    lines.append(f'  {law if i == 0 else "":<11}{name:<10}{_fmt(v):>12}'
                 f'{_fmt(s.get("spread")):>12}   {interval}')
  if 'bootstrap' in out:
    lines.append(f'  {"":<11}{replicates_line(out["bootstrap"])}')
  if 'convergence' in out:
    conv = out['convergence']
    lines.append(f'  {"":<11}{out["n_at_best"]}/{out["n_starts"]} starts at the best objective '
                 f'{out["objective"]:.10g}; {conv["message"]} (restart gains '
                 f'{conv["rel_improvement"]:.1e})')
  if law == 'isoflop':
    flagged = [f'{b["c"]:.3g}: {", ".join(b["flags"])}' for b in out['budgets'] if b['flags']]
    lines.append(f'  {"":<11}{out["n_budgets_used"]}/{len(out["budgets"])} budgets used'
                 + (f'; flagged {"; ".join(flagged)}' if flagged else '')
                 + (f'; {out["unmatched_runs"]} runs matched no budget' if out['unmatched_runs']
                    else ''))
  return lines


def _plots(tmp, t, objs, suffix) -> list:
  """The PNG plots of one parameter count's fits, drawn into tmp; their file names."""
  from lmjax.scaling import plots
  chin, chin_boot = objs.get('chinchilla', (None, None))
  iso, iso_boot = objs.get('isoflop', (None, None))
  a1, _ = objs.get('approach1', (None, None))
  written = []
  if 'hparams' in objs:
    path = os.path.join(tmp, f'hparams{suffix}.png')
    written.append(plots.hparams(objs['hparams'][0], path))
  if chin is not None:
    written.append(plots.chinchilla(t, chin, os.path.join(tmp, f'chinchilla{suffix}.png')))
  for law in ('kaplan_n', 'kaplan_d', 'kaplan_c'):
    if law in objs:
      fit, boot = objs[law]
      path = os.path.join(tmp, f'loss_vs_{law[-1]}{suffix}.png')
      written.append(plots.kaplan(t, fit, path, boot, chin))
  if iso is not None:
    written.append(plots.isoflop(t, iso, os.path.join(tmp, f'isoflop{suffix}.png'), iso_boot))
  if chin is not None or iso is not None or a1 is not None:
    written.append(plots.frontier(os.path.join(tmp, f'frontier{suffix}.png'), t.C, chin,
                                  chin_boot, iso, iso_boot, a1))
  return [os.path.basename(p) for p in written]


def check_out_dir(out_dir):
  """FitOptionsError when `out_dir` (--out) is a file: checked before anything is read."""
  if out_dir and os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise FitOptionsError('out', f'--out={out_dir} is a file, not a directory')


def fit_and_write(t: table.RunsTable, options: FitOptions, out_dir=None, *, plots=True,
                  flags=None, log=print) -> FitReport:
  """launch.fit's work on a runs table: fits, logs the report's table and, with `out_dir`,
  writes fits.json and the plots there (`write_report`), logging their paths."""
  report = fit_runs(t, options)
  log(report.text())
  if out_dir:
    written = write_report(report, out_dir, plots=plots, flags=flags)
    log(f'\nwrote {os.path.join(out_dir, "fits.json")} and {len(written)} plot(s):')
    for name in written:
      log(f'  {os.path.join(out_dir, name)}')
  return report


def write_report(report: FitReport, out_dir: str, *, plots=True, flags=None) -> list:
  """Writes fits.json and (with `plots`) the PNG plots into out_dir, all or nothing: everything is
  made in a temporary directory inside it first and renamed into place, fits.json last; on an
  error nothing is left behind (out_dir too, when this call created it). Returns the plots'
  file names. On object storage (gs://) the files are made in a local temporary directory and
  uploaded, fits.json last."""
  if storage.is_remote(out_dir):
    return _upload_report(report, out_dir, plots, flags)
  created = not os.path.exists(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.fit-', dir=out_dir)
  done = False
  try:
    names = []
    for count in report.fits if plots else ():
      suffix = '' if count == 'N' else '_no_emb'
      names += _plots(tmp, report.table.with_n(count), report.objects[count], suffix)
    doc = json.dumps(report.to_json(names, flags), indent=1, allow_nan=False)
    for name in names:
      os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    atomic.write_text(os.path.join(out_dir, 'fits.json'), doc)
    done = True
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if not done and created:
      shutil.rmtree(out_dir, ignore_errors=True)
  return names


def _upload_report(report, out_dir, plots, flags) -> list:
  with tempfile.TemporaryDirectory(prefix='lmjax-fit-') as tmp:
    names = write_report(report, tmp, plots=plots, flags=flags)
    for name in [*names, 'fits.json']:
      with open(os.path.join(tmp, name), 'rb') as f:
        storage.write_bytes(storage.join(out_dir, name), f.read())
  return names
