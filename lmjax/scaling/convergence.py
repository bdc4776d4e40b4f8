"""Did a fit converge? A check that works on any fitted point, ours or another optimiser's.

Two numbers at the reported optimum θ of an LseProblem (see objective.py):
- `rel_grad` = max_j |∂F/∂θ_j| / |F|, in the centred coordinates the optimiser uses;
- `rel_improvement`: L-BFGS is restarted from θ with tight tolerances (ftol 1e-15,
  `probe_iter` iterations) and this is how much, relative to F, the objective still falls.
The fit is called converged when the restart gains at most max(rtol·|F|, floor) (rtol 1e-8),
floor being the objective of residuals of 1e-12 in every run: a fit to exact data has F ≈ 0,
and float64 cannot resolve gains below the floor. Both numbers are relative to max(|F|, floor).

The pitfall this guards against (Besiroglu et al. 2024, and the 'loss scale' experiment of
their analysis notebook): SciPy's L-BFGS-B stops when
the objective falls by less than 2.2e-9·max(|F|, 1) per step, or when every gradient entry is
below 1e-5. The summed Huber objective of the Chinchilla fit is about 1e-3, and its mean about
4e-6, so both tests pass long before the optimum; the restart then still finds a large decrease.
"""
from __future__ import annotations

import numpy as np

from lmjax.scaling import lbfgs


def check(problem, theta_natural, weights=None, rtol=1e-8, probe_iter=300) -> dict:
  """Convergence report for natural parameters theta (P,) of `problem`; see module doc."""
  x = problem.to_internal(np.asarray(theta_natural, np.float64).reshape(1, -1))
  f, g = problem.value_and_grad(x, weights)
  f0 = float(f[0])
  scale = max(abs(f0), problem.objective_floor())
  rel_grad = float(np.max(np.abs(g[0])) / scale) if scale else float('inf')
  probe = lbfgs.minimize(lambda xx, ix: problem.value_and_grad(xx, weights), x, ftol=1e-15,
                         gtol=0.0, max_iter=probe_iter)
  f1 = float(min(probe.f[0], f0))
  floor = problem.objective_floor()
  rel_improvement = (f0 - f1) / max(abs(f0), floor)
  converged = bool(np.isfinite(f0) and f0 - f1 <= max(rtol * abs(f0), floor))
  message = ('converged' if converged else
             f'not converged: restarting lowers the objective by {rel_improvement:.2e} '
             f'(relative; allowed {rtol:.0e})')
  return dict(converged=converged, objective=f0, rel_grad=rel_grad,
              probe_objective=f1, rel_improvement=float(rel_improvement), rtol=rtol,
              message=message)
