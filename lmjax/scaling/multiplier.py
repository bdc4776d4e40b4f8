"""Compute multipliers: how much more (or less) compute one group of runs needs to reach a loss
than another.

Each group g (two presets, two sweeps, two datasets) is fitted with L_g(C) = E_g + A_g·C^(−α_g)
(the compute law with an irreducible term; Kaplan et al. 2020, Eq. 1.3 plus E as in Henighan et
al. 2020; E > 0, fitted on a log scale, as a loss cannot fall below zero), jointly, with the
asymptote shared (E_a = E_b: both recipes approach the same entropy of the text, the usual
assumption) or separate, as asked. Inverting, C_g(L) = (A_g/(L − E_g))^(1/α_g),
and the multiplier of b over a at a loss L is

    M(L) = C_b(L) / C_a(L),

the compute that b needs to reach the loss a reaches with C_a(L): M > 1 means b needs more.
At a budget C of a, M = C_b(L_a(C))/C. A loss at or below a group's asymptote is out of its
reach (M = inf, counted).

Only the runs on each group's compute frontier are fitted by default (the lower envelope of loss
against C, as for Kaplan's L(C)): the runs best for their compute, where compute within c_tol
(10%) of a run's counts as the same budget, so that of an IsoFLOP budget's runs, whose C are
within 10% of it, only the best is on the frontier, not also each that happened to cost a
little less. c_tol=0 gives the strict lower envelope (envelope.py). Runs of a group
with the same C (seeds of one N and D) are one point of the envelope, at their mean loss, and
every one of them is fitted: the frontier of one lucky seed would be biased low. The fit is
userlaw.fit_law with C measured from a reference C_ref (the geometric mean of the data), which
changes no optimum but keeps A and α from being nearly collinear; A is reported for C in FLOPs.
The bootstrap resamples every run (seeds included) within each group, takes each replicate's
own frontier of the runs it drew, and refits, so that the intervals carry both run-to-run
noise and which runs make the frontier; a replicate with fewer than 2 frontier points in a group
fails. Intervals are percentile intervals of M over replicates (Efron & Tibshirani 1993,
Ch. 13).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.scaling import bootstrap as resampling
from lmjax.scaling.parametric import FitError
from lmjax.scaling.userlaw import Law, LawFit, LawProblem, Param, bootstrap_weighted, fit_law


def _two_curves(p, x):
  """L = E_g + a_g·(C/C_ref)^(−α_g) for group g = x.G (0: a, 1: b); x.c: C/C_ref."""
  b = x.G > 0.5
  e = np.where(b, p.E_b, p.E_a)
  return e + np.where(b, p.a_b * x.c ** (-p.alpha_b), p.a_a * x.c ** (-p.alpha_a))


C_TOL = 0.1  # compute within 10% counts as the same budget (sweeps.BUDGET_RTOL)


def _law(loss_min, loss_max) -> Law:
  span = max(loss_max, 1e-3)
  return Law('two_power_c', _two_curves, inputs=('c', 'G'), params=dict(
      E_a=Param(1e-2 * loss_min, loss_min, log=True),  # E > 0: a cross-entropy's floor
      E_b=Param(1e-2 * loss_min, loss_min, log=True), a_a=Param(1e-3 * span, span, log=True),
      a_b=Param(1e-3 * span, span, log=True), alpha_a=Param(0.02, 1.0),
      alpha_b=Param(0.02, 1.0)))


@dataclasses.dataclass
class Multiplier:
  names: tuple            # the two groups' names (a, b)
  fit: LawFit             # the joint fit in units of C/C_ref
  c_ref: float
  shared_asymptote: bool
  rows: dict              # group name -> indices of the runs fitted (frontier)
  data: dict              # group name -> (c, loss) of every run given
  at: list                # one dict per stated loss or budget: loss, c_a, c_b, m, lo, hi, ...
  level: float

  @property
  def extrapolated(self) -> bool:
    """Whether the frontiers share no loss, so that a stated M extrapolates a group's L(C)."""
    return not shared_range(self)[2]

  def params(self, theta=None) -> dict:
    """Per group {E, A, alpha} with A for C in FLOPs (A = a·C_ref^α); theta: (R, free) rows
    give arrays over replicates."""
    t = self.fit.theta[None] if theta is None else theta
    v = self.fit.problem.values(t)
    out = {}
    for g, name in zip('ab', self.names):
      alpha = v[f'alpha_{g}'][:, 0]
      out[name] = dict(E=v[f'E_{g}'][:, 0], A=v[f'a_{g}'][:, 0] * self.c_ref ** alpha,
                       alpha=alpha)
    if theta is None:
      out = {k: {q: float(x[0]) for q, x in d.items()} for k, d in out.items()}
    return out

  def compute_to_reach(self, loss, theta=None) -> tuple:
    """(C_a(L), C_b(L)) for losses (m,): arrays (R, m) over the rows of theta (default: the
    fit); inf where L is at or below the group's asymptote."""
    return _compute_to_reach(self.fit, self.c_ref, loss, theta)

  def curve(self, loss) -> dict:
    """M(L) over losses (m,): value, lo, hi (bootstrap percentile interval), unreachable."""
    loss = np.atleast_1d(np.asarray(loss, np.float64))
    c_a, c_b = self.compute_to_reach(loss)
    with np.errstate(invalid='ignore', divide='ignore'):  # inf/inf below both asymptotes
      out = dict(loss=loss, value=(c_b / c_a)[0])
    if self.fit.boot is not None:
      ra, rb = self.compute_to_reach(loss, self.fit.boot['theta'])
      with np.errstate(invalid='ignore', divide='ignore'):
        m = rb / ra
      out['lo'], out['hi'] = _interval(m, self.level)
      out['unreachable'] = np.sum(~np.isfinite(m), 0)
    return out

  def to_json(self) -> dict:
    boot = self.fit.boot
    return dict(groups=list(self.names), shared_asymptote=self.shared_asymptote,
                c_ref=self.c_ref, params=self.params(), frontier_runs={
                    k: len(v) for k, v in self.rows.items()},
                at=self.at, level=self.level, fit=self.fit.to_json(),
                bootstrap=None if boot is None else dict(
                    replicates=boot['replicates'], failed=boot['failed'],
                    unconverged=boot['unconverged']))

  def text(self) -> str:
    a, b = self.names
    pct = f'{100 * self.level:g}%'
    e = 'one shared asymptote E' if self.shared_asymptote else 'an asymptote E per group'
    lines = [f'compute multiplier of {b} over {a}: L_g(C) = E_g + A_g·C^(-alpha_g), {e}; '
             f'M = C_{b}(L)/C_{a}(L), > 1: {b} needs more compute']
    for name, p in self.params().items():
      lines.append(f'  {name:<16} E={p["E"]:.4g} A={p["A"]:.4g} alpha={p["alpha"]:.4g} '
                   f'({len(self.rows[name])} frontier runs of {len(self.data[name][0])})')
    lines.append(f'  {"loss":>8} {"C_" + a:>11} {"C_" + b:>11} {"M":>9}   {pct} interval')
    fmt = lambda v: '—' if v is None or not np.isfinite(v) else f'{v:.4g}'
    for r in self.at:
      iv = f'[{fmt(r["lo"])}, {fmt(r["hi"])}]' if 'lo' in r else ''
      miss = f' ({r["unreachable"]} replicates cannot reach it)' if r.get('unreachable') else ''
      lines.append(f'  {r["loss"]:>8.4g} {fmt(r["c_a"]):>11} {fmt(r["c_b"]):>11} '
                   f'{fmt(r["m"]):>9}   {iv}{miss}')
    if self.fit.boot:
      boot = self.fit.boot
      lines.append(f'  bootstrap: {boot["replicates"]} replicates resampled within each group: '
                   f'{boot["failed"]} failed, {boot["unconverged"]} unconverged')
    return '\n'.join(lines)


