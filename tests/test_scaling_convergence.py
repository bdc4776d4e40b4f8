from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from lmjax.scaling import convergence, laws, lbfgs, table
from lmjax.scaling.objective import LseProblem

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3
HOFFMANN = np.array([np.log(P['A']), np.log(P['B']), P['alpha'], P['beta'], np.log(P['E'])])


def _problem(reduction='sum'):
  rng = np.random.default_rng(0)
  n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e8, 1e11, 8)))
  truth = dict(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
  loss = laws.chinchilla_loss(n, d, **truth) * np.exp(0.005 * rng.standard_normal(n.size))
  return LseProblem(np.log(np.stack([n, d])), np.log(loss), with_e=True, reduction=reduction)


def _scipy_default(problem, x0):
  fun = lambda th: float(problem.value_and_grad(problem.to_internal(th))[0][0])
  return minimize(fun, x0, method='L-BFGS-B')  # default tolerances, as in the papers


@pytest.mark.parametrize('reduction', ['sum', 'mean'])
def test_check_fires_on_scipy_default_tolerances(reduction):
  """SciPy's absolute tolerances stop on the small Huber objective (Besiroglu et al. 2024)."""
  problem = _problem(reduction)
  result = _scipy_default(problem, HOFFMANN)
  report = convergence.check(problem, result.x)
  assert not report['converged'] and report['rel_improvement'] > 1e-5  # vs rtol 1e-8
  assert report['message'].startswith('not converged')


def test_check_fires_on_a_deliberately_loose_tolerance():
  problem = _problem()
  x0 = problem.to_internal(HOFFMANN)
  loose = lbfgs.minimize(lambda x, ix: problem.value_and_grad(x), x0, ftol=1e-2, gtol=0.0)
  assert not convergence.check(problem, problem.to_natural(loose.x)[0])['converged']
  tight = lbfgs.minimize(lambda x, ix: problem.value_and_grad(x), x0)
  report = convergence.check(problem, problem.to_natural(tight.x)[0])
  assert report['converged'] and report['rel_improvement'] <= 1e-8


@needs_shared
def test_hoffmann_estimates_are_an_early_stop_on_epoch_data():
  """From Hoffmann's constants, SciPy on the mean objective barely moves; the check says so."""
  t = table.load_runs(str(SCALING / 'epoch_chinchilla' / 'svg_extracted_data.csv'))
  t = t.drop_highest_loss(5)
  problem = LseProblem(np.log(np.stack([t.N, t.D])), np.log(t.loss), with_e=True,
                       reduction='mean')
  result = _scipy_default(problem, HOFFMANN)
  assert np.max(np.abs(result.x - HOFFMANN)) < 0.01  # stopped next to where it started
  report = convergence.check(problem, result.x)
  assert not report['converged'] and report['rel_improvement'] > 0.1
