"""Hyperparameter scaling laws: the optimal learning rate and batch size against compute.

DeepSeek-AI 2024 ("DeepSeek LLM", Sec. 3.1, Eq. 1, Fig. 3) grid-search (learning rate, batch
size) at several compute budgets and fit η_opt = 0.3118·C^−0.125 and B_opt = 0.2920·C^0.3271 (B
in tokens; C = M·D, M the non-embedding FLOPs per token) to each budget's near-optimal region.
Here `fit_laws(table)` takes each budget's optimum from its grid (optimum.py: the vertex of a
quadratic in log2 η, log2 B near the lowest loss), then fits y = a·X^b for y in {lr,
batch_size} and X in {C, N, D} by least squares in log-log space; the percentile intervals come
from a bootstrap that resamples runs within each budget (bootstrap.py: every replicate keeps
every budget) and recomputes every optimum and law. An optimum at the grid's edge is a bound,
not a measurement: it is flagged and left out of that quantity's laws, as IsoFLOP minima at the
edge are (isoflop.py). B is in the table's units (lmjax: sequences, `data.batch_size`; times
seq_len for DeepSeek's tokens).

`launch.fit --law=hparams` writes the fit into fits.json (`to_json`), and `read_law` reads a
law back from there (sweeps.fitted_lr: a fitted law as a recipe's learning rate). The optima
and the lr-transfer statistic are re-exported here, so one import serves a study:
optimum_1d, optimum_2d (optimum.py), lr_shift, lr_shifts (lr_transfer.py).
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from lmjax.core import storage
from lmjax.scaling import isoflop
from lmjax.scaling.bootstrap import replicate_counts, resample_counts_within, summarize
from lmjax.scaling.lr_transfer import LrShift, lr_shift, lr_shifts
from lmjax.scaling.optimum import (
  HparamsError,
  Optimum1D,
  Optimum2D,
  line_fits,
  optimum_1d,
  optimum_2d,
)

# DeepSeek-AI 2024, Sec. 3.1, Eq. 1: (coefficient, exponent) against C; B in tokens.
DEEPSEEK_2024 = dict(lr=(0.3118, -0.125), batch_size=(0.2920, 0.3271))
QUANTITIES = ('lr', 'batch_size')
AGAINST = ('C', 'N', 'D')
COLUMNS = dict(lr=('lr', 'optim.lr', 'learning_rate', 'peak_lr'),
               batch_size=('batch_size', 'data.batch_size'))
__all__ = ['AGAINST', 'COLUMNS', 'DEEPSEEK_2024', 'QUANTITIES', 'BudgetOptimum', 'HparamFit',
           'HparamsError', 'LrShift', 'Optimum1D', 'Optimum2D', 'PowerLaw', 'fit_laws',
           'lr_shift', 'lr_shifts', 'optimum_1d', 'optimum_2d', 'read_law', 'text_lines']


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """y = a·X^b fitted to the budgets' optima, with bootstrap percentile intervals."""
  quantity: str               # 'lr' or 'batch_size'
  against: str                # 'C', 'N' or 'D' (N as the table counts it)
  a: float
  b: float
  x: np.ndarray               # the budgets' X and optima it was fitted to
  y: np.ndarray
  a_interval: tuple = (math.nan, math.nan)
  b_interval: tuple = (math.nan, math.nan)
  samples: np.ndarray | None = None  # (R, 2): each replicate's (a, b); NaN where it failed
  summary: dict = dataclasses.field(default_factory=dict)  # bootstrap.summarize of a and b

  def predict(self, x) -> np.ndarray:
    """a·X^b at x."""
    return np.exp(np.log(self.a) + self.b * np.log(np.asarray(x, np.float64)))

  def band(self, x, level=0.95):
    """(lo, hi) at x: the percentile interval of the replicates' predictions (NaN without a
    bootstrap)."""
    x = np.atleast_1d(np.asarray(x, np.float64))
    if self.samples is None:
      return np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    with np.errstate(invalid='ignore', over='ignore'):
      curves = np.exp(np.log(self.samples[:, :1]) + self.samples[:, 1:] * np.log(x)[None])
    return tuple(np.nanpercentile(curves, [50 * (1 - level), 50 * (1 + level)], 0))

  def to_json(self) -> dict:
    out = dict(quantity=self.quantity, against=self.against, a=self.a, b=self.b,
               n_points=len(self.x), x=self.x, y=self.y, a_interval=self.a_interval,
               b_interval=self.b_interval)
    if self.summary:
      counts = replicate_counts({'a': self.samples[:, 0], 'b': self.samples[:, 1]})
      out['bootstrap'] = dict(summary=self.summary, replicates=len(self.samples), **counts)
    return out


