"""Scaling laws of the user's own form, fitted like the built-in ones.

A law is a Python function of named parameters and named inputs that returns the predicted
loss, written with numpy so that it broadcasts:

  kaplan_nd = Law('kaplan_nd',
                  lambda p, x: ((p.N_c / x.N) ** (p.alpha_N / p.alpha_D) + p.D_c / x.D) ** p.alpha_D,
                  params=dict(N_c=Param(1e6, 1e16, log=True), D_c=Param(1e6, 1e16, log=True),
                              alpha_N=Param(0.02, 1.0), alpha_D=Param(0.02, 1.0)),
                  inputs=('N', 'D'))
  fit = fit_law(kaplan_nd, dict(N=n, D=d), loss, bootstrap=500)

Each parameter has a starting range; `log=True` marks a positive parameter that the optimiser
moves on a log scale (scale constants such as A or N_c). Parameters may be `fixed` to values or
`tied` to another parameter (tied={'beta': 'alpha'}).

The fit is the machinery of the built-in laws (parametric.fit_problem): the batched L-BFGS of
lbfgs.py run from every start at once (a scrambled Sobol sample of the ranges, or the user's
starts), the best end point kept, the restart check of convergence.py, and a bootstrap over runs
(bootstrap.refit) started from the best distinct optima, optionally stratified by a group
column. Gradients are central differences (step 6e-6 per coordinate, about the cube root of
float64's epsilon), so the law needs no autodiff; a point where the law is not finite, or not
positive under the log objective, is out of reach and the line search steps back.

Objectives, on run weights w_i:
- 'huber': Σ w_i·Huber_δ(log L_i − log L̂_i), δ = 1e-3 (Hoffmann et al. 2022, Eq. 3);
- 'lsq': Σ w_i·(L_i − L̂_i)²/2, least squares on the loss itself.
"""
from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import Callable

import numpy as np
from scipy.stats import qmc

from lmjax.scaling import bootstrap, lbfgs
from lmjax.scaling.objective import huber
from lmjax.scaling.parametric import FitError, fit_problem

OBJECTIVES = ('huber', 'lsq')
_FD_STEP = 6e-6


@dataclasses.dataclass(frozen=True)
class Param:
  """A parameter's starting range [lo, hi]; log: positive, optimised as log(value)."""
  lo: float
  hi: float
  log: bool = False

  def __post_init__(self):
    if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo <= self.hi):
      raise FitError(f'Param({self.lo}, {self.hi}): need finite lo <= hi')
    if self.log and self.lo <= 0:
      raise FitError(f'Param({self.lo}, {self.hi}, log=True): a log-scale range must be > 0')


