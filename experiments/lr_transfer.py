"""The lr-transfer study in one command (experiments/README.md, study 2):

  python -m experiments.lr_transfer [--workdir=runs/lr_transfer] [--parallel=2]

1. the lr sweep at three widths under sp and mup (experiments/sweeps/lr_transfer.py) in
   WORKDIR/transfer;
2. the (lr, batch size) grid at three budgets under mup (experiments/sweeps/hparam_laws.py) in
   WORKDIR/laws;
3. the analysis: the optimal lr's shift in octaves per doubling of width with its bootstrap
   interval (lmjax.scaling.lr_transfer), η_opt(C) and B_opt(C) with theirs
   (lmjax.scaling.hparams), figures and results.md in WORKDIR/results, the tables printed.

Run again, it does only what is missing, like launch.sweep. A diverged run is a result (that lr
is too high), not a failure. Exit status: 0 done; 1 a run failed or the analysis could not fit;
2 a bad flag; 75 stopped by SIGTERM/SIGINT with every run saved.
"""
import os
import sys

from absl import flags

from lmjax.core.cli import fail, run
from lmjax.core.errors import EXIT_FAILED, EXIT_OK

_WORKDIR = flags.DEFINE_string('workdir', 'runs/lr_transfer', 'The study\'s directory: '
                               'transfer/, laws/ and results/.')
_PARALLEL = flags.DEFINE_integer('parallel', 2, 'Runs at once.')
_CPUS = flags.DEFINE_integer('cpus_per_run', 1, 'Pin each run to this many CPU cores (0: no '
                             'pinning).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates (at least 2).')


def _sweep_phase(sweep, workdir):
  from lmjax.sweeps.local import run_local
  from lmjax.sweeps.sweepdir import SweepDir
  code = run_local(sweep, workdir, _PARALLEL.value, _CPUS.value)
  if code == EXIT_OK:
    return
  sweep_dir = SweepDir.open(workdir, sweep, create=False)
  if all(sweep_dir.state(r.name) in ('done', 'diverged') for r in sweep.runs):
    return
  print(f'{sweep.name}: not every run finished (exit {code}); the same command continues it',
        file=sys.stderr)
  sys.exit(code)


def _curves_figure(runs, shifts):
  """Loss against lr, one panel per parametrization, one line per width (seed means, each
  seed's runs as dots), the fitted optimum marked where there is one."""
  from matplotlib import colormaps
  from lmjax.core import figures
  params = sorted(runs['model.parametrization'].unique(), reverse=True)
  fig, axes = figures.figure(ncols=len(params), width=4.6, height=3.6, sharey=True)
  widths = sorted(runs['model.d_model'].unique())
  for ax, p in zip(axes, params):
    mine = runs[runs['model.parametrization'] == p]
    for i, w in enumerate(widths):
      colour = colormaps['viridis'](i / max(len(widths) - 1, 1))
      cell = mine[mine['model.d_model'] == w]
      means = cell.groupby('optim.lr')['loss'].mean()
      ax.plot(cell['optim.lr'], cell['loss'], '.', color=colour, alpha=0.4)
      ax.plot(means.index, means.values, '-', color=colour, label=f'd_model {w}')
      shift = shifts.get(p)
      if shift is not None:
        o = shift.optima[list(shift.widths).index(w)]
        if not o.edge:
          ax.plot([o.x], [o.loss], 'v', color=colour, ms=8)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('peak learning rate')
    ax.set_title({'sp': 'SP', 'mup': 'μP (base d_model 32)'}.get(p, p))
    ax.legend(fontsize=8)
  axes[0].set_ylabel('final eval loss (nats per byte)')
  return fig


def _jsonable(x):
  return x.tolist() if hasattr(x, 'tolist') else float(x)


def analyse(workdir, bootstrap=1000) -> str:
  """Fits, figures and WORKDIR/results/results.md; returns the markdown. A fit that the runs
  cannot support (an optimum at the grid's edge) is reported as such, not an error."""
  from lmjax import analysis
  from lmjax.core import atomic, figures
  out = os.path.join(workdir, 'results')
  os.makedirs(out, exist_ok=True)
  runs = analysis.finished(analysis.load(os.path.join(workdir, 'transfer')).runs)
  shifts, problems = {}, {}
  for p in sorted(runs['model.parametrization'].unique(), reverse=True):
    try:
      shifts[p] = analysis.lr_shift(runs[runs['model.parametrization'] == p],
                                    bootstrap=bootstrap)
    except analysis.AnalysisError as e:
      problems[p] = str(e)
  figures.write_png(_curves_figure(runs, shifts), os.path.join(out, 'lr_transfer.png'))
  try:
    laws = analysis.fit_hparams(os.path.join(workdir, 'laws'), bootstrap=bootstrap)
    figures.write_png(analysis.figures.hparams(laws), os.path.join(out, 'hparam_laws.png'))
    laws_text, laws_json = laws.text(), laws.to_json()
  except analysis.AnalysisError as e:
    laws_text, laws_json = f'no fit: {e}', {'error': str(e)}
  atomic.write_json(os.path.join(out, 'results.json'),
                    {'lr_shift': {p: s.to_json() for p, s in shifts.items()},
                     'lr_shift_problems': problems, 'hparam_laws': laws_json},
                    indent=1, default=_jsonable)
  lrs = sorted(runs['optim.lr'].unique())
  lines = ['## Loss against learning rate (mean over seeds; * the lowest)', '',
           '| parametrization | d_model | ' + ' | '.join(f'{lr:.3g}' for lr in lrs) + ' |',
           '|---|---|' + '---|' * len(lrs)]
  for (p, w), cell in runs.groupby(['model.parametrization', 'model.d_model']):
    means = cell.groupby('optim.lr')['loss'].mean()
    best = means.idxmin()
    lines.append(f'| {p} | {w} | ' + ' | '.join(
        (f'{means[lr]:.4f}' + ('*' if lr == best else '')) if lr in means else 'diverged'
        for lr in lrs) + ' |')
  lines += ['', '## The optimum against width', '']
  for p in sorted(runs['model.parametrization'].unique(), reverse=True):
    lines += [f'{p}:', '```', shifts[p].text() if p in shifts else f'no estimate: {problems[p]}',
              '```', '']
  lines += ['## η_opt(C) and B_opt(C) under μP', '', '```', laws_text, '```']
  markdown = '\n'.join(lines) + '\n'
  atomic.write_text(os.path.join(out, 'results.md'), markdown)
  return markdown


def main():
  if _PARALLEL.value < 1:
    fail(f'--parallel={_PARALLEL.value}: must be >= 1')
  cores = len(os.sched_getaffinity(0))
  if not 0 <= _CPUS.value <= cores:
    fail(f'--cpus_per_run={_CPUS.value}: must be in [0, {cores}] (the cores here)')
  if _BOOTSTRAP.value < 2:
    fail(f'--bootstrap={_BOOTSTRAP.value}: at least 2')
  from experiments.sweeps import hparam_laws, lr_transfer
  _sweep_phase(lr_transfer.get_sweep(), os.path.join(_WORKDIR.value, 'transfer'))
  _sweep_phase(hparam_laws.get_sweep(), os.path.join(_WORKDIR.value, 'laws'))
  from lmjax.analysis import AnalysisError
  try:
    print(analyse(_WORKDIR.value, _BOOTSTRAP.value))
  except AnalysisError as e:  # no finished runs to read
    fail(str(e), EXIT_FAILED)
  print(f'results: {os.path.join(_WORKDIR.value, "results")}')


if __name__ == '__main__':
  run(main)
