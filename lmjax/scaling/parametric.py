"""Parametric fits from a grid of starts: Chinchilla L(N, D) and Kaplan L(N), L(D), L(C).

The estimator is Hoffmann et al. 2022's Approach 3 (Sec. 3.3, App. D.2): minimise the Huber
loss (δ = 1e-3) of log L − LSE(...) (objective.py) with L-BFGS from every point of a grid and
keep the best. Their grid, `hoffmann_grid()`, is α, β ∈ {0, 0.5, ..., 2}, e ∈ {−1, −0.5, ..., 1},
a, b ∈ {0, 5, ..., 25}: 4,500 starts. All starts run at once (lbfgs.py). The report says how many
starts end within `reach_rtol` of the best objective and whether the best has converged
(convergence.py).

Kaplan et al. 2020's laws use the same machinery with one term: L(X) = (X_c/X)^α, i.e. log L =
a − α·log X with a = α·log X_c, optionally plus E. `frontier=True` fits only the runs on the
lower envelope of loss against X (envelope.py), the runs that are best for their X, which is how
Kaplan et al. read L(C) off the compute-efficient frontier (Fig. 1).

Natural parameter vectors: Chinchilla [a, b, α, β, e] (A = e^a, B = e^b, E = e^e); Kaplan
[a, α] or [a, α, e]; the Huber likelihood (Besiroglu et al. 2024) adds s = log σ at the end.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.scaling import convergence, envelope, laws, lbfgs
from lmjax.scaling.objective import LseProblem

LAWS = ('chinchilla', 'kaplan_n', 'kaplan_d', 'kaplan_c')
_KAPLAN_X = {'kaplan_n': 'N', 'kaplan_d': 'D', 'kaplan_c': 'C'}


class FitError(LmjaxError, ValueError):
  """A fit that cannot be made from the given runs; the message is one line."""


def hoffmann_grid() -> np.ndarray:
  """The 4,500 starts of Hoffmann et al. 2022 (App. D.2) as natural [a, b, α, β, e] rows."""
  ab = np.arange(0.0, 26.0, 5.0)
  exps = np.arange(0.0, 2.01, 0.5)
  e = np.arange(-1.0, 1.01, 0.5)
  return np.array(list(itertools.product(ab, ab, exps, exps, e)), np.float64)


def kaplan_grid(with_e: bool) -> np.ndarray:
  """Starts for one-term laws: a ∈ {0, 5, ..., 25}, α ∈ {0, 0.05, 0.1, 0.25, 0.5, 1, 2}, e as
  in Hoffmann's grid when E is fitted."""
  a = np.arange(0.0, 26.0, 5.0)
  alpha = np.array([0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0])
  if not with_e:
    return np.array(list(itertools.product(a, alpha)), np.float64)
  e = np.arange(-1.0, 1.01, 0.5)
  return np.array(list(itertools.product(a, alpha, e)), np.float64)


@dataclasses.dataclass(frozen=True)
class ParametricFit:
  law: str
  params: dict            # readable: E, A, B, alpha, beta / X_c, alpha_X, E
  theta: np.ndarray       # natural parameter vector of the best start
  objective: float
  n_points: int
  n_starts: int
  n_at_best: int          # starts whose objective is within reach_rtol of the best
  reach_rtol: float
  status: dict            # why the starts stopped (lbfgs.STATUS counts)
  convergence: dict
  optima: np.ndarray      # distinct end points, best first (bootstrap starts)
  settings: dict
  problem: LseProblem
  rows: np.ndarray        # indices into the table of the runs fitted

  def to_json(self) -> dict:
    return dict(law=self.law, params=self.params, derived=derived(self.law, self.params),
                objective=self.objective, n_points=self.n_points, n_starts=self.n_starts,
                n_at_best=self.n_at_best, reach_rtol=self.reach_rtol, status=self.status,
                convergence=self.convergence, settings=self.settings)


def readable(law: str, theta, with_e: bool, nll: bool = False) -> dict:
  """Natural vector(s) (..., P) to named parameters (arrays when theta is 2-D)."""
  t = np.asarray(theta, np.float64)
  if law == 'chinchilla':
    out = dict(E=np.exp(t[..., 4]), A=np.exp(t[..., 0]), B=np.exp(t[..., 1]),
               alpha=t[..., 2], beta=t[..., 3])
  else:
    x = _KAPLAN_X[law]
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
      out = {f'{x}_c': np.exp(t[..., 0] / t[..., 1]), f'alpha_{x}': t[..., 1]}
    if with_e:
      out['E'] = np.exp(t[..., 2])
  if nll:
    out['sigma'] = np.exp(t[..., -1])
  return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def derived(law: str, params: dict) -> dict:
  """Quantities that follow from the parameters: the allocation exponents and G (Chinchilla)."""
  if law != 'chinchilla':
    return {}
  a, b = laws.allocation_exponents(params['alpha'], params['beta'])
  g = laws.allocation_g(params['A'], params['B'], params['alpha'], params['beta'])
  conv = lambda v: float(v) if np.ndim(v) == 0 else v
  return dict(a=conv(a), b=conv(b), G=conv(g))


def _distinct(x, f, tol=1e-3, limit=16):
  """End points sorted by objective, dropping any within tol (max-norm) of a better one."""
  keep = []
  for i in np.argsort(f):
    if not np.isfinite(f[i]) or len(keep) == limit:
      break
    if not keep or np.min(np.max(np.abs(x[keep] - x[i]), 1)) > tol:
      keep.append(i)
  return np.array(keep, int)


