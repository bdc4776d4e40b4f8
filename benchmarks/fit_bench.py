"""Speed of the Approach-3 grid fit: python benchmarks/fit_bench.py [--before_starts=K].

On the 240 points of the Epoch AI reconstruction of Chinchilla's Fig. 4 (Besiroglu et al.
2024; the 5 highest losses dropped) and Hoffmann et al. 2022's 4,500-point grid of starts:
(a) before: a plain loop of scipy.optimize.minimize(method='L-BFGS-B') with default options and
    finite-difference gradients, one start at a time, as in Hoffmann's description and Epoch's
    notebook. --before_starts=K times every (4500/K)-th start only and multiplies the time by
    4500/K (stated in the output);
(b) after: lmjax.scaling.parametric.fit_problem, all starts at once (batched numpy L-BFGS); its
    best objective must not be above the loop's by more than 1e-9 relative; both optima are
    then restarted with tight tolerances and compared;
(c) a 1,000-replicate bootstrap of that fit (lmjax.scaling.bootstrap).
Prints one JSON line per measurement and a table. Wall-clock times on a shared machine: run it
when the machine is otherwise idle, and compare numbers from the same run only.
"""
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from lmjax.core.cli import fail, parse_flags  # noqa: E402
from lmjax.scaling import bootstrap, parametric, table  # noqa: E402
from lmjax.scaling.objective import LseProblem, huber  # noqa: E402

_BEFORE = flags.DEFINE_integer('before_starts', 4500, 'starts of the scipy loop to time '
                               '(evenly spaced over the grid); the time is scaled to 4,500')
_REPLICATES = flags.DEFINE_integer('replicates', 1000, 'bootstrap replicates')
_DATA = flags.DEFINE_string('data', os.path.join(ROOT, '..', 'shared', 'data', 'scaling',
                                                 'epoch_chinchilla', 'svg_extracted_data.csv'),
                            'the Epoch AI CSV')


def scipy_loop(log_n, log_d, log_loss, starts, delta=1e-3):
  """The 'before': one scipy L-BFGS-B run per start, default options, numeric gradients."""
  from scipy.optimize import minimize

  def objective(p):
    a, b, alpha, beta, e = p
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    return float(np.sum(huber(log_loss - pred, delta)))

  results = []
  for x0 in starts:
    r = minimize(objective, x0, method='L-BFGS-B')
    results.append((float(r.fun), r.x, bool(r.success)))
  return results


def _line(**kw):
  print(json.dumps(kw), flush=True)
  return kw


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  k = _BEFORE.value
  if not 1 <= k <= 4500:
    fail(f'--before_starts={k}: must be in 1..4500')
  if _REPLICATES.value < 2:
    fail(f'--replicates={_REPLICATES.value}: must be at least 2')
  try:
    runs = table.load_runs(_DATA.value)
  except table.TableError as e:
    fail(str(e))
  runs = runs.drop_highest_loss(5)
  grid = parametric.hoffmann_grid()
  log_n, log_d, log_loss = np.log(runs.N), np.log(runs.D), np.log(runs.loss)
  rows = []

  pick = np.unique(np.linspace(0, len(grid) - 1, k).round().astype(int))
  t0, c0 = time.perf_counter(), time.process_time()
  before = scipy_loop(log_n, log_d, log_loss, grid[pick])
  t_before, cpu_before = time.perf_counter() - t0, time.process_time() - c0
  scale = len(grid) / len(pick)
  best_before = min(before, key=lambda r: r[0])
  rows.append(_line(what='before: scipy L-BFGS-B loop', starts_timed=len(pick),
                    seconds_timed=round(t_before, 2),
                    seconds_for_4500=round(t_before * scale, 2),
                    cpu_seconds_for_4500=round(cpu_before * scale, 2),
                    extrapolated=bool(len(pick) < len(grid)), best_objective=best_before[0],
                    starts_reporting_success=int(sum(r[2] for r in before))))

  problem = LseProblem(np.stack([log_n, log_d]), log_loss, with_e=True)
  t0, c0 = time.perf_counter(), time.process_time()
  fast = parametric.fit_problem(problem, grid, check=False)
  t_fast, cpu_fast = time.perf_counter() - t0, time.process_time() - c0
  f_fast = fast['objective']
  f_fast_subset = float(np.min(fast['result'].f[pick]))
  rel = (f_fast - best_before[0]) / best_before[0]
  rows.append(_line(what='after: batched numpy L-BFGS', starts=len(grid),
                    seconds=round(t_fast, 2), cpu_seconds=round(cpu_fast, 2),
                    speedup=round(t_before * scale / t_fast, 1),
                    cpu_speedup=round(cpu_before * scale / cpu_fast, 1),
                    best_objective=f_fast, best_objective_same_starts_as_before=f_fast_subset,
                    rel_diff_vs_before=rel, not_worse_within_1e9=bool(rel <= 1e-9),
                    starts_at_best=fast['n_at_best']))

  # Same optimum: restart both bests with tight tolerances and compare.
  polish = parametric.fit_problem(problem, np.stack([best_before[1], fast['theta']]),
                                  ftol=1e-15, gtol=0.0, check=False)['result']
  th = problem.to_natural(polish.x)
  rows.append(_line(what='same optimum check (both restarted, ftol 1e-15)',
                    objective_before=float(polish.f[0]), objective_after=float(polish.f[1]),
                    rel_diff=float(abs(polish.f[0] - polish.f[1]) / polish.f[1]),
                    max_param_diff=float(np.max(np.abs(th[0] - th[1])))))

  fit = parametric.fit_chinchilla(runs)
  t0, c0 = time.perf_counter(), time.process_time()
  boot = bootstrap.bootstrap_parametric(fit, _REPLICATES.value, seed=0)
  t_boot, cpu_boot = time.perf_counter() - t0, time.process_time() - c0
  se = bootstrap.summarize(boot['params'])
  rows.append(_line(what=f'bootstrap: {_REPLICATES.value} replicates x {boot["starts"]} starts',
                    seconds=round(t_boot, 2), cpu_seconds=round(cpu_boot, 2),
                    unconverged=boot['unconverged'],
                    se_alpha=se['alpha']['se'], se_beta=se['beta']['se']))

  print()
  print(f'{"measurement":<48}{"wall s":>9}{"CPU s":>9}')
  extrap = f' (x{scale:.3g} from {len(pick)})' if len(pick) < len(grid) else ''
  print(f'{"scipy L-BFGS-B loop, 4,500 starts" + extrap:<48}{t_before * scale:>9.2f}'
        f'{cpu_before * scale:>9.2f}')
  print(f'{"batched L-BFGS, 4,500 starts":<48}{t_fast:>9.2f}{cpu_fast:>9.2f}   '
        f'{t_before * scale / t_fast:.0f}x faster (wall), {cpu_before * scale / cpu_fast:.0f}x '
        '(CPU)')
  print(f'{f"bootstrap, {_REPLICATES.value} replicates":<48}{t_boot:>9.2f}{cpu_boot:>9.2f}')
  print(f'best objective: before {best_before[0]:.12g}, after {f_fast:.12g} '
        f'(relative difference {rel:+.2e})')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