def _power_law(quantity, against, x, y, reps, level) -> PowerLaw:
  slope, icpt = line_fits(np.log(x), np.log(y)[None])
  if reps is None:
    return PowerLaw(quantity, against, float(np.exp(icpt[0])), float(slope[0]), x, y)
  b, log_a = line_fits(np.log(x), np.log(reps))
  samples = np.stack([np.exp(log_a), b], 1)
  summary = summarize({'a': samples[:, 0], 'b': samples[:, 1]}, level)
  return PowerLaw(quantity, against, float(np.exp(icpt[0])), float(slope[0]), x, y,
                  (summary['a']['lo'], summary['a']['hi']),
                  (summary['b']['lo'], summary['b']['hi']), samples, summary)


@dataclasses.dataclass(frozen=True)
class BudgetOptimum:
  """One budget's optimum (one shape at one budget; a budget with several shapes is several)."""
  c: float
  n: float                  # geometric means over the budget's runs
  d: float
  lr: float
  batch_size: float
  loss: float
  varied: tuple             # the hyperparameters its grid varies: ('lr', 'batch_size') or one
  flags: tuple              # optimum's edges (lr_low, ..., batch_high)
  fitted: bool
  reason: str               # why the best grid point was taken ('' when fitted)
  rows: np.ndarray          # table indices of its runs

  def usable(self, quantity) -> bool:
    """Whether its optimum of `quantity` is a measurement: varied, finite, not at an edge."""
    prefix = 'lr_' if quantity == 'lr' else 'batch_'
    return (quantity in self.varied and math.isfinite(getattr(self, quantity))
            and not any(f.startswith(prefix) for f in self.flags))

  def to_json(self) -> dict:
    return dict(c=self.c, n=self.n, d=self.d, lr=self.lr, batch_size=self.batch_size,
                loss=self.loss, varied=list(self.varied), flags=list(self.flags),
                fitted=self.fitted, reason=self.reason, n_runs=len(self.rows))


def _optimum(varied, lr, batch, loss, weights, window, points) -> dict:
  """BudgetOptimum's lr, batch_size, loss, flags, fitted and reason for one budget's runs (NaN
  and a reason when none has a finite loss: a bootstrap replicate that drew only diverged
  runs). A hyperparameter the grid does not vary keeps its one value."""
  try:
    if len(varied) == 2:
      o = optimum_2d(lr, batch, loss, weights, window=window)
      return dict(lr=o.lr, batch_size=o.batch_size, loss=o.loss, flags=o.edges,
                  fitted=o.fitted, reason=o.reason)
    q, xs, other = ('lr', lr, batch) if varied == ('lr',) else ('batch_size', batch, lr)
    o = optimum_1d(xs, loss, weights, points=points)
    side = 'lr' if q == 'lr' else 'batch'
    flags = {'': (), 'low': (f'{side}_low',), 'high': (f'{side}_high',),
             'both': (f'{side}_low', f'{side}_high')}[o.edge]
    out = dict(lr=float(other[0]), batch_size=float(other[0]), loss=o.loss, flags=flags,
               fitted=o.fitted, reason='' if o.fitted else 'the best grid point')
    out[q] = o.x
    return out
  except HparamsError as e:
    return dict(lr=math.nan, batch_size=math.nan, loss=math.nan, flags=(), fitted=False,
                reason=str(e))


def _column(t, quantity, name):
  """A tag column as positive floats: (values, its name), or (None, None) when absent."""
  names = (name,) if name else COLUMNS[quantity]
  found = next((n for n in names if n in t.tags), None)
  if found is None:
    if name:
      raise HparamsError(f'{t.source}: no tag column {name!r} (tags: '
                         f'{", ".join(sorted(t.tags)) or "none"})')
    return None, None
  values = np.empty(len(t))
  for i, v in enumerate(t.tags[found]):
    try:
      values[i] = float(v)
    except ValueError:
      values[i] = math.nan
    if not (math.isfinite(values[i]) and values[i] > 0):
      raise HparamsError(f'{t.source} row {int(t.rows[i]) if t.rows is not None else i + 1}: '
                         f'{found} = {v!r}; it must be a positive number')
  return values, found


