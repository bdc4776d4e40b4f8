"""Batched L-BFGS in numpy float64: many independent small problems, one vectorised loop.

Each row of `x0` is its own problem (a start of a grid fit, or a bootstrap replicate). All active
problems take one L-BFGS step per iteration (the two-loop recursion of Nocedal & Wright 2006,
Alg. 7.4, history `history`, initial scaling γ = sᵀy/yᵀy, their Eq. 7.20); a problem leaves the
batch when it converges, so late iterations cost only the problems still running.

Line search: the weak Wolfe bracketing search of Lewis & Overton 2013 (double the step while
the curvature condition fails, bisect once the sufficient-decrease condition has failed),
with c1 = 1e-4, c2 = 0.9. It is robust on the nearly piecewise-linear Huber objective of
Hoffmann et al. 2022, where most residuals lie in the linear part and a backtracking search
stalls. The first step of a problem (or after a reset) moves `first_step` in its largest
coordinate, so the iterates do not depend on the objective's scale.

Stopping, per problem, all scale-free so a summed and a mean objective stop at the same point:
- 'ftol': (f_k − f_{k+1}) ≤ ftol·max(|f_k|, |f_{k+1}|). SciPy's L-BFGS-B divides by
  max(|f_k|, |f_{k+1}|, 1) instead, which on an objective of size 1e-3 (summed Huber) or 4e-6
  (its mean) stops far from the optimum: the pitfall Besiroglu et al. 2024 point out;
- 'gtol': max_j |g_j| ≤ gtol·|f|;
- 'line search': no step length gives sufficient decrease (the iterate is at the precision
  limit);
- 'max_iter': the iteration cap was hit; this problem has not converged.
"""
from __future__ import annotations

import dataclasses

import numpy as np

STATUS = ('max_iter', 'ftol', 'gtol', 'line search')
MAX_ITER, FTOL, GTOL, LINE_SEARCH = range(4)


@dataclasses.dataclass(frozen=True)
class LbfgsResult:
  x: np.ndarray        # (B, P) final iterates
  f: np.ndarray        # (B,) objective
  g: np.ndarray        # (B, P) gradient
  nit: np.ndarray      # (B,) iterations
  nfev: np.ndarray     # (B,) objective-and-gradient evaluations
  status: np.ndarray   # (B,) index into STATUS

  def status_counts(self) -> dict:
    return {name: int(np.sum(self.status == i)) for i, name in enumerate(STATUS)}


def _direction(g, s_hist, y_hist, count, first_step):
  """-H·g by the two-loop recursion; history index 0 is the newest pair."""
  b, m, _ = s_hist.shape
  q = g.copy()
  sy = np.einsum('bmp,bmp->bm', s_hist, y_hist)
  valid = np.arange(m)[None, :] < count[:, None]
  rho = np.where(valid & (sy > 0), 1.0 / np.where(sy > 0, sy, 1.0), 0.0)
  alphas = np.zeros((b, m))
  for i in range(m):
    alphas[:, i] = rho[:, i] * np.einsum('bp,bp->b', s_hist[:, i], q)
    q -= alphas[:, i, None] * y_hist[:, i]
  yy = np.einsum('bp,bp->b', y_hist[:, 0], y_hist[:, 0])
  gmax = np.maximum(np.abs(g).max(1), 1e-300)
  gamma = np.where(count > 0, sy[:, 0] / np.where(yy > 0, yy, 1.0), first_step / gmax)
  r = gamma[:, None] * q
  for i in reversed(range(m)):
    beta = rho[:, i] * np.einsum('bp,bp->b', y_hist[:, i], r)
    r += s_hist[:, i] * (alphas[:, i] - beta)[:, None]
  return -r


