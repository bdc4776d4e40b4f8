"""Laws of the user's own form (lmjax/scaling/userlaw.py) and the published laws written that
way (law_examples.py): recovery on synthetic data, agreement with the built-in Kaplan fitter,
fixed and tied parameters, one-line errors, and the datablations fit against its notebook."""
from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import law_examples as ex
from lmjax.scaling import parametric, table
from lmjax.scaling.parametric import FitError
from lmjax.scaling.userlaw import Law, LawProblem, Param, Values, fit_law

DATABLATIONS = (Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling' /
                'datablations' / 'datablations_runs.csv')
KAPLAN_TRUE = dict(N_c=8.8e8, D_c=5.4e9, alpha_N=0.228, alpha_D=0.285)


def _kaplan_data(seed, n=40, noise=0.005):
  rng = np.random.default_rng(seed)
  x = dict(N=np.exp(rng.uniform(np.log(1e4), np.log(1e6), n)),
           D=np.exp(rng.uniform(np.log(1e6), np.log(1e8), n)))
  p = Values({k: np.array([[v]]) for k, v in KAPLAN_TRUE.items()})
  return x, ex.KAPLAN_ND.fn(p, Values(x))[0] * np.exp(rng.normal(0, noise, n))


def _one_line(fn):
  with pytest.raises(FitError) as e:
    fn()
  assert '\n' not in str(e.value)
  return str(e.value)


def test_kaplan_nd_is_recovered_within_its_bootstrap_interval():
  x, loss = _kaplan_data(0)
  fit = fit_law(ex.KAPLAN_ND, x, loss, bootstrap=200, seed=1)
  s = fit.boot['summary']
  for k, v in KAPLAN_TRUE.items():
    assert s[k]['lo'] <= v <= s[k]['hi'], (k, v, s[k])
    assert fit.params[k] == pytest.approx(v, rel=0.25), k
  assert fit.convergence['converged'] and fit.boot['failed'] == 0
  pred = fit.predict(dict(N=[1e5], D=[1e7]))
  truth = ex.KAPLAN_ND.fn(Values({k: np.array([[v]]) for k, v in KAPLAN_TRUE.items()}),
                          Values(N=np.array([1e5]), D=np.array([1e7])))[0, 0]
  assert pred['lo'][0] <= truth <= pred['hi'][0]
  assert abs(pred['value'][0] / truth - 1) < 0.01


def test_a_one_term_law_equals_the_builtin_kaplan_fit():
  """The same model and objective through the built-in fitter (analytic gradients, log-sum-exp)
  and through a user law (central differences): the same optimum."""
  rng = np.random.default_rng(3)
  n = np.exp(rng.uniform(np.log(1e5), np.log(1e9), 30))
  loss = (8.8e13 / n) ** 0.076 * np.exp(rng.normal(0, 0.01, 30))
  t = table.from_columns(dict(N=n, D=np.full(30, 1e9), loss=loss))
  builtin = parametric.fit_kaplan(t, 'kaplan_n', frontier=False)
  law = Law('kaplan_n', lambda p, x: (p.N_c / x.N) ** p.alpha_N, inputs=('N',),
            params=dict(N_c=Param(1e3, 1e16, log=True), alpha_N=Param(0.01, 1.0)))
  mine = fit_law(law, dict(N=n), loss, bootstrap=0)
  assert mine.params['alpha_N'] == pytest.approx(builtin.params['alpha_N'], rel=1e-5)
  assert mine.params['N_c'] == pytest.approx(builtin.params['N_c'], rel=1e-3)
  assert mine.objective == pytest.approx(builtin.objective, rel=1e-7)