def _budgets(t, budgets, rtol):
  """The runs grouped by budget and shape: [(c, rows)] sorted, and how many matched none."""
  budget_of = isoflop.assign_budgets(t, budgets, rtol)
  by_c = budgets is None and 'budget' not in t.tags
  matched = np.isfinite(budget_of)
  shape = np.array([float(f'{n:.4g}') for n in t.N])
  groups = {}
  for i in np.nonzero(matched)[0]:
    groups.setdefault((budget_of[i], shape[i]), []).append(i)
  out = []
  for (key, _), members in sorted(groups.items()):
    rows = np.asarray(members)
    out.append((float(np.exp(np.mean(np.log(t.C[rows])))) if by_c else float(key), rows))
  return out, int((~matched).sum())


@dataclasses.dataclass(frozen=True)
class HparamFit:
  """Every budget's optimum and the laws fitted to them (fit_laws)."""
  budgets: list             # BudgetOptimum per budget, by C
  laws: dict                # {(quantity, against): PowerLaw}
  skipped: dict             # {(quantity, against): why it was not fitted}
  columns: dict             # {quantity: the table's column}
  unmatched: int            # runs matched to no budget
  replicates: int
  settings: dict
  runs: dict                # the table's lr, batch_size (1 without a column) and loss, for plots

  def law(self, quantity='lr', against='C') -> PowerLaw:
    """The law of `quantity` against `against`; HparamsError saying why when it was skipped."""
    if (quantity, against) not in self.laws:
      why = self.skipped.get((quantity, against), f'allowed {", ".join(QUANTITIES)} against '
                             f'{", ".join(AGAINST)}')
      raise HparamsError(f'no {quantity} law against {against}: {why}')
    return self.laws[quantity, against]

  def predictions(self, cs) -> list:
    """[{c, lr: {value, lo, hi}, batch_size: ...}] from the laws against C."""
    out = []
    for c in cs:
      row = dict(c=float(c))
      for q in QUANTITIES:
        if (q, 'C') in self.laws:
          law = self.laws[q, 'C']
          lo, hi = law.band(c, self.settings['level'])
          row[q] = dict(value=float(law.predict(c)), lo=float(lo[0]), hi=float(hi[0]))
      out.append(row)
    return out

  def to_json(self) -> dict:
    laws = {}
    for (q, x), law in self.laws.items():
      laws.setdefault(q, {})[x] = law.to_json()
    skipped = {}
    for (q, x), why in self.skipped.items():
      skipped.setdefault(q, {})[x] = why
    return dict(laws=laws, skipped=skipped, columns=self.columns,
                budgets=[b.to_json() for b in self.budgets], unmatched_runs=self.unmatched,
                replicates=self.replicates, settings=self.settings,
                predictions=self.predictions(self.settings.get('predict_c', ())),
                published=dict(deepseek_2024=DEEPSEEK_2024))

  def text(self) -> str:
    return '\n'.join(text_lines(self.to_json()))


