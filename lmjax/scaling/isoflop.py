"""IsoFLOP profiles: Hoffmann et al. 2022, Approach 2 (Sec. 3.2).

Runs are grouped by compute budget. In each budget a parabola in x = log N is fitted to the
loss, L ≈ p0 + p1·x + p2·x², by least squares; its vertex x* = −p1/(2·p2) is that budget's
compute-optimal size N_opt = e^x*, with D_opt read off the budget's log D against log N line
at x* (C/(6·N_opt) when C = 6ND). Then N_opt ∝ C^a and D_opt ∝ C^b by least squares in log-log
space over the usable budgets.

A budget is flagged, and left out of the power laws, when
- 'too_few_points': it has fewer than `min_points` runs (a parabola through 3 points has no
  residual at all);
- 'no_minimum': the parabola opens downwards (p2 ≤ 0);
- 'edge': x* lies outside the sampled range of log N, or the lowest observed loss is at the
  smallest or largest N. The minimum is then extrapolated, not measured (Czech et al. 2026
  discuss this and other biases of Approach 2).
`n_nearest=k` fits each parabola only to the k runs nearest in N to the lowest observed loss,
which lessens the bias of a parabola on a wide, asymmetric profile.

Budgets: a `budget` column of the table when present; otherwise, given `budgets`, each run is
snapped to the nearest one within relative error `rtol` (others are left out and counted);
otherwise runs are grouped by C rounded to 4 significant digits, and the budget is the
geometric mean of their C.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.scaling import laws


class IsoflopError(LmjaxError, ValueError):
  """An IsoFLOP analysis that cannot be made; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Budget:
  c: float
  rows: np.ndarray          # table indices of the runs fitted
  coef: np.ndarray          # (p0, p1, p2) in centred x = log N − x_mean
  x_mean: float
  n_opt: float
  d_opt: float
  loss_opt: float
  flags: tuple
  n_runs: int               # runs at this budget before n_nearest
  all_rows: np.ndarray      # table indices of every run at this budget

  def to_json(self) -> dict:
    return dict(c=self.c, n_runs=self.n_runs, n_fitted=len(self.rows), n_opt=self.n_opt,
                d_opt=self.d_opt, loss_opt=self.loss_opt, flags=list(self.flags))


@dataclasses.dataclass(frozen=True)
class IsoflopFit:
  budgets: list
  used: list                # indices into budgets of those in the power laws
  a: float                  # N_opt ∝ C^a
  b: float                  # D_opt ∝ C^b
  log_k_n: float
  log_k_d: float
  unmatched: int            # runs matched to no budget
  settings: dict

  def to_json(self) -> dict:
    return dict(a=self.a, b=self.b, n_opt_coef=float(np.exp(self.log_k_n)),
                d_opt_coef=float(np.exp(self.log_k_d)), n_budgets_used=len(self.used),
                unmatched_runs=self.unmatched, budgets=[b.to_json() for b in self.budgets],
                settings=self.settings)

  def n_opt(self, c):
    return np.exp(self.log_k_n + self.a * np.log(np.asarray(c, np.float64)))

  def d_opt(self, c):
    return np.exp(self.log_k_d + self.b * np.log(np.asarray(c, np.float64)))


def assign_budgets(table, budgets=None, rtol=0.1) -> np.ndarray:
  """The budget of each run (NaN: none); see module doc for the three ways."""
  if 'budget' in table.tags:
    try:
      return np.array([float(v) for v in table.tags['budget']])
    except ValueError:
      raise IsoflopError(f'{table.source}: the budget column holds a non-number') from None
  c = table.C
  if budgets is None:
    return np.array([float(f'{v:.4g}') for v in c])
  b = np.asarray(sorted(budgets), np.float64)
  if not (b > 0).all():
    raise IsoflopError('budgets must be positive')
  nearest = b[np.argmin(np.abs(np.log(c)[:, None] - np.log(b)[None]), 1)]
  return np.where(np.abs(c / nearest - 1) <= rtol, nearest, np.nan)


def parabola(x, y, weights=None):
  """Least-squares (p0, p1, p2) of y on centred x, batched over weight rows.

  x, y: (n,); weights: None or (R, n). Returns coef (R, 3) (R = 1 without weights) and the
  centre. Rows whose weighted design is singular get NaN.
  """
  xm = float(np.mean(x))
  u = x - xm
  design = np.stack([np.ones_like(u), u, u * u], 1)                    # (n, 3)
  w = np.ones((1, len(x))) if weights is None else np.atleast_2d(weights).astype(np.float64)
  gram = np.einsum('rn,ni,nj->rij', w, design, design)
  rhs = np.einsum('rn,ni,n->ri', w, design, y)
  coef = np.full((len(w), 3), np.nan)
  ok = np.linalg.matrix_rank(gram) == 3
  if ok.any():
    coef[ok] = np.linalg.solve(gram[ok], rhs[ok][..., None])[..., 0]
  return coef, xm