class Values(dict):
  """Named arrays, read as p.alpha or p['alpha']."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError:
      raise AttributeError(f'no parameter or input named {name!r} (have: '
                           f'{", ".join(self)})') from None


@dataclasses.dataclass(frozen=True)
class Law:
  """name; fn(p, x) -> predicted loss; params {name: Param | (lo, hi) | (lo, hi, 'log')};
  inputs: the names fn reads from x (N, D, C or any column of the runs)."""
  name: str
  fn: Callable
  params: dict
  inputs: tuple
  doc: str = ''

  def __post_init__(self):
    params = {}
    for k, v in self.params.items():
      if isinstance(v, Param):
        params[k] = v
      elif isinstance(v, (tuple, list)) and len(v) in (2, 3):
        params[k] = Param(float(v[0]), float(v[1]), len(v) == 3 and v[2] == 'log')
      else:
        raise FitError(f'law {self.name}: parameter {k}={v!r}: give Param(lo, hi[, log]) or '
                       '(lo, hi[, "log"])')
    if not params:
      raise FitError(f'law {self.name}: no parameters')
    object.__setattr__(self, 'params', params)
    object.__setattr__(self, 'inputs', (self.inputs,) if isinstance(self.inputs, str)
                       else tuple(self.inputs))


@dataclasses.dataclass(frozen=True)
class LawProblem:
  """A law and its data as a problem for parametric.fit_problem: natural rows are the free
  parameters' values, internal rows the same with log-scale parameters logged."""
  law: Law
  x: dict                       # input name -> (n,) float64
  loss: np.ndarray              # (n,)
  objective: str = 'huber'
  delta: float = 1e-3
  fixed: dict = dataclasses.field(default_factory=dict)
  tied: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    names = self.law.params
    if self.objective not in OBJECTIVES:
      raise FitError(f'objective={self.objective!r}: allowed {", ".join(OBJECTIVES)}')
    if not self.delta > 0:
      raise FitError(f'huber delta={self.delta!r}: must be > 0')
    for what, given in (('fixed', self.fixed), ('tied', self.tied)):
      for k in given:
        if k not in names:
          raise FitError(f'{what}={{{k!r}: ...}}: law {self.law.name} has no parameter {k!r} '
                         f'(its parameters: {", ".join(names)})')
    for k, target in self.tied.items():
      if target not in names or target in self.tied or target == k:
        raise FitError(f'tied={{{k!r}: {target!r}}}: tie to another, untied parameter of '
                       f'{", ".join(names)}')
    both = set(self.fixed) & set(self.tied)
    if both:
      raise FitError(f'{", ".join(sorted(both))}: a parameter is fixed or tied, not both')
    free = tuple(k for k in names if k not in self.fixed and k not in self.tied)
    if not free:
      raise FitError(f'law {self.law.name}: every parameter is fixed or tied; nothing to fit')
    object.__setattr__(self, 'free', free)
    object.__setattr__(self, '_log', np.array([names[k].log for k in free]))
    object.__setattr__(self, 'fixed', {k: float(v) for k, v in self.fixed.items()})
    loss = np.asarray(self.loss, np.float64)
    object.__setattr__(self, 'loss', loss)
    object.__setattr__(self, '_log_loss', np.log(loss) if self.objective == 'huber' else None)

  @property
  def n_params(self) -> int:
    return len(self.free)

  def objective_floor(self) -> float:
    """The objective at residuals of 1e-12 in every run (see objective.LseProblem)."""
    return 0.5 * 1e-12 ** 2 * self.loss.size

  def to_internal(self, theta):
    t = np.array(theta, np.float64, ndmin=2)
    with np.errstate(divide='ignore', invalid='ignore'):
      t[:, self._log] = np.log(t[:, self._log])
    return t

  def to_natural(self, z):
    t = np.array(z, np.float64, ndmin=2)
    t[:, self._log] = np.exp(t[:, self._log])
    return t

  def values(self, theta) -> Values:
    """Every parameter as a (B, 1) column for natural rows theta (B, free)."""
    t = np.atleast_2d(np.asarray(theta, np.float64))
    out = Values({k: t[:, j:j + 1] for j, k in enumerate(self.free)})
    for k, v in self.fixed.items():
      out[k] = np.full((len(t), 1), v)
    for k, target in self.tied.items():
      out[k] = out[target]
    return Values({k: out[k] for k in self.law.params})

  def predict(self, theta, x=None) -> np.ndarray:
    """L̂ (B, m) for natural rows theta (B, free) at inputs x (default: the fitted runs')."""
    x = self.x if x is None else x
    with np.errstate(all='ignore'):
      pred = self.law.fn(self.values(theta), Values(x))
    m = len(next(iter(x.values())))
    return np.broadcast_to(np.asarray(pred, np.float64), (len(np.atleast_2d(theta)), m))

  def _objective(self, z, weights):
    """Objective at internal rows z (B, P) with weights None, (n,) or (B, n)."""
    with np.errstate(all='ignore'):
      pred = self.predict(self.to_natural(z))
      if self.objective == 'huber':
        r = self._log_loss - np.log(np.where(pred > 0, pred, np.nan))
        per_run = huber(r, self.delta)
      else:
        per_run = 0.5 * (self.loss - pred) ** 2
      f = per_run.sum(1) if weights is None else np.einsum(
          'bn,bn->b', np.broadcast_to(weights, per_run.shape), per_run)
    return np.where(np.isfinite(f), f, np.inf)

  def value_and_grad(self, z, weights=None):
    """Objective and central-difference gradient at internal rows z (B, P)."""
    z = np.asarray(z, np.float64)
    b, p = z.shape
    h = _FD_STEP * np.maximum(1.0, np.abs(z))                     # (B, P)
    eye = np.eye(p)
    pts = np.concatenate([z[None], z[None] + h[None] * eye[:, None], z[None] - h[None] * eye[:, None]])
    w = None
    if weights is not None:
      w = np.broadcast_to(np.asarray(weights, np.float64), (b, self.loss.size))
      w = np.tile(w, (2 * p + 1, 1))
    f_all = self._objective(pts.reshape(-1, p), w).reshape(2 * p + 1, b)
    with np.errstate(invalid='ignore'):
      g = (f_all[1:p + 1] - f_all[p + 1:]).T / (2 * h)
    return f_all[0], np.where(np.isfinite(g), g, np.nan)