def fit_laws(t, *, budgets=None, rtol=0.1, bootstrap=1000, seed=0, level=0.95, window=3,
             points=5, min_budgets=3, lr_column=None, batch_column=None,
             predict_c=()) -> HparamFit:
  """The optimal lr and batch size of each budget of a RunsTable and their power laws against
  C, N and D (module doc). Runs are grouped by budget as isoflop.py groups them (a `budget`
  tag, `budgets` within `rtol`, or C itself) and by shape; the lr and batch size come from tag
  columns (`lr` or `optim.lr`; `batch_size` or `data.batch_size`; or the names given). A budget
  whose grid varies one of them only gives that one's optimum. `bootstrap` replicates resample
  runs within each budget (bootstrap.resample_counts_within); a replicate's optimum at an edge
  of what it drew is left out of that replicate's laws, as bootstrap_isoflop does, and a
  replicate with fewer than 2 optima left fails (NaN). A law needs `min_budgets` measured
  optima and at least two values of X; HparamsError when no law against C can be fitted."""
  lr, lr_name = _column(t, 'lr', lr_column)
  if lr is None:
    raise HparamsError(f'{t.source}: no learning-rate column (looked for '
                       f'{", ".join(COLUMNS["lr"])})')
  batch, batch_name = _column(t, 'batch_size', batch_column)
  if batch is None:
    batch = np.ones(len(t))
  groups, unmatched = _budgets(t, budgets, rtol)
  if not groups:
    raise HparamsError(f'{t.source}: no run matches a budget')
  varied = []
  for _, rows in groups:
    ok = np.isfinite(t.loss[rows])
    v = tuple(q for q, vals in (('lr', lr), ('batch_size', batch))
              if len(np.unique(vals[rows][ok])) > 1)
    varied.append(v or ('lr',))
  solve = lambda g, w: _optimum(varied[g], lr[groups[g][1]], batch[groups[g][1]],
                                t.loss[groups[g][1]], w, window, points)
  geomean = lambda x: float(np.exp(np.mean(np.log(x))))
  optima = [BudgetOptimum(c=c, n=geomean(t.N[rows]), d=geomean(t.D[rows]), varied=varied[g],
                          rows=rows, **solve(g, None)) for g, (c, rows) in enumerate(groups)]
  reps = {q: None for q in QUANTITIES}
  if bootstrap:
    labels = np.concatenate([np.full(len(rows), g) for g, (_, rows) in enumerate(groups)])
    counts = resample_counts_within(labels, bootstrap, np.random.default_rng(seed))
    reps = {q: np.full((bootstrap, len(groups)), np.nan) for q in QUANTITIES}
    start = 0
    for g, (_, rows) in enumerate(groups):
      for r in range(bootstrap):
        b = dataclasses.replace(optima[g], **solve(g, counts[r, start:start + len(rows)]))
        for q in QUANTITIES:
          if b.usable(q):
            reps[q][r, g] = getattr(b, q)
      start += len(rows)
  laws, skipped = {}, {}
  for q in QUANTITIES:
    use = [g for g, b in enumerate(optima) if b.usable(q)]
    for against in AGAINST:
      x = np.array([getattr(optima[g], against.lower()) for g in use])
      why = _unfittable(q, against, optima, use, x, min_budgets, batch_name)
      if why:
        skipped[q, against] = why
        continue
      y = np.array([getattr(optima[g], q) for g in use])
      laws[q, against] = _power_law(q, against, x, y, None if reps[q] is None else
                                    reps[q][:, use], level)
  if not any(k[1] == 'C' for k in laws):
    raise HparamsError('hparams: no law against C can be fitted: ' + '; '.join(
        f'{q}: {skipped[q, "C"]}' for q in QUANTITIES))
  settings = dict(budgets=None if budgets is None else list(budgets), rtol=rtol, level=level,
                  window=window, points=points, min_budgets=min_budgets, seed=seed,
                  predict_c=[float(c) for c in predict_c])
  return HparamFit(optima, laws, skipped, dict(lr=lr_name, batch_size=batch_name), unmatched,
                   int(bootstrap), settings, dict(lr=lr, batch_size=batch, loss=t.loss))


def _unfittable(q, against, optima, use, x, min_budgets, batch_name):
  """Why the law of q against X cannot be fitted, or ''."""
  if q == 'batch_size' and batch_name is None:
    return f'no batch-size column (looked for {", ".join(COLUMNS["batch_size"])})'
  if not any(q in b.varied for b in optima):
    return f'no budget varies {q}'
  if len(use) < min_budgets:
    flagged = sorted({f for b in optima for f in b.flags})
    return (f'{len(use)} budget(s) of {len(optima)} with a measured optimum (at an edge: '
            f'{", ".join(flagged) or "none"}); needs at least {min_budgets}')
  if np.ptp(np.log(x)) < 1e-9:
    return f'{against} takes one value across the budgets'
  return ''


def _g(v, spec='.4g'):
  return '—' if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _iv(pair, spec='.4g'):
  return '' if pair is None or pair[0] is None or not math.isfinite(pair[0]) else \
      f' [{_g(pair[0], spec)}, {_g(pair[1], spec)}]'


