import numpy as np

from lmjax.scaling import lbfgs


def rosenbrock(x, index):
  a, b = x[:, 0], x[:, 1]
  f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
  g = np.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], 1)
  return f, g


def test_rosenbrock_from_many_starts():
  rng = np.random.default_rng(0)
  x0 = rng.uniform(-2, 2, size=(50, 2))
  # + 1 keeps the minimum away from 0, where relative tolerances mean nothing.
  res = lbfgs.minimize(lambda x, ix: (rosenbrock(x, ix)[0] + 1.0, rosenbrock(x, ix)[1]), x0,
                       ftol=1e-15, gtol=1e-10, max_iter=1000)
  np.testing.assert_allclose(res.x, 1.0, atol=1e-5)
  assert (res.status != lbfgs.MAX_ITER).all()


def test_scale_free_stopping():
  """The same problem times 1e-6 (a mean instead of a sum) takes the same steps."""
  scales = np.array([1.0, 1e-6])

  def fun(x, index):
    f, g = rosenbrock(x, index)
    return (f + 1.0) * scales[index], g * scales[index][:, None]

  res = lbfgs.minimize(fun, np.array([[-1.2, 1.0], [-1.2, 1.0]]), ftol=1e-14, gtol=1e-12)
  np.testing.assert_allclose(res.x[0], res.x[1], rtol=1e-9)
  assert res.nit[0] == res.nit[1]


def test_each_problem_stops_on_its_own():
  """A quadratic converges in a few steps while Rosenbrock rows keep going."""
  def fun(x, index):
    f, g = rosenbrock(x, index)
    quad = index == 0
    f = np.where(quad, 1.0 + np.sum(x * x, 1), f + 1.0)
    g = np.where(quad[:, None], 2 * x, g)
    return f, g

  res = lbfgs.minimize(fun, np.array([[3.0, -4.0], [-1.2, 1.0]]), ftol=1e-15, gtol=1e-12)
  assert res.nit[0] < 10 < res.nit[1]
  assert res.nfev[0] < res.nfev[1]


def test_max_iter_and_infeasible_points():
  res = lbfgs.minimize(rosenbrock, np.array([[-1.2, 1.0]]), max_iter=3)
  assert res.status[0] == lbfgs.MAX_ITER and res.nit[0] == 3

  def walled(x, index):  # inf beyond a = 2: the line search must step back
    f, g = rosenbrock(x, index)
    return np.where(x[:, 0] > 2, np.inf, f + 1.0), g

  res = lbfgs.minimize(walled, np.array([[1.9, 3.0]]), ftol=1e-15, gtol=1e-10, max_iter=500)
  np.testing.assert_allclose(res.x[0], 1.0, atol=1e-5)