def _compute_to_reach(fit, c_ref, loss, theta=None):
  t = fit.theta[None] if theta is None else theta
  v = fit.problem.values(t)
  loss = np.asarray(loss, np.float64)
  loss = loss.reshape(1, -1) if loss.ndim < 2 else loss  # (m,) for every row, or (R, m)
  out = []
  for g in 'ab':
    above = loss - v[f'E_{g}']
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
      c = c_ref * (v[f'a_{g}'] / above) ** (1.0 / v[f'alpha_{g}'])
    out.append(np.where(above > 0, c, np.inf))
  return tuple(out)


def _interval(samples, level):
  """Percentile interval over axis 0; a non-finite sample counts as +inf (out of reach)."""
  big = np.finfo(np.float64).max  # percentile interpolates inf with inf to NaN; this to inf
  s = np.where(np.isfinite(samples), samples, big)
  q = [50 * (1 - level), 50 * (1 + level)]
  lo, hi = np.percentile(s, q[0], axis=0), np.percentile(s, q[1], axis=0)
  # A quantile between a finite sample and an out-of-reach one is out of reach too.
  return np.where(lo >= 1e300, np.inf, lo), np.where(hi >= 1e300, np.inf, hi)


def _group(c, loss, name):
  c = np.asarray(c, np.float64).ravel()
  loss = np.asarray(loss, np.float64).ravel()
  if c.shape != loss.shape:
    raise FitError(f'group {name}: {c.size} compute values for {loss.size} losses')
  if c.size == 0 or not (np.all(np.isfinite(c)) and np.all(c > 0) and
                         np.all(np.isfinite(loss)) and np.all(loss > 0)):
    raise FitError(f'group {name}: need runs with finite positive compute and loss')
  return c, loss


