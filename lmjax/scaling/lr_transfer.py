"""How far the optimal learning rate moves with width: the statistic of an lr-transfer study.

`lr_shift(rows)` takes one family of runs (one parametrization) at several widths, learning
rates and seeds, finds each width's optimal lr (optimum.optimum_1d of the seed-mean loss per
lr) and fits log2 η* = k + s·log2 width: s is the optimum's shift in octaves per doubling of
width, about −1 under the standard parametrization with Adam (η* ∝ 1/width) and 0 under μP
(Yang et al. 2022, "Tensor Programs V", Fig. 1). Its interval is a bootstrap over runs within
each (width, lr), or over seeds (`lr_shift`'s doc says which and why). `lr_shifts(rows, by)`
does it per group.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from lmjax.scaling.bootstrap import resample_counts, resample_counts_within, summarize
from lmjax.scaling.optimum import HparamsError, line_fits, log2_of, optimum_1d


FIELDS = ('width', 'lr', 'seed', 'loss')  # what each row of lr_shift has


def _records(rows) -> list:
  """Rows as a list of dicts: from a list of mappings, a mapping of columns or a DataFrame."""
  if hasattr(rows, 'to_dict') and hasattr(rows, 'columns'):
    return rows.to_dict('records')
  if isinstance(rows, Mapping):
    names = list(rows)
    return [dict(zip(names, values)) for values in zip(*(rows[k] for k in names))]
  return [dict(r) for r in rows]


@dataclasses.dataclass(frozen=True)
class LrShift:
  """How the optimal learning rate moves with width (lr_shift)."""
  slope: float              # octaves of η* per doubling of width: d log2 η* / d log2 width
  intercept: float          # log2 η* at width 1
  interval: tuple           # percentile interval of the slope over bootstrap replicates
  widths: np.ndarray        # ascending
  optima: list              # Optimum1D per width, of the seed-mean loss per lr
  seeds: np.ndarray         # seeds per width
  used: np.ndarray          # per width: in the slope (its optimum inside the lr grid)
  samples: np.ndarray | None  # (R,) slopes; NaN where a replicate had < 2 widths inside
  curves: list              # per width: (lrs, seed-mean loss at each; NaN: every seed diverged)
  level: float = 0.95

  def predict(self, width) -> np.ndarray:
    """η* at `width` on the fitted line."""
    return 2.0 ** (self.intercept + self.slope * np.log2(np.asarray(width, np.float64)))

  def to_json(self) -> dict:
    return dict(slope=self.slope, intercept_log2=self.intercept, interval=self.interval,
                level=self.level, replicates=0 if self.samples is None else len(self.samples),
                failed=0 if self.samples is None else int(np.sum(~np.isfinite(self.samples))),
                widths=[dict(width=float(w), seeds=int(s), used=bool(u), **o.to_json())
                        for w, s, u, o in zip(self.widths, self.seeds, self.used, self.optima)])

  def text(self) -> str:
    pct = f'{100 * self.level:g}%'
    lines = [f'optimal lr moves {self.slope:+.3f} octaves per doubling of width'
             + (f' [{pct}: {self.interval[0]:+.3f}, {self.interval[1]:+.3f}]'
                if self.samples is not None else '')
             + f' ({int(self.used.sum())} of {len(self.widths)} widths)']
    if self.samples is not None and self.seeds.max() < 2:
      lines.append('  one seed per width: the bootstrap has nothing to resample (zero width)')
    for w, s, o in zip(self.widths, self.seeds, self.optima):
      how = (f'parabola over {o.n_points} lrs' if o.fitted else 'one lr only, not used'
             if o.edge == 'both' else f'at the grid\'s {o.edge} edge, not used' if o.edge else
             'best grid point: no curvature')
      lines.append(f'  width {w:g} ({s} seeds): lr* = {o.x:.4g} ({how})')
    return '\n'.join(lines)


def lr_shift(rows, *, bootstrap=1000, seed=0, level=0.95, points=5, resample='cell',
             keys=None) -> LrShift:
  """The optimal lr's shift with width, for one family of runs (one parametrization): rows with
  width (d_model), lr, seed and loss (`keys` maps these names to others). Each width's optimum
  is optimum_1d of the seed-mean loss per lr (a diverged seed is missing); the slope is the
  least-squares line of log2 η* on log2 width over the widths whose optimum is inside the grid.

  Each bootstrap replicate recomputes every optimum and the slope from resampled runs:
  - resample='cell' (default): each (width, lr) cell's seeds, with replacement, independently.
    A seed that shifts its whole curve then counts as noise, so the interval errs wide;
  - resample='seed': each width's seeds as units, one draw reused at every lr (a seed's curve
    shares its initialisation and data order). Right in kind, but 3 seeds have only 10
    distinct draws, and the interval is too narrow.
  In the model of tests/test_scaling_hparams.py (3 seeds, each shifting its curve by 0.01,
  0.005 noise per run), 95% intervals held the true slope in 80 of 80 sweeps with 'cell' and
  68 of 80 with 'seed', 2.7 times narrower.
  With one seed per cell either interval has zero width."""
  if resample not in ('cell', 'seed'):
    raise HparamsError(f'lr_shift: resample={resample!r}; allowed cell, seed')
  names = {f: f for f in FIELDS}
  for field, name in (keys or {}).items():
    if field not in names:
      raise HparamsError(f'lr_shift: keys={{{field!r}: ...}}: allowed {", ".join(FIELDS)}')
    names[field] = name
  records = _records(rows)
  if not records:
    raise HparamsError('lr_shift: no rows')
  for field, name in names.items():
    if any(name not in r for r in records):
      raise HparamsError(f'lr_shift: a row has no {name!r} (map {field} with keys={{{field!r}: '
                         'NAME}})')
  col = lambda f: [r[names[f]] for r in records]
  width, lr = log2_of(col('width'), 'width'), log2_of(col('lr'), 'lr')
  loss = np.array(col('loss'), dtype=np.float64)  # None, NaN, inf: diverged
  seeds = np.array([str(v) for v in col('seed')])
  widths = np.unique(width)
  optima, per_width, seed_ix, curves = [], [], [], []
  for w in widths:
    m = np.nonzero(width == w)[0]
    labels, ix = np.unique(seeds[m], return_inverse=True)
    xs = np.unique(lr[m])
    finite = np.isfinite(loss[m])
    curves.append((2.0 ** xs, np.array([loss[m][(lr[m] == x) & finite].mean()
                                        if ((lr[m] == x) & finite).any() else np.nan
                                        for x in xs])))
    try:
      optima.append(optimum_1d(2.0 ** lr[m], loss[m], points=points))
    except HparamsError as e:
      raise HparamsError(f'lr_shift: width {2.0 ** w:g}: {e}') from None
    per_width.append((m, len(labels)))
    seed_ix.append(ix.ravel())
  used = np.array([o.edge == '' for o in optima])
  if used.sum() < 2:
    raise HparamsError(f'lr_shift: {int(used.sum())} width(s) of {len(widths)} have their '
                       'optimum inside the lr grid; needs at least 2 (widen the grid)')
  log_opt = np.log2([o.x for o in optima])
  slope, icpt = line_fits(widths[used], log_opt[used][None])
  samples, interval = None, (math.nan, math.nan)
  if bootstrap:
    rng = np.random.default_rng(seed)
    reps = np.full((bootstrap, len(widths)), np.nan)
    for j in np.nonzero(used)[0]:
      (m, n_seeds), ix = per_width[j], seed_ix[j]
      if resample == 'seed':  # each seed's count, given to each of its runs
        weights = resample_counts(n_seeds, bootstrap, rng)[:, ix]
      else:
        weights = resample_counts_within(np.unique(lr[m], return_inverse=True)[1].ravel(),
                                         bootstrap, rng)
      for r in range(bootstrap):
        try:
          o = optimum_1d(2.0 ** lr[m], loss[m], weights[r], points=points)
        except HparamsError:
          continue
        if not o.edge:
          reps[r, j] = np.log2(o.x)
    samples = line_fits(widths, reps)[0]
    s = summarize({'slope': samples}, level)['slope']
    interval = (s['lo'], s['hi'])
  return LrShift(float(slope[0]), float(icpt[0]), interval, 2.0 ** widths, optima,
                 np.array([n for _, n in per_width]), used, samples, curves, level)


def lr_shifts(rows, by: str, **kwargs) -> dict:
  """{value of `by` (e.g. 'parametrization'): lr_shift of its rows}, in order of appearance."""
  records = _records(rows)
  if any(by not in r for r in records):
    raise HparamsError(f'lr_shifts: a row has no {by!r}')
  groups = {}
  for r in records:
    groups.setdefault(r[by], []).append(r)
  return {k: lr_shift(v, **kwargs) for k, v in groups.items()}