def vertex(coef, xm):
  """x* = xm − p1/(2·p2) where p2 > 0, else NaN."""
  p1, p2 = coef[..., 1], coef[..., 2]
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(p2 > 0, xm - p1 / (2 * p2), np.nan)


def _nearest(x, y, k):
  """Indices (into sorted-by-x arrays) of the k points around the lowest y."""
  i = int(np.argmin(y))
  lo = max(0, min(i - k // 2, len(x) - k))
  return np.arange(lo, min(lo + k, len(x)))


def fit_isoflop(table, *, budgets=None, rtol=0.1, min_points=4, n_nearest=None,
                min_budgets=3) -> IsoflopFit:
  """Approach 2 on a RunsTable; see module doc."""
  if min_points < 3:
    raise IsoflopError(f'min_points={min_points}: a parabola needs at least 3')
  if n_nearest is not None and n_nearest < 3:
    raise IsoflopError(f'n_nearest={n_nearest}: a parabola needs at least 3')
  budget_of = assign_budgets(table, budgets, rtol)
  matched = np.isfinite(budget_of)
  grouped_by_c = budgets is None and 'budget' not in table.tags
  out = []
  for key in np.unique(budget_of[matched]):
    rows = np.nonzero(budget_of == key)[0]
    # Grouped by rounded C, the budget is the runs' own (geometric mean) C, not the rounding.
    c = float(np.exp(np.mean(np.log(table.C[rows])))) if grouped_by_c else float(key)
    rows = rows[np.argsort(table.N[rows], kind='stable')]
    x_all = np.log(table.N[rows])
    all_rows, n_runs = rows, len(rows)
    if n_nearest is not None and n_runs > n_nearest:
      rows = rows[_nearest(x_all, table.loss[rows], n_nearest)]
    x, y = np.log(table.N[rows]), table.loss[rows]
    flags = []
    if len(rows) < min_points:
      flags.append('too_few_points')
    coef = np.full(3, np.nan)
    xm = float(np.mean(x))
    if len(rows) >= 3 and len(np.unique(x)) >= 3:
      coef, xm = parabola(x, y)
      coef = coef[0]
    xs = float(vertex(coef, xm))
    if not np.isfinite(xs):
      flags.append('no_minimum')
    elif (xs < x.min() or xs > x.max() or int(np.argmin(y)) in (0, len(y) - 1)):
      flags.append('edge')
    if np.isfinite(xs):
      slope, icpt = (np.polyfit(x, np.log(table.D[rows]), 1) if len(np.unique(x)) > 1
                     else (-1.0, float(np.log(c / 6.0))))
      d_opt = float(np.exp(icpt + slope * xs))
      u = xs - xm
      loss_opt = float(coef[0] + coef[1] * u + coef[2] * u * u)
    else:
      d_opt = loss_opt = float('nan')
    out.append(Budget(c=float(c), rows=rows, coef=coef, x_mean=xm, n_opt=float(np.exp(xs)),
                      d_opt=d_opt, loss_opt=loss_opt, flags=tuple(flags), n_runs=n_runs,
                      all_rows=all_rows))
  used = [i for i, b in enumerate(out) if not b.flags]
  if len(used) < min_budgets:
    flagged = {f for b in out for f in b.flags}
    raise IsoflopError(
        f'isoflop: {len(used)} usable budget(s) of {len(out)} ({len(table)} runs, '
        f'{int((~matched).sum())} matched to no budget; flags seen: '
        f'{", ".join(sorted(flagged)) or "none"}); needs at least {min_budgets}')
  log_c = np.log([out[i].c for i in used])
  a, log_k_n = laws.power_law_fit(log_c, np.log([out[i].n_opt for i in used]))
  b, log_k_d = laws.power_law_fit(log_c, np.log([out[i].d_opt for i in used]))
  return IsoflopFit(budgets=out, used=used, a=a, b=b, log_k_n=log_k_n, log_k_d=log_k_d,
                    unmatched=int((~matched).sum()),
                    settings=dict(budgets=None if budgets is None else list(budgets),
                                  rtol=rtol, min_points=min_points, n_nearest=n_nearest,
                                  min_budgets=min_budgets))