def test_fixed_and_tied_parameters_and_the_lsq_objective():
  rng = np.random.default_rng(0)
  n = np.exp(rng.uniform(np.log(1e5), np.log(1e8), 30))
  d = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 30))
  loss = 1.7 + 400 / n ** 0.33 + 900 / d ** 0.33 + rng.normal(0, 0.002, 30)
  law = Law('chin', lambda p, x: p.E + p.A / x.N ** p.alpha + p.B / x.D ** p.beta,
            inputs=('N', 'D'), params=dict(E=(0.5, 3.0), A=(1, 1e4, 'log'), B=(1, 1e4, 'log'),
                                           alpha=(0.05, 1.0), beta=(0.05, 1.0)))
  fit = fit_law(law, dict(N=n, D=d), loss, fixed={'E': 1.7}, tied={'beta': 'alpha'},
                objective='lsq', bootstrap=50)
  assert fit.problem.free == ('A', 'B', 'alpha')
  assert fit.params['E'] == 1.7 and fit.params['beta'] == fit.params['alpha']
  assert fit.params['alpha'] == pytest.approx(0.33, abs=0.02)
  assert np.array_equal(fit.boot['params']['beta'], fit.boot['params']['alpha'])
  assert 'E' not in fit.boot['params']
  text = fit.text()
  assert '(fixed)' in text and '(tied to alpha)' in text and 'spread' in text


def test_bad_laws_options_and_data_fail_in_one_line():
  x, loss = _kaplan_data(0, n=10)
  law = ex.KAPLAN_ND
  assert 'no parameter' in _one_line(lambda: fit_law(law, x, loss, fixed={'Q': 1}))
  assert 'untied' in _one_line(lambda: fit_law(law, x, loss, tied={'alpha_N': 'alpha_N'}))
  assert 'not both' in _one_line(lambda: fit_law(law, x, loss, fixed={'N_c': 1.0},
                                                 tied={'N_c': 'D_c'}))
  assert 'no input' in _one_line(lambda: fit_law(law, dict(N=x['N']), loss))
  assert 'more runs than' in _one_line(lambda: fit_law(law, {k: v[:4] for k, v in x.items()},
                                                       loss[:4]))
  assert 'loss <= 0' in _one_line(lambda: fit_law(law, x, np.r_[loss[:-1], -1.0]))
  assert 'objective' in _one_line(lambda: fit_law(law, x, loss, objective='l1'))
  assert 'log=True' in _one_line(lambda: Param(0.0, 1.0, log=True))
  assert 'Param' in _one_line(lambda: Law('bad', lambda p, x: 1, dict(a='x'), ('N',)))


@pytest.mark.skipif(not DATABLATIONS.is_file(), reason='needs ../shared/data/scaling')
def test_datablations_objective_and_published_decay_constants():
  """Muennighoff et al. 2023's decay constants on the 182 runs their notebook fits, base constants
  fixed: our objective at the published constants is the minimum the notebook printed, and a fit
  from the notebook's first start lands on the published constants. A global multi-start search
  finds a lower objective elsewhere on a flat valley (R_D* ≈ 95, R_N* ≈ 1.7): the published
  constants are a local minimum, and the data barely identify them."""
  x, loss, names = ex.datablations_runs(str(DATABLATIONS))
  assert len(loss) == 182 and len(set(names)) == 182
  law = ex.DATA_CONSTRAINED
  problem = LawProblem(law, x, loss, fixed=ex.DATABLATIONS_BASE)
  published = np.array([[ex.DATABLATIONS_PUBLISHED['R_D_star'],
                         ex.DATABLATIONS_PUBLISHED['R_N_star']]])
  f_published = problem.value_and_grad(problem.to_internal(published))[0][0]
  assert f_published == pytest.approx(ex.DATABLATIONS_NOTEBOOK_OBJECTIVE, rel=1e-5)
  local = fit_law(law, x, loss, fixed=ex.DATABLATIONS_BASE, bootstrap=0,
                  start_points=ex.DATABLATIONS_NOTEBOOK_STARTS[:1])
  for k, v in ex.DATABLATIONS_PUBLISHED.items():
    assert local.params[k] == pytest.approx(v, rel=5e-3), k
  best = fit_law(law, x, loss, fixed=ex.DATABLATIONS_BASE, bootstrap=0, starts=64)
  assert best.objective <= local.objective <= f_published * (1 + 1e-6)
