"""Bootstrap over runs: resample rows with replacement, refit, report spread (Efron 1979).

A replicate is a vector of counts (how often each run was drawn), used as weights in the same
objective, so all replicates are one batched fit (lbfgs.py). Parametric fits start each
replicate from the `starts` best distinct optima of the full-data grid fit (Besiroglu et al.
2024 start each replicate from one point) and keep the best. IsoFLOP fits resample within each
budget, so every replicate keeps every budget; a replicate's minimum outside the sizes it drew is
dropped from that replicate's power law, as 'edge' minima are dropped from the fit.

`summarize` gives, per quantity, the percentile interval at `level` (Efron & Tibshirani 1993,
Ch. 13), a robust spread (half the width of the central 68.27% interval: the standard deviation
of a normal, but unmoved by a few runaway replicates), the standard error (standard deviation,
ddof 1; one replicate at A = 1e135 makes it 1e133, so tables print the spread), and how many
replicates lie far out (beyond Tukey's 3×IQR fences, on a log scale for positive quantities)
or are not finite.
"""
from __future__ import annotations

import numpy as np

from lmjax.scaling import isoflop, lbfgs, parametric


def resample_counts(n: int, replicates: int, rng) -> np.ndarray:
  """(replicates, n) counts of each row in a resample of size n."""
  draws = rng.integers(0, n, size=(replicates, n))
  counts = np.zeros((replicates, n))
  np.add.at(counts, (np.repeat(np.arange(replicates), n), draws.ravel()), 1.0)
  return counts


def resample_counts_within(groups, replicates: int, rng) -> np.ndarray:
  """(replicates, n) counts of a resample that draws each group's rows from that group only, as
  many as it has (a stratified bootstrap: every replicate keeps every group's size)."""
  groups = np.asarray(groups)
  counts = np.zeros((replicates, len(groups)))
  for g in dict.fromkeys(groups.tolist()):
    rows = np.nonzero(groups == g)[0]
    counts[:, rows] = resample_counts(len(rows), replicates, rng)
  return counts


def refit(problem, optima, counts, starts=4, ftol=1e-10, gtol=1e-9, max_iter=2000):
  """Refits `problem` once per row of `counts` (run weights), each from the `starts` best
  `optima` (natural rows) of the full fit, keeping each replicate's best end point.

  Returns (theta (R, P) natural, objective (R,), status (R,) of the kept end points, all status
  counts)."""
  replicates = len(counts)
  x_start = np.atleast_2d(optima)[:max(1, starts)]
  s = len(x_start)
  x0 = problem.to_internal(np.tile(x_start, (replicates, 1)))
  owner = np.repeat(np.arange(replicates), s)
  res = lbfgs.minimize(lambda x, ix: problem.value_and_grad(x, counts[owner[ix]]), x0,
                       ftol=ftol, gtol=gtol, max_iter=max_iter)
  f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(replicates, s)
  pick = np.argmin(f, 1) + np.arange(replicates) * s
  return problem.to_natural(res.x[pick]), res.f[pick], res.status[pick], res.status_counts()


def bootstrap_parametric(fit, replicates=1000, seed=0, starts=4, ftol=1e-10, gtol=1e-9,
                         max_iter=2000) -> dict:
  """Refits `fit` (a ParametricFit) on resampled runs; returns natural samples and readable ones.

  Returns dict(theta (R, P), params {name: (R,)}, derived {name: (R,)}, status counts,
  replicates, starts, unconverged).
  """
  rng = np.random.default_rng(seed)
  problem = fit.problem
  counts = resample_counts(fit.n_points, replicates, rng)
  theta, _, status, status_counts = refit(problem, fit.optima, counts, starts, ftol, gtol,
                                          max_iter)
  params = parametric.readable(fit.law, theta, problem.with_e,
                               problem.objective == 'huber_nll')
  return dict(theta=theta, params=params, derived=parametric.derived(fit.law, params),
              status=status_counts, replicates=replicates,
              starts=min(max(1, starts), len(np.atleast_2d(fit.optima))),
              unconverged=int(np.sum(status == lbfgs.MAX_ITER)))


