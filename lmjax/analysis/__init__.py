"""lmjax.analysis: runs and sweeps in a notebook (Colab or Jupyter), as library calls.

  from lmjax import analysis
  r = analysis.load('runs/stdlib_isoflop')          # a sweep, a run, or a directory of runs
  r.runs                                            # DataFrame: one row per run
  r.curves                                          # DataFrame: one row per (run, logged step)
  analysis.show(analysis.figures.curves(r.runs, r.curves, x='flops', color='model.d_model'))

  report = analysis.fit('runs/stdlib_isoflop', laws=('chinchilla',), bootstrap=200)
  print(report.text())                              # launch.fit's table, same options

  law = analysis.Law('mine', lambda p, x: p.E + p.A * x.N ** -p.alpha, inputs=('N',),
                     params=dict(E=(0, 3), A=(1, 1e6, 'log'), alpha=(0.05, 1)))
  fit = analysis.fit_law(law, r.runs, bootstrap=500)      # any runs column is an input
  print(fit.text()); fit.predict(dict(N=[1e7]))

  hp = analysis.fit_hparams('runs/hparams_sweep', bootstrap=500)   # lr_opt(C), B_opt(C)
  print(hp.text()); analysis.show(analysis.figures.hparams(hp))
  shift = analysis.lr_shift(r.runs, by='model.parametrization')  # lr* per width doubling
  analysis.show(analysis.figures.lr_shift(shift))

  acc = analysis.fit_accuracy(r.runs, 'tasks/stdlib_next_line/acc', chance=0.25)
  analysis.show(analysis.figures.accuracy(acc))       # Gadre's law, the sigmoid, two steps

  m = analysis.compute_multiplier(runs_a, runs_b, names=('gpt2', 'llama'))
  print(m.text()); analysis.show(analysis.figures.multiplier(m))

  report = analysis.evaluate('runs/small', documents=20); analysis.eval_tables(report)
  analysis.sample('runs/small', ['def main('], max_new_tokens=64, temperature=0.8)

Modules: runs.py (loading), fitting.py (fits on DataFrames), figures.py (matplotlib figures and
`show`), inspect_run.py (evaluation and samples). The fitting itself lives in lmjax.scaling:
userlaw.py (laws of the user's form), law_examples.py (published laws written that way),
multiplier.py (compute multipliers), fit.py (the built-in laws), hparams.py and lr_transfer.py
(hyperparameter laws, the lr shift with width).

The top room: it may import every other (import-linter, .importlinter), JAX only when a call
needs a model (evaluate, sample), and nothing imports it.
"""
from lmjax.analysis import figures
from lmjax.analysis.figures import show
from lmjax.analysis.fitting import (compute_multiplier, finished, fit, fit_accuracy, fit_hparams,
                                    fit_law, lr_shift)
from lmjax.analysis.inspect_run import eval_tables, evaluate, sample
from lmjax.analysis.runs import AnalysisError, Runs, fit_table, load
from lmjax.scaling import law_examples
from lmjax.scaling.userlaw import Law, LawFit, Param

__all__ = ['AnalysisError', 'Law', 'LawFit', 'Param', 'Runs', 'compute_multiplier', 'eval_tables',
           'evaluate', 'figures', 'finished', 'fit', 'fit_accuracy', 'fit_hparams', 'fit_law',
           'fit_table', 'law_examples', 'load', 'lr_shift', 'sample', 'show']
