"""Scaling sweeps: planning runs, the sweep directory, and collecting finished runs.

A sweep file reads `from lmjax import sweeps`, then `sweeps.ladder(...)`, `sweeps.Recipe(...)`,
`sweeps.isoflop(...)`, `sweeps.Sweep(...)`. The modules: configs (base configs, overrides,
resolving, counts, PlanError), shapes (ladder), runs (Run, Recipe, names, fitted_lr: a law from
launch.fit as a recipe's lr), designs (isoflop, l_of_n, l_of_d, grid, hparams, cooldown
branches, compute), sweepfile (Sweep, load_sweep), sweepdir (the
sweep directory: the state of every run), schedule (what the local pool starts next), local and
slurm (the backends), launcher (launch.sweep as one call), collect (the runs table).

May import: lmjax.core, lmjax.config, lmjax.model (counts), lmjax.scaling (the runs table). Not
train, eval or infer: a sweep runs `launch.train` as processes (import-linter, .importlinter).
"""
from lmjax.sweeps.configs import (Counts, PlanError, apply_overrides, counts, load_config,
                                  repo_path, resolve_run)
from lmjax.sweeps.designs import BUDGET_RTOL, compute, grid, hparams, isoflop, l_of_d, l_of_n
from lmjax.sweeps.runs import DESIGNS, FittedLr, Recipe, Run, fitted_lr, run_name
from lmjax.sweeps.shapes import Shape, ladder
from lmjax.sweeps.sweepfile import Sweep, load_sweep, sweep_path

__all__ = ['BUDGET_RTOL', 'Counts', 'DESIGNS', 'FittedLr', 'PlanError', 'Recipe', 'Run', 'Shape',
           'Sweep', 'apply_overrides', 'compute', 'counts', 'fitted_lr', 'grid', 'hparams',
           'isoflop', 'l_of_d', 'l_of_n', 'ladder', 'load_config', 'load_sweep', 'repo_path',
           'resolve_run', 'run_name', 'sweep_path']