def text_lines(out: dict) -> list:
  """Readable lines of a fit's JSON (HparamFit.to_json): each law with its intervals, the laws
  skipped, each budget's optimum, DeepSeek's published laws and the predictions."""
  lines = []
  for q, by_x in out['laws'].items():
    for x, law in by_x.items():
      lines.append(f'{q}_opt = a·{x}^b: a = {_g(law["a"])}{_iv(law["a_interval"])}, '
                   f'b = {_g(law["b"], ".4f")}{_iv(law["b_interval"], ".4f")} '
                   f'({law["n_points"]} budgets)')
  lines += [f'{q} against {x} skipped: {why}' for q, by_x in out['skipped'].items()
            for x, why in by_x.items()]
  lines += [f'C={b["c"]:.3g} (N={b["n"]:.3g}, D={b["d"]:.3g}, {b["n_runs"]} runs): '
            f'lr*={_g(b["lr"])}, B*={_g(b["batch_size"])}, loss={_g(b["loss"])}'
            + (f'; at the edge: {", ".join(b["flags"])}' if b['flags'] else '')
            + (f'; {b["reason"]}' if b['reason'] else '') for b in out['budgets']]
  if out['replicates']:
    failed = {f'{q}~{x}': law.get('bootstrap', {}).get('failed', 0)
              for q, by_x in out['laws'].items() for x, law in by_x.items()}
    lines.append(f'bootstrap: {out["replicates"]} replicates (runs resampled within each '
                 f'budget); failed: ' + ', '.join(f'{k} {v}' for k, v in failed.items()))
  (la, lb), (ba, bb) = DEEPSEEK_2024['lr'], DEEPSEEK_2024['batch_size']
  lines.append(f'DeepSeek LLM (2024): lr_opt = {la}·C^{lb}, B_opt = {ba}·C^{bb} (B in tokens)')
  for p in out.get('predictions', []):
    lines.append(f'at C={p["c"]:.3g}: ' + ', '.join(
        f'{q}_opt = {_g(p[q]["value"])}{_iv((p[q]["lo"], p[q]["hi"]))}'
        for q in QUANTITIES if q in p))
  return lines


def read_law(path: str, quantity='lr', against='C') -> PowerLaw:
  """The law of `quantity` against C, D, N or N_no_emb that `launch.fit --law=hparams --out=DIR`
  wrote into DIR/fits.json (`path`: the file or DIR). HparamsError naming the file and what is
  wrong."""
  if against not in (*AGAINST, 'N_no_emb') or quantity not in QUANTITIES:
    raise HparamsError(f'{quantity} against {against}: allowed {", ".join(QUANTITIES)} against '
                       'C, D, N, N_no_emb')
  file = path if str(path).endswith('.json') else storage.join(path, 'fits.json')
  try:
    with storage.open_file(file) as f:
      doc = json.load(f)
  except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
    raise HparamsError(f'{file}: no such file') from None
  except (ValueError, UnicodeDecodeError) as e:
    raise HparamsError(f'{file}: not valid JSON ({str(e).splitlines()[0]})') from None
  fits = doc.get('fits') if isinstance(doc, dict) else None
  if not isinstance(fits, dict):
    raise HparamsError(f'{file}: not a launch.fit fits.json (no "fits" object)')
  count = against if against in ('N', 'N_no_emb') else next(
      (c for c in ('N', 'N_no_emb') if 'hparams' in (fits.get(c) or {})), 'N')
  fit = (fits.get(count) or {}).get('hparams')
  if not isinstance(fit, dict):
    raise HparamsError(f'{file}: no hparams fit with N counted as {count} (write one with '
                       'python -m launch.fit --law=hparams --out=DIR)')
  x = 'N' if against == 'N_no_emb' else against
  law = ((fit.get('laws') or {}).get(quantity) or {}).get(x)
  if not isinstance(law, dict):
    why = ((fit.get('skipped') or {}).get(quantity) or {}).get(x)
    raise HparamsError(f'{file}: no {quantity} law against {against}' + (f' ({why})' if why else
                                                                         ''))
  a, b = law.get('a'), law.get('b')
  if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) or a <= 0:
    raise HparamsError(f'{file}: the {quantity} law against {against} has a={a!r}, b={b!r}; '
                       'a must be a positive number and b a number')
  pair = lambda k: tuple(math.nan if v is None else float(v) for v in law.get(k) or (None, None))
  return PowerLaw(quantity, against, float(a), float(b),
                  np.asarray(law.get('x') or [], np.float64),
                  np.asarray(law.get('y') or [], np.float64), pair('a_interval'),
                  pair('b_interval'))


