"""Predictions from fitted laws, with bootstrap intervals.

- `loss_at(fit, n, d)`: L(N, D) from a Chinchilla fit (Hoffmann et al. 2022, Eq. 2), or L(X)
  from a Kaplan fit (x given as `n`).
- `compute_optimal_at(fit, c)`: N_opt(C), D_opt(C) and the loss there, from a Chinchilla fit
  through the allocation formula (Hoffmann et al. 2022, Eq. 4), or from an IsoFLOP fit's power
  laws (Approach 2).
Each value comes with the bootstrap standard error and percentile interval: the same
quantity evaluated at every replicate's parameters (bootstrap.py).
"""
from __future__ import annotations

import numpy as np

from lmjax.scaling import bootstrap, laws


def _with_interval(point, samples, level):
  """{value, se, lo, hi} per entry of point (m,), from samples (R, m)."""
  out = []
  for j, v in enumerate(np.atleast_1d(point)):
    row = dict(value=float(v))
    if samples is not None:
      s = bootstrap.summarize({'v': samples[:, j]}, level)['v']
      row.update(se=s['se'], lo=s['lo'], hi=s['hi'])
    out.append(row)
  return out


def _log_inputs(fit, n, d):
  n = np.atleast_1d(np.asarray(n, np.float64))
  if fit.law == 'chinchilla':
    d = np.atleast_1d(np.asarray(d, np.float64))
    return np.log(np.stack(np.broadcast_arrays(n, d)))
  return np.log(n)[None]


def loss_curve(fit, n, d=None, theta=None):
  """L at inputs for natural parameters theta (R, P) (default: the fit's): (R, m)."""
  t = fit.theta[None] if theta is None else theta
  with np.errstate(over='ignore'):  # a wild bootstrap replicate may overflow to inf: kept as is
    return np.exp(fit.problem.predict_log(t, _log_inputs(fit, n, d)))


def loss_at(fit, n, d=None, boot=None, level=0.95) -> list:
  """[{n, d, loss: {value, se, lo, hi}}] at each (n, d); boot from bootstrap_parametric."""
  point = loss_curve(fit, n, d)[0]
  samples = loss_curve(fit, n, d, boot['theta']) if boot else None
  n_arr = np.atleast_1d(np.asarray(n, np.float64))
  d_arr = np.broadcast_to(np.atleast_1d(np.asarray(d if d is not None else np.nan, float)),
                          n_arr.shape)
  return [dict(n=float(a), d=float(b), loss=row) for a, b, row in
          zip(n_arr, d_arr, _with_interval(point, samples, level))]


def chinchilla_optimal(params, c):
  """(N_opt, D_opt, L_opt) at FLOPs c for readable Chinchilla params (scalars or (R,) arrays)."""
  c = np.atleast_1d(np.asarray(c, np.float64))
  col = lambda v: np.asarray(v, np.float64)[..., None]
  n_opt, d_opt = laws.compute_optimal(c, col(params['A']), col(params['B']),
                                      col(params['alpha']), col(params['beta']))
  loss = laws.chinchilla_loss(n_opt, d_opt, col(params['E']), col(params['A']),
                              col(params['B']), col(params['alpha']), col(params['beta']))
  return n_opt, d_opt, loss


def compute_optimal_at(fit, c, boot=None, level=0.95) -> list:
  """[{c, n_opt, d_opt, (loss)}] each {value, se, lo, hi}; fit: Chinchilla or IsoFLOP."""
  c = np.atleast_1d(np.asarray(c, np.float64))
  if hasattr(fit, 'law'):
    n_opt, d_opt, loss = (v[0] if v.ndim > 1 else v for v in chinchilla_optimal(fit.params, c))
    if boot:
      ns, ds, ls = chinchilla_optimal(boot['params'], c)
    else:
      ns = ds = ls = None
    rows = zip(c, _with_interval(n_opt, ns, level), _with_interval(d_opt, ds, level),
               _with_interval(loss, ls, level))
    return [dict(c=float(ci), n_opt=a, d_opt=b, loss=l) for ci, a, b, l in rows]
  n_opt, d_opt = fit.n_opt(c), fit.d_opt(c)
  ns = ds = None
  if boot:
    log_c = np.log(c)[None]
    ns = np.exp(boot['log_k_n'][:, None] + boot['a'][:, None] * log_c)
    ds = np.exp(boot['log_k_d'][:, None] + boot['b'][:, None] * log_c)
  rows = zip(c, _with_interval(n_opt, ns, level), _with_interval(d_opt, ds, level))
  return [dict(c=float(ci), n_opt=a, d_opt=b) for ci, a, b in rows]