def sobol_starts(law: Law, free, count: int, seed: int) -> np.ndarray:
  """`count` natural starts (count, free): a scrambled Sobol sample of the ranges (log-scale
  parameters sampled on a log scale)."""
  m = max(0, math.ceil(math.log2(max(1, count))))
  u = qmc.Sobol(len(free), scramble=True, seed=seed).random_base2(m)[:count]
  out = np.empty_like(u)
  for j, k in enumerate(free):
    r = law.params[k]
    if r.log:
      out[:, j] = np.exp(np.log(r.lo) + u[:, j] * (np.log(r.hi) - np.log(r.lo)))
    else:
      out[:, j] = r.lo + u[:, j] * (r.hi - r.lo)
  return out


@dataclasses.dataclass
class LawFit:
  law: Law
  problem: LawProblem
  params: dict            # every parameter's value: fitted, fixed and tied
  theta: np.ndarray       # the free parameters' values, in problem.free order
  objective: float
  n_points: int
  n_starts: int
  n_at_best: int
  status: dict
  convergence: dict
  optima: np.ndarray      # distinct end points (natural), best first
  settings: dict
  boot: dict | None = None  # theta (R, free), params {name: (R,)}, summary, counts

  def predict(self, x: dict, level: float | None = None) -> dict:
    """L̂ at inputs x {name: (m,)}: dict(value (m,)), with lo and hi (the bootstrap percentile
    interval at `level`, default the fit's) when the fit was bootstrapped."""
    x = {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in x.items()}
    missing = [k for k in self.law.inputs if k not in x]
    if missing:
      raise FitError(f'predict: law {self.law.name} needs input(s) {", ".join(missing)}')
    out = dict(value=self.problem.predict(self.theta[None], x)[0])
    if self.boot is not None:
      level = self.settings['level'] if level is None else level
      samples = self.problem.predict(self.boot['theta'], x)
      with np.errstate(invalid='ignore'):
        out['lo'], out['hi'] = np.nanpercentile(np.where(np.isfinite(samples), samples, np.nan),
                                                [50 * (1 - level), 50 * (1 + level)], axis=0)
    return out

  def to_json(self) -> dict:
    out = dict(law=self.law.name, params=self.params, free=list(self.problem.free),
               fixed=self.problem.fixed, tied=self.problem.tied, objective=self.objective,
               n_points=self.n_points, n_starts=self.n_starts, n_at_best=self.n_at_best,
               status=self.status, convergence=self.convergence, settings=self.settings)
    if self.boot is not None:
      out['bootstrap'] = {k: v for k, v in self.boot.items() if k not in ('theta', 'params')}
    return out

  def text(self) -> str:
    """The fitted values in launch.fit's table layout (value, spread, interval)."""
    from lmjax.scaling.fit import SPREAD_NOTE, replicates_line
    pct = f'{100 * self.settings["level"]:g}% interval'
    summary = self.boot['summary'] if self.boot else {}
    lines = [f'law {self.law.name}: {self.n_points} runs, objective {self.settings["objective"]}',
             f'  {"quantity":<12}{"value":>12}{"spread":>12}   {pct}']
    fmt = lambda v: '—' if v is None or not np.isfinite(v) else f'{v:.4g}'
    for k, v in self.params.items():
      s = summary.get(k)
      note = ' (fixed)' if k in self.problem.fixed else (
          f' (tied to {self.problem.tied[k]})' if k in self.problem.tied else '')
      iv = f'[{fmt(s["lo"])}, {fmt(s["hi"])}]' if s else ''
      lines.append(f'  {k:<12}{fmt(v):>12}{fmt(s["spread"]) if s else "":>12}   {iv}{note}')
    if self.boot:
      lines += [f'  {replicates_line(self.boot)}',
                *textwrap.wrap(f'({SPREAD_NOTE})', 96, initial_indent='  ',
                               subsequent_indent='   ')]
    lines.append(f'  {self.n_at_best}/{self.n_starts} starts at the best objective '
                 f'{self.objective:.10g}; {self.convergence["message"]}')
    return '\n'.join(lines)


def _inputs(law: Law, x: dict, loss):
  loss = np.asarray(loss, np.float64).ravel()
  out = {}
  for k in law.inputs:
    if k not in x:
      raise FitError(f'law {law.name}: no input {k!r} (given: {", ".join(x) or "none"})')
    v = np.asarray(x[k], np.float64).ravel()
    if v.shape != loss.shape:
      raise FitError(f'law {law.name}: input {k} has {v.size} values for {loss.size} losses')
    out[k] = v
  bad = ~np.isfinite(loss) | (loss <= 0)
  for k, v in out.items():
    bad |= ~np.isfinite(v)
  if bad.any():
    raise FitError(f'law {law.name}: row {int(np.argmax(bad))} has a non-finite input or a loss '
                   '<= 0; drop it first')
  return out, loss