def bootstrap_isoflop(table, fit, replicates=1000, seed=0) -> dict:
  """Refits the parabolas of `fit`'s usable budgets on runs resampled within each budget.

  Returns dict(a, b, log_k_n, log_k_d: (R,) arrays, failed: replicates with < 2 minima).
  """
  rng = np.random.default_rng(seed)
  log_n_opt, log_d_opt, log_c = [], [], []
  for i in fit.used:
    bud = fit.budgets[i]
    x = np.log(table.N[bud.rows])
    counts = resample_counts(len(bud.rows), replicates, rng)
    coef, xm = isoflop.parabola(x, table.loss[bud.rows], counts)
    xs = isoflop.vertex(coef, xm)
    # As in the fit itself, a minimum outside the sizes drawn is not a measurement ('edge').
    drawn = counts > 0
    lo = np.where(drawn, x, np.inf).min(1)
    hi = np.where(drawn, x, -np.inf).max(1)
    xs = np.where((xs >= lo) & (xs <= hi), xs, np.nan)
    slope, icpt = np.polyfit(x, np.log(table.D[bud.rows]), 1)
    log_n_opt.append(xs)
    log_d_opt.append(icpt + slope * xs)
    log_c.append(np.log(bud.c))
  log_n_opt = np.stack(log_n_opt, 1)                   # (R, budgets)
  log_d_opt = np.stack(log_d_opt, 1)
  log_c = np.asarray(log_c)
  ok = np.isfinite(log_n_opt)
  out = {}
  for name, ys in (('n', log_n_opt), ('d', log_d_opt)):
    w = ok.astype(np.float64)
    y = np.where(ok, ys, 0.0)
    sw = w.sum(1)
    with np.errstate(divide='ignore', invalid='ignore'):
      xm = (w * log_c).sum(1) / sw
      ym = (w * y).sum(1) / sw
      slope = (w * (log_c - xm[:, None]) * (y - ym[:, None])).sum(1) / (
          w * (log_c - xm[:, None]) ** 2).sum(1)
    bad = sw < 2
    slope[bad] = np.nan
    out['a' if name == 'n' else 'b'] = slope
    out[f'log_k_{name}'] = np.where(bad, np.nan, ym - slope * xm)
  out['failed'] = int(np.sum(ok.sum(1) < 2))
  return out


SPREAD_LEVEL = 0.6827  # the central interval whose half-width is one sigma of a normal


def summarize(samples: dict, level=0.95) -> dict:
  """{name: dict(value stats)} over the finite samples of each quantity: se, spread, lo, hi,
  median, n (finite), nonfinite, far_out (see module doc)."""
  lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
  out = {}
  for name, values in samples.items():
    v = np.asarray(values, np.float64).ravel()
    finite = np.isfinite(v)
    v = v[finite]
    nonfinite = int(np.sum(~finite))
    if v.size < 2:
      out[name] = dict(se=float('nan'), spread=float('nan'), lo=float('nan'), hi=float('nan'),
                       median=float('nan'), n=int(v.size), nonfinite=nonfinite, far_out=0)
      continue
    q16, q84 = np.percentile(v, [50 * (1 - SPREAD_LEVEL), 50 * (1 + SPREAD_LEVEL)])
    far = int(np.sum(_far_out(v)))
    with np.errstate(over='ignore', invalid='ignore'):  # runaway replicates: se is inf
      se = float(np.std(v, ddof=1))
    out[name] = dict(se=se, spread=float((q84 - q16) / 2),
                     lo=float(np.percentile(v, lo_q)), hi=float(np.percentile(v, hi_q)),
                     median=float(np.median(v)), n=int(v.size), nonfinite=nonfinite,
                     far_out=far)
  return out


def replicate_counts(samples: dict) -> dict:
  """How many replicates failed (a quantity not finite) and how many lie far out on at least one
  quantity (Tukey's 3×IQR fences), over the quantities of `samples` (each (R,))."""
  v = np.stack([np.asarray(x, np.float64).ravel() for x in samples.values()], 1)
  failed = ~np.all(np.isfinite(v), 1)
  far = np.zeros(len(v), bool)
  for col in v.T:
    ok = np.isfinite(col)
    far[ok] |= _far_out(col[ok])
  return dict(failed=int(failed.sum()), far_out=int(far.sum()))


def _far_out(v):
  """Finite samples beyond Tukey's far-out fences, 3×IQR past the quartiles; on a log scale when
  every sample is positive (a scale constant like A is spread multiplicatively)."""
  if v.size < 4:
    return np.zeros(v.size, bool)
  x = np.log(v) if np.all(v > 0) else v
  q25, q75 = np.percentile(x, [25, 75])
  iqr = q75 - q25
  return (x < q25 - 3 * iqr) | (x > q75 + 3 * iqr)