def fit_problem(problem: LseProblem, starts, *, weights=None, ftol=1e-10, gtol=1e-9,
                max_iter=2000, reach_rtol=1e-6, check=True) -> dict:
  """Runs every start (natural rows) and returns the best, the counts and the distinct optima."""
  x0 = problem.to_internal(starts)
  res = lbfgs.minimize(lambda x, ix: problem.value_and_grad(x, weights), x0, ftol=ftol,
                       gtol=gtol, max_iter=max_iter)
  finite = np.isfinite(res.f)
  if not finite.any():
    raise FitError('no start reached a finite objective')
  best = int(np.nanargmin(np.where(finite, res.f, np.inf)))
  f_best = float(res.f[best])
  slack = max(reach_rtol * abs(f_best), problem.objective_floor())
  at_best = int(np.sum(finite & (res.f <= f_best + slack)))
  theta = problem.to_natural(res.x[best])[0]
  distinct = _distinct(res.x, res.f)
  report = convergence.check(problem, theta, weights) if check else None
  return dict(theta=theta, objective=f_best, n_starts=len(x0), n_at_best=at_best,
              status=res.status_counts(), optima=problem.to_natural(res.x[distinct]),
              convergence=report, result=res)


def _check_points(n_points, n_params, law):
  if n_points <= n_params:
    raise FitError(f'{law}: {n_points} run(s) for {n_params} parameters; the fit needs more runs '
                   'than parameters')


def fit_chinchilla(table, *, delta=1e-3, objective='huber', reduction='sum', starts=None,
                   reach_rtol=1e-6, ftol=1e-10, gtol=1e-9, max_iter=2000) -> ParametricFit:
  """Hoffmann et al. 2022 Approach 3 on a RunsTable: L(N, D) = E + A/N^α + B/D^β.

  starts: natural [a, b, α, β, e] rows (default: the 4,500-point Hoffmann grid); for the Huber
  likelihood a start column s = log σ is appended (log of the spread of log loss, 1e-2).
  """
  problem = LseProblem(np.log(np.stack([table.N, table.D])), np.log(table.loss), with_e=True,
                       delta=delta, objective=objective, reduction=reduction)
  _check_points(len(table), problem.n_params, 'chinchilla')
  grid = hoffmann_grid() if starts is None else np.atleast_2d(np.asarray(starts, np.float64))
  if objective == 'huber_nll' and grid.shape[1] == 5:
    grid = np.concatenate([grid, np.full((len(grid), 1), np.log(1e-2))], 1)
  out = fit_problem(problem, grid, reach_rtol=reach_rtol, ftol=ftol, gtol=gtol,
                    max_iter=max_iter)
  params = readable('chinchilla', out['theta'], True, objective == 'huber_nll')
  return ParametricFit(
      law='chinchilla', params=params, theta=out['theta'], objective=out['objective'],
      n_points=len(table), n_starts=out['n_starts'], n_at_best=out['n_at_best'],
      reach_rtol=reach_rtol, status=out['status'], convergence=out['convergence'],
      optima=out['optima'], problem=problem, rows=np.arange(len(table)),
      settings=dict(delta=delta, objective=objective, reduction=reduction, ftol=ftol,
                    gtol=gtol, max_iter=max_iter))


def fit_kaplan(table, law: str, *, irreducible=False, frontier=True, delta=1e-3,
               objective='huber', reduction='sum', starts=None, reach_rtol=1e-6, ftol=1e-10,
               gtol=1e-9, max_iter=2000) -> ParametricFit:
  """Kaplan et al. 2020 L(X) = (X_c/X)^α_X [+ E] for law kaplan_n, kaplan_d or kaplan_c."""
  if law not in _KAPLAN_X:
    raise FitError(f'law {law!r}: allowed {", ".join(_KAPLAN_X)}')
  x = {'kaplan_n': table.N, 'kaplan_d': table.D, 'kaplan_c': table.C}[law]
  rows = np.nonzero(envelope.lower_envelope(x, table.loss))[0] if frontier else \
      np.arange(len(table))
  problem = LseProblem(np.log(x[rows])[None], np.log(table.loss[rows]), with_e=irreducible,
                       delta=delta, objective=objective, reduction=reduction)
  where = ' on the lower envelope' if frontier else ''
  if len(rows) <= problem.n_params:
    raise FitError(f'{law}: {len(rows)} run(s){where} for {problem.n_params} parameters; the fit '
                   'needs more runs than parameters')
  grid = kaplan_grid(irreducible) if starts is None else np.atleast_2d(np.asarray(starts, float))
  if objective == 'huber_nll' and grid.shape[1] == 2 + irreducible:
    grid = np.concatenate([grid, np.full((len(grid), 1), np.log(1e-2))], 1)
  out = fit_problem(problem, grid, reach_rtol=reach_rtol, ftol=ftol, gtol=gtol,
                    max_iter=max_iter)
  params = readable(law, out['theta'], irreducible, objective == 'huber_nll')
  return ParametricFit(
      law=law, params=params, theta=out['theta'], objective=out['objective'],
      n_points=len(rows), n_starts=out['n_starts'], n_at_best=out['n_at_best'],
      reach_rtol=reach_rtol, status=out['status'], convergence=out['convergence'],
      optima=out['optima'], problem=problem, rows=rows,
      settings=dict(delta=delta, objective=objective, reduction=reduction, ftol=ftol,
                    gtol=gtol, max_iter=max_iter, irreducible=irreducible, frontier=frontier))
