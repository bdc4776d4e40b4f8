import numpy as np
import pytest

from lmjax.scaling import bootstrap, envelope, isoflop, laws, parametric, plots, table

P = laws.CHINCHILLA_APPROACH3
PNG = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def fitted():
  rng = np.random.default_rng(0)
  n, d, c = [], [], []
  for ci in np.geomspace(1e18, 1e21, 5):
    n_opt, _ = laws.compute_optimal(ci, P['A'], P['B'], P['alpha'], P['beta'])
    ns = n_opt * np.exp(np.linspace(-1.0, 1.0, 7))
    n, d, c = n + list(ns), d + list(ci / (6 * ns)), c + [ci] * 7
  n, d, c = map(np.array, (n, d, c))
  loss = laws.chinchilla_loss(n, d, **P) * np.exp(0.005 * rng.standard_normal(n.size))
  t = table.from_columns(dict(N=n, D=d, C=c, loss=loss, run=[f'r{i}' for i in range(len(n))]))
  starts = np.array([[6.0, 6.0, 0.34, 0.28, 0.5], [10.0, 10.0, 1.0, 1.0, 0.0]])
  chin = parametric.fit_chinchilla(t, starts=starts)
  kap = parametric.fit_kaplan(t, 'kaplan_c')
  iso = isoflop.fit_isoflop(t)
  return dict(t=t, chin=chin, chin_boot=bootstrap.bootstrap_parametric(chin, 30),
              kap=kap, kap_boot=bootstrap.bootstrap_parametric(kap, 30), iso=iso,
              iso_boot=bootstrap.bootstrap_isoflop(t, iso, 30))


def _is_png(path):
  with open(path, 'rb') as f:
    head = f.read(8)
  return head == PNG


@pytest.mark.slow  # renders every PNG
def test_every_plot_writes_a_png(fitted, tmp_path):
  f = fitted
  paths = [
      plots.chinchilla(f['t'], f['chin'], tmp_path / 'chinchilla.png'),
      plots.kaplan(f['t'], f['kap'], tmp_path / 'loss_vs_c.png', f['kap_boot'], f['chin']),
      plots.isoflop(f['t'], f['iso'], tmp_path / 'isoflop.png', f['iso_boot']),
      plots.frontier(tmp_path / 'frontier.png', f['t'].C, f['chin'], f['chin_boot'], f['iso'],
                     f['iso_boot']),
  ]
  for p in paths:
    assert _is_png(p)


def test_frontier_with_approach1_and_without_bootstrap(fitted, tmp_path):
  n, d, loss, run = [], [], [], []
  for i, size in enumerate(np.geomspace(1e8, 1e10, 6)):
    ds = np.geomspace(1e8, 1e22 / (6 * size), 10)
    n, d, run = n + [size] * 10, d + list(ds), run + [f'r{i}'] * 10
    loss += list(laws.chinchilla_loss(size, ds, **P))
  a1 = envelope.approach1(table.from_columns(dict(N=n, D=d, loss=loss, run=run)), ['run'])
  path = plots.frontier(tmp_path / 'f.png', fitted['t'].C, fitted['chin'], approach1_fit=a1)
  assert _is_png(path)
