"""The optimum of a loss over a log-spaced grid of hyperparameters (learning rate, batch size).

- `optimum_1d(xs, losses)`: a parabola in log2 x fitted to the lowest point and its neighbours
  (3 to 5 grid points: a learning-rate profile is skewed, steeper above the optimum, so only its
  neighbourhood is fitted), its vertex clipped to the grid;
- `optimum_2d(lrs, batches, losses)`: a quadratic surface in (log2 η, log2 B) fitted to the grid
  points around the lowest, its vertex; the best grid point when the surface's Hessian is not
  positive definite or its vertex leaves the grid.
Runs at one grid point are pooled (their weighted mean loss: seeds, or a bootstrap's repeats);
diverged runs (NaN or inf loss) are missing points. A lowest loss on the grid's border is
flagged ('edge'): the optimum is then a bound, not a measurement. hparams.py and
lr_transfer.py build on these.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.scaling import isoflop


class HparamsError(LmjaxError, ValueError):
  """Hyperparameter optima or laws that cannot be computed; the message is one line."""


def _cells(keys, losses, weights):
  """Runs pooled per grid point: (points (m, k) sorted, weighted mean loss (m,), weight (m,));
  non-finite losses and zero weights are missing."""
  losses = np.asarray(losses, np.float64).ravel()
  keys = np.asarray(keys, np.float64).reshape(len(keys), -1)
  w = np.ones(len(losses)) if weights is None else np.asarray(weights, np.float64).ravel()
  if not len(keys) == len(losses) == len(w):
    raise HparamsError(f'{len(keys)} grid points, {len(losses)} losses and {len(w)} weights: '
                       'give one of each per run')
  ok = np.isfinite(losses) & (w > 0)
  if not ok.any():
    return np.empty((0, keys.shape[1])), np.empty(0), np.empty(0)
  points, inverse = np.unique(keys[ok], axis=0, return_inverse=True)
  inverse = inverse.ravel()
  total = np.bincount(inverse, w[ok], len(points))
  return points, np.bincount(inverse, w[ok] * losses[ok], len(points)) / total, total


def log2_of(values, name):
  """log2 of positive, finite hyperparameter values; HparamsError naming `name` otherwise."""
  x = np.asarray(values, np.float64).ravel()
  if not np.all(np.isfinite(x) & (x > 0)):
    raise HparamsError(f'{name}: every value must be finite and positive')
  return np.log2(x)


def _window(m, i, k):
  """The k consecutive indices of 0..m-1 centred on i, shifted to fit (all when k >= m)."""
  k = min(k, m)
  lo = min(max(i - k // 2, 0), m - k)
  return np.arange(lo, lo + k)


@dataclasses.dataclass(frozen=True)
class Optimum1D:
  x: float          # the optimum: the parabola's vertex, or the best grid point
  loss: float       # the parabola at x, or the best grid point's mean loss
  edge: str         # '' inside; 'low', 'high': the lowest loss is at that end (x is it); 'both'
  fitted: bool      # a vertex; False: the best grid point (edge, < 3 points, no curvature)
  n_points: int     # grid points in the parabola (0 when not fitted)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def optimum_1d(xs, losses, weights=None, *, points=5) -> Optimum1D:
  """The optimum of a loss curve over a log-spaced hyperparameter (module doc): runs at one x
  pooled (weighted mean), a parabola in log2 x fitted to the `points` grid points around the
  lowest (3 to 5: fewer is less biased on a skewed curve, more averages noise), its vertex
  clipped to the grid. `weights`: runs' weights (a bootstrap's counts)."""
  if points < 3:
    raise HparamsError(f'points={points}: a parabola needs at least 3')
  u, y, w = _cells(log2_of(xs, 'xs'), losses, weights)
  if not len(u):
    raise HparamsError('optimum_1d: no finite loss')
  u = u[:, 0]
  i = int(np.argmin(y))
  edge = 'both' if len(u) == 1 else 'low' if i == 0 else 'high' if i == len(u) - 1 else ''
  best = Optimum1D(float(2.0 ** u[i]), float(y[i]), edge, False, 0)
  if edge:
    return best
  sel = _window(len(u), i, points)
  coef, centre = isoflop.parabola(u[sel], y[sel], w[sel][None])
  coef = coef[0]
  if not np.isfinite(coef).all() or coef[2] <= 0:
    return best
  vertex = float(np.clip(centre - coef[1] / (2 * coef[2]), u[0], u[-1]))
  du = vertex - centre
  return Optimum1D(float(2.0 ** vertex), float(coef[0] + coef[1] * du + coef[2] * du * du), '',
                   True, len(sel))


@dataclasses.dataclass(frozen=True)
class Optimum2D:
  lr: float
  batch_size: float
  loss: float       # the surface at its vertex, or the best grid point's mean loss
  edges: tuple      # of lr_low, lr_high, batch_low, batch_high: the lowest loss on that border
  fitted: bool      # the surface's vertex; False: the best grid point (reason says why)
  reason: str
  n_points: int     # grid points in the surface (0 when not fitted)

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), 'edges': list(self.edges)}


def _surface(u, v, y, w):
  """Weighted least squares of y on (1, u, v, u², uv, v²) about the points' mean: (coef,
  centre), or None when the points do not determine it."""
  centre = np.array([u.mean(), v.mean()])
  du, dv = u - centre[0], v - centre[1]
  design = np.stack([np.ones_like(du), du, dv, du * du, du * dv, dv * dv], 1)
  sw = np.sqrt(w)
  coef, _, rank, _ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
  return (coef, centre) if rank == 6 else None


def optimum_2d(lrs, batches, losses, weights=None, *, window=3) -> Optimum2D:
  """The optimum (η*, B*) over a grid of learning rates and batch sizes (module doc): runs at one
  point pooled, a quadratic surface in (log2 η, log2 B) fitted to the `window` × `window` grid
  points around the lowest (widened until they determine it). Falls back to the best grid point
  when the surface's Hessian is not positive definite or its vertex leaves the grid."""
  if window < 3:
    raise HparamsError(f'window={window}: a quadratic needs at least 3 values per axis')
  keys = np.stack([log2_of(lrs, 'lrs'), log2_of(batches, 'batches')], 1)
  pts, y, w = _cells(keys, losses, weights)
  if not len(pts):
    raise HparamsError('optimum_2d: no finite loss')
  u, v = pts[:, 0], pts[:, 1]
  us, vs = np.unique(u), np.unique(v)
  i = int(np.argmin(y))
  edges = tuple(name for name, hit in (
      ('lr_low', u[i] == us[0]), ('lr_high', u[i] == us[-1]),
      ('batch_low', v[i] == vs[0]), ('batch_high', v[i] == vs[-1])) if hit)

  def best(reason):
    return Optimum2D(float(2.0 ** u[i]), float(2.0 ** v[i]), float(y[i]), edges, False, reason, 0)

  if len(us) < 3 or len(vs) < 3:
    return best('fewer than 3 learning rates or batch sizes')
  iu, iv = int(np.searchsorted(us, u[i])), int(np.searchsorted(vs, v[i]))
  fit = None
  for k in range(window, max(window, len(us), len(vs)) + 1):
    sel = np.isin(u, us[_window(len(us), iu, k)]) & np.isin(v, vs[_window(len(vs), iv, k)])
    if sel.sum() >= 6 and len(np.unique(u[sel])) >= 3 and len(np.unique(v[sel])) >= 3:
      fit = _surface(u[sel], v[sel], y[sel], w[sel])
      if fit is not None:
        break
  if fit is None:
    return best('too few grid points for a quadratic surface')
  (c0, c1, c2, c3, c4, c5), centre = fit
  hessian = np.array([[2 * c3, c4], [c4, 2 * c5]])
  if not (hessian[0, 0] > 0 and np.linalg.det(hessian) > 0):
    return best('the surface has no minimum (Hessian not positive definite)')
  step = np.linalg.solve(hessian, -np.array([c1, c2]))
  uv = centre + step
  if not (us[0] <= uv[0] <= us[-1] and vs[0] <= uv[1] <= vs[-1]):
    return best("the surface's minimum lies outside the grid")
  loss = c0 + 0.5 * (c1 * step[0] + c2 * step[1])  # f(z*) = c0 + g·z*/2 at z* = −H⁻¹g
  return Optimum2D(float(2.0 ** uv[0]), float(2.0 ** uv[1]), float(loss), edges, True, '',
                   int(sel.sum()))


def line_fits(x, y):
  """Least-squares lines y = k + s·x of each row of y (R, G) over its finite entries: (s, k),
  (R,) each; NaN where a row has fewer than 2 distinct x."""
  y = np.atleast_2d(y)
  ok = np.isfinite(y)
  w = ok.astype(np.float64)
  yy = np.where(ok, y, 0.0)
  with np.errstate(divide='ignore', invalid='ignore'):
    sw = w.sum(1)
    xm = (w * x).sum(1) / sw
    ym = (w * yy).sum(1) / sw
    sxx = (w * (x - xm[:, None]) ** 2).sum(1)
    slope = (w * (x - xm[:, None]) * (yy - ym[:, None])).sum(1) / sxx
  bad = (sw < 2) | ~(sxx > 1e-12)
  return np.where(bad, np.nan, slope), np.where(bad, np.nan, ym - slope * xm)