def fit_law(law: Law, x: dict, loss, *, objective='huber', delta=1e-3, fixed=None, tied=None,
            starts=256, start_points=None, seed=0, bootstrap=1000, bootstrap_starts=4,
            strata=None, level=0.95, ftol=1e-10, gtol=1e-9, max_iter=2000) -> LawFit:
  """Fits `law` to runs: inputs x {name: (n,)}, losses (n,). See the module doc.

  starts: how many Sobol starts; start_points: explicit starts instead, a list of {name: value}
  over the free parameters. bootstrap: replicates over runs (0: none), each refitted from the
  `bootstrap_starts` best distinct optima; strata: a group label per run, resampled within its
  group. Raises FitError in one line for a law, option or data that cannot be fitted.
  """
  x, loss = _inputs(law, x, loss)
  problem = LawProblem(law, x, loss, objective, delta, dict(fixed or {}), dict(tied or {}))
  if loss.size <= problem.n_params:
    raise FitError(f'law {law.name}: {loss.size} run(s) for {problem.n_params} free parameters; '
                   'the fit needs more runs than parameters')
  if start_points is not None:
    try:
      grid = np.array([[float(s[k]) for k in problem.free] for s in start_points], np.float64)
    except KeyError as e:
      raise FitError(f'start_points: every start needs every free parameter; missing {e}') \
          from None
  else:
    if starts < 1:
      raise FitError(f'starts={starts}: need at least 1')
    grid = sobol_starts(law, problem.free, starts, seed)
  if bootstrap < 0 or bootstrap == 1:
    raise FitError(f'bootstrap={bootstrap}: 0 (none) or at least 2 replicates')
  if not 0 < level < 1:
    raise FitError(f'level={level}: must be in (0, 1)')
  try:
    out = fit_problem(problem, grid, ftol=ftol, gtol=gtol, max_iter=max_iter)
  except FitError as e:
    raise FitError(f'law {law.name}: {e}') from None
  theta = out['theta']
  params = {k: float(v[0, 0]) for k, v in problem.values(theta[None]).items()}
  fit = LawFit(law=law, problem=problem, params=params, theta=theta,
               objective=out['objective'], n_points=loss.size, n_starts=out['n_starts'],
               n_at_best=out['n_at_best'], status=out['status'], convergence=out['convergence'],
               optima=out['optima'],
               settings=dict(objective=objective, delta=delta, seed=seed, level=level,
                             ftol=ftol, gtol=gtol, max_iter=max_iter,
                             stratified=strata is not None))
  if bootstrap:
    fit.boot = _bootstrap(fit, bootstrap, seed, bootstrap_starts, strata)
  return fit


def _bootstrap(fit: LawFit, replicates, seed, starts, strata) -> dict:
  rng = np.random.default_rng(seed)
  if strata is None:
    counts = bootstrap.resample_counts(fit.n_points, replicates, rng)
  else:
    strata = np.asarray(strata)
    if strata.shape != (fit.n_points,):
      raise FitError(f'strata: {strata.size} labels for {fit.n_points} runs')
    counts = bootstrap.resample_counts_within(strata, replicates, rng)
  return bootstrap_weighted(fit, counts, starts)


def bootstrap_weighted(fit: LawFit, weights, starts=4, problem=None, failed=None) -> dict:
  """fit.boot for replicates given as run weights (R, n) over `problem`'s runs (default the
  fit's own), each refitted from the fit's `starts` best optima; `failed` (R,) marks replicates
  to leave out (NaN), as a refit that does not end finite is."""
  problem = problem or fit.problem
  s = fit.settings
  theta, f, status, _ = bootstrap.refit(problem, fit.optima, weights, starts, s['ftol'],
                                        s['gtol'], s['max_iter'])
  theta[~np.isfinite(f)] = np.nan
  if failed is not None:
    theta[np.asarray(failed, bool)] = np.nan
  params = {k: v[:, 0] for k, v in problem.values(theta).items() if k not in problem.fixed}
  return dict(theta=theta, params=params, replicates=len(weights),
              starts=min(max(1, starts), len(fit.optima)),
              unconverged=int(np.sum(status == lbfgs.MAX_ITER)),
              **bootstrap.replicate_counts(params), summary=bootstrap.summarize(params, s['level']))