def compute_multiplier(c_a, loss_a, c_b, loss_b, *, names=('a', 'b'), shared_asymptote=True,
                       frontier=True, losses=None, budgets=None, bootstrap=1000, seed=0,
                       level=0.95, starts=256, objective='huber', c_tol=C_TOL) -> Multiplier:
  """The compute multiplier of group b over group a (see module doc).

  losses: losses at which to state M (default: `stated_losses`, three inside the frontier losses
  both groups reach); budgets: compute budgets of group a at which to state it
  (M = C_b(L_a(C))/C).
  """
  names = tuple(str(n) for n in names)
  if not (np.isfinite(c_tol) and c_tol >= 0):
    raise FitError(f'c_tol={c_tol}: a relative compute tolerance >= 0')
  data = {names[0]: _group(c_a, loss_a, names[0]), names[1]: _group(c_b, loss_b, names[1])}
  rows = {}
  for name, (c, loss) in data.items():
    on, points = frontier_mask(c, loss, c_tol=c_tol) if frontier else \
        (np.ones(len(c), bool), len(set(c)))
    rows[name] = np.nonzero(on)[0]
    if points < 2:
      raise FitError(f'group {name}: {points} point(s) on its compute frontier; need at least '
                     '2 (more budgets)')
  c = np.concatenate([data[n][0][rows[n]] for n in names])
  loss = np.concatenate([data[n][1][rows[n]] for n in names])
  group = np.concatenate([np.full(len(rows[n]), float(i)) for i, n in enumerate(names)])
  c_ref = float(np.exp(np.mean(np.log(c))))
  law = _law(float(loss.min()), float(loss.max()))
  tied = {'E_b': 'E_a'} if shared_asymptote else None
  fit = fit_law(law, dict(c=c / c_ref, G=group), loss, objective=objective, tied=tied,
                starts=starts, seed=seed, bootstrap=0, level=level)
  if bootstrap:
    if bootstrap < 2:
      raise FitError(f'bootstrap={bootstrap}: 0 (none) or at least 2 replicates')
    fit.boot = _bootstrap(fit, data, names, c_ref, frontier, c_tol, bootstrap, seed)
  out = Multiplier(names=names, fit=fit, c_ref=c_ref, shared_asymptote=shared_asymptote,
                   rows=rows, data=data, at=[], level=level)
  out.at = _stated(out, losses, budgets)
  return out


def frontier_mask(c, loss, weights=None, c_tol=C_TOL) -> tuple:
  """(mask over runs, count of points): the runs whose C-cell (runs of equal C) is on the
  frontier of cell mean losses: no other cell has a lower mean at a compute at most
  (1 + c_tol)× its own (c_tol=0: the lower envelope). `weights` (draw counts, 0: not drawn)
  weight the means and leave undrawn runs out."""
  c, loss = np.asarray(c, np.float64), np.asarray(loss, np.float64)
  w = np.ones(len(c)) if weights is None else np.asarray(weights, np.float64)
  _, cell = np.unique(np.round(np.log(c), 9), return_inverse=True)
  k = int(cell.max()) + 1
  wsum = np.bincount(cell, w, k)
  have = np.nonzero(wsum > 0)[0]
  mean = np.bincount(cell, w * loss, k)[have] / wsum[have]
  cell_c = np.bincount(cell, w * c, k)[have] / wsum[have]
  beaten = (mean[None, :] < mean[:, None]) & (cell_c[None, :] <= cell_c[:, None] * (1 + c_tol))
  on = np.zeros(k, bool)
  on[have[~beaten.any(1)]] = True
  return on[cell] & (w > 0), int(on.sum())