def minimize(fun, x0, *, ftol=1e-10, gtol=1e-9, max_iter=1000, history=10, first_step=0.1,
             c1=1e-4, c2=0.9, max_line_search=60) -> LbfgsResult:
  """Minimises B independent problems from the rows of x0.

  Args:
    fun: fun(x, index) -> (f, g) for the problems `index` (ints into the batch) at points x
      (len(index), P); it must return f (len(index),) and g (len(index), P), float64, and may
      return inf/nan where x is infeasible (the line search then shortens the step).
    x0: (B, P) starting points.
  Returns:
    LbfgsResult; `status` says why each problem stopped (see module doc).
  """
  x = np.array(x0, np.float64)
  if x.ndim != 2:
    raise ValueError(f'x0 must be (batch, params), got shape {x.shape}')
  bsz, p = x.shape
  everyone = np.arange(bsz)
  f, g = fun(x, everyone)
  s_hist = np.zeros((bsz, history, p))
  y_hist = np.zeros((bsz, history, p))
  count = np.zeros(bsz, int)
  nit = np.zeros(bsz, int)
  nfev = np.ones(bsz, int)
  status = np.full(bsz, MAX_ITER)
  active = np.isfinite(f) & np.all(np.isfinite(g), 1)
  status[~active] = LINE_SEARCH
  for _ in range(max_iter):
    ix = np.nonzero(active)[0]
    if ix.size == 0:
      break
    xa, fa, ga, ca = x[ix], f[ix], g[ix], count[ix]
    sa, ya = s_hist[ix], y_hist[ix]
    d = _direction(ga, sa, ya, ca, first_step)
    gd = np.einsum('bp,bp->b', ga, d)
    bad = ~(gd < 0)  # not a descent direction: restart from scaled steepest descent
    if bad.any():
      scale = first_step / np.maximum(np.abs(ga[bad]).max(1), 1e-300)
      d[bad] = -ga[bad] * scale[:, None]
      gd[bad] = np.einsum('bp,bp->b', ga[bad], d[bad])
      ca[bad] = 0
    t = np.ones(ix.size)
    lo = np.zeros(ix.size)
    hi = np.full(ix.size, np.inf)
    f_lo, g_lo = fa.copy(), ga.copy()     # the last point with sufficient decrease
    searching = np.ones(ix.size, bool)
    for _ in range(max_line_search):
      sj = np.nonzero(searching)[0]
      if sj.size == 0:
        break
      fj, gj = fun(xa[sj] + t[sj, None] * d[sj], ix[sj])
      nfev[ix[sj]] += 1
      armijo = np.isfinite(fj) & (fj <= fa[sj] + c1 * t[sj] * gd[sj])
      armijo &= np.all(np.isfinite(gj), 1)
      curvature = np.einsum('bp,bp->b', np.where(np.isfinite(gj), gj, 0.0), d[sj]) >= c2 * gd[sj]
      accept = armijo & curvature
      grow = armijo & ~curvature
      lo[sj] = np.where(grow, t[sj], lo[sj])
      f_lo[sj] = np.where(grow | accept, fj, f_lo[sj])
      g_lo[sj] = np.where((grow | accept)[:, None], gj, g_lo[sj])
      hi[sj] = np.where(~armijo, t[sj], hi[sj])
      t_next = np.where(np.isinf(hi[sj]), 2.0 * t[sj], 0.5 * (lo[sj] + hi[sj]))
      lo[sj] = np.where(accept, t[sj], lo[sj])
      t[sj] = np.where(accept, t[sj], t_next)
      searching[sj] = ~accept
    # Unfinished searches keep the last sufficient-decrease step `lo` (0: no progress at all).
    step = np.where(searching, lo, t)
    stuck = step == 0
    xn = np.where(stuck[:, None], xa, xa + step[:, None] * d)
    fn = np.where(stuck, fa, f_lo)
    gn = np.where(stuck[:, None], ga, g_lo)
    s = xn - xa
    yv = gn - ga
    sy = np.einsum('bp,bp->b', s, yv)
    keep = ~stuck & (sy > 1e-12 * np.sqrt(np.einsum('bp,bp->b', s, s) *
                                          np.einsum('bp,bp->b', yv, yv)))
    sa = np.where(keep[:, None, None], np.concatenate([s[:, None], sa[:, :-1]], 1), sa)
    ya = np.where(keep[:, None, None], np.concatenate([yv[:, None], ya[:, :-1]], 1), ya)
    x[ix], f[ix], g[ix] = xn, fn, gn
    s_hist[ix], y_hist[ix] = sa, ya
    count[ix] = np.where(keep, np.minimum(ca + 1, history), ca)
    nit[ix] += 1
    scale_f = np.maximum(np.abs(fa), np.abs(fn))
    done_f = ~stuck & ((fa - fn) <= ftol * scale_f)
    done_g = np.abs(gn).max(1) <= gtol * np.abs(fn)
    new_status = np.where(stuck, LINE_SEARCH, np.where(done_g, GTOL, np.where(done_f, FTOL,
                                                                              MAX_ITER)))
    status[ix] = new_status
    active[ix] = new_status == MAX_ITER
  return LbfgsResult(x=x, f=f, g=g, nit=nit, nfev=nfev, status=status)