def _bootstrap(fit, data, names, c_ref, frontier, c_tol, replicates, seed) -> dict:
  """fit.boot over every run given: resampled within each group, each replicate fitted on its
  own frontier (module doc)."""
  c = np.concatenate([data[n][0] for n in names])
  loss = np.concatenate([data[n][1] for n in names])
  group = np.concatenate([np.full(len(data[n][0]), float(i)) for i, n in enumerate(names)])
  p = fit.problem
  problem = LawProblem(p.law, dict(c=c / c_ref, G=group), loss, p.objective, p.delta, p.fixed,
                       p.tied)
  counts = resampling.resample_counts_within(group, replicates, np.random.default_rng(seed))
  weights = np.zeros_like(counts)
  failed = np.zeros(replicates, bool)
  for i in range(len(names)):
    idx = np.nonzero(group == i)[0]
    for r in range(replicates):
      on, points = frontier_mask(c[idx], loss[idx], counts[r, idx], c_tol) if frontier else \
          (counts[r, idx] > 0, 2)
      weights[r, idx] = counts[r, idx] * on
      failed[r] |= points < 2
  boot = bootstrap_weighted(fit, weights, problem=problem, failed=failed)
  boot['failed'] = max(boot['failed'], int(failed.sum()))
  return boot


def shared_range(m: Multiplier) -> tuple[float, float, bool]:
  """(lo, hi, overlap): the range of frontier losses that both groups reached; when their
  frontiers share no loss, the gap between them (overlap False: there at least one group's L(C)
  is extrapolated)."""
  fr = [m.data[n][1][m.rows[n]] for n in m.names]
  lo, hi = max(f.min() for f in fr), min(f.max() for f in fr)
  return (float(lo), float(hi), True) if lo < hi else (float(hi), float(lo), False)


def stated_losses(m: Multiplier, count=3, decimals=2) -> list[float]:
  """The losses a multiplier is stated at unless others are asked for, the one rule for
  launch.fit's users, notebooks and the studies: `count` evenly spaced inside `shared_range`
  (its ends left out: only one run of each frontier reaches them), rounded to `decimals` places
  (None: not rounded), distinct and ascending."""
  lo, hi, _ = shared_range(m)
  inner = np.linspace(lo, hi, count + 2)[1:-1]
  if decimals is None:
    return [float(x) for x in inner]
  return sorted({round(float(x), decimals) for x in inner})


def _stated(m: Multiplier, losses, budgets) -> list:
  if budgets is not None:
    budgets = np.atleast_1d(np.asarray(budgets, np.float64))
    p = m.params()[m.names[0]]
    loss = p['E'] + p['A'] * budgets ** (-p['alpha'])
  else:
    loss = np.asarray(stated_losses(m) if losses is None else np.atleast_1d(losses), float)
  c_a, c_b = m.compute_to_reach(loss)
  out = []
  theta = m.fit.boot['theta'] if m.fit.boot is not None else None
  if theta is not None:
    if budgets is None:
      ra, rb = m.compute_to_reach(loss, theta)
    else:  # a's loss at each budget moves with each replicate
      v = m.fit.problem.values(theta)
      la = v['E_a'] + v['a_a'] * (budgets / m.c_ref) ** (-v['alpha_a'])
      ra = np.broadcast_to(budgets, la.shape)
      rb = _compute_to_reach(m.fit, m.c_ref, la, theta)[1]
    with np.errstate(invalid='ignore', divide='ignore'):
      ms = rb / ra
    lo, hi = _interval(ms, m.level)
  for j in range(len(loss)):
    row = dict(loss=float(loss[j]), c_a=float(c_a[0, j]), c_b=float(c_b[0, j]),
               m=float(c_b[0, j] / c_a[0, j]))
    if budgets is not None:
      row['budget'] = float(budgets[j])
    if theta is not None:
      row.update(lo=float(lo[j]), hi=float(hi[j]),
                 unreachable=int(np.sum(~np.isfinite(ms[:, j]))))
    out.append(row)
  return out
