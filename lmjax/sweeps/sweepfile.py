"""A sweep and its file: `Sweep` (a named list of runs on one base config), `load_sweep` (a sweep
file's get_sweep()); a sweep directory checks its runs (SweepDir.invalid_runs).

A sweep file, experiments/sweeps/NAME.py, defines get_sweep() and builds its runs with
`from lmjax import sweeps` (experiments/sweeps/micro.py is a small example).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from lmjax.core.errors import one_line
from lmjax.sweeps.configs import PlanError, call_file, load_config
from lmjax.sweeps.runs import SAFE_NAME, Run, check_unique, jsonable


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A named list of runs on one base config file (relative to the repo root, or absolute).

  budgets: the IsoFLOP budgets for fitting; left empty, those of the runs that have one.
  """
  name: str
  base_config: str
  runs: tuple
  budgets: tuple = ()
  notes: str = ''

  def __post_init__(self):
    if not SAFE_NAME.fullmatch(self.name or ''):
      raise PlanError(f'sweep name {self.name!r}: only letters, digits and . _ - are allowed')
    runs = tuple(self.runs)
    if not runs:
      raise PlanError(f'sweep {self.name} has no runs')
    for run in runs:
      if not isinstance(run, Run):
        raise PlanError(f'sweep {self.name}: runs must be sweeps.Run, got {type(run).__name__}')
    check_unique(runs)
    by_name = {r.name: r for r in runs}
    for run in runs:
      trunk = by_name.get(run.branch_of)
      if run.branch_of and (trunk is None or trunk.design != 'stable' or run.branch_step not in
                            trunk.overrides.get('checkpoint.keep_steps', ())):
        raise PlanError(f'sweep {self.name}: run {run.name} branches from {run.branch_of} at '
                        f'step {run.branch_step}, which is not a stable run of the sweep that '
                        'keeps that step')
    budgets = self.budgets or sorted({r.budget for r in runs if r.budget is not None})
    object.__setattr__(self, 'runs', runs)
    object.__setattr__(self, 'budgets', tuple(float(b) for b in budgets))

  def fingerprint(self) -> str:
    """A hash of the name, base config, and each run's name and overrides."""
    doc = [self.name, self.base_config, [[r.name, jsonable(r.overrides)] for r in self.runs]]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

  def to_json(self) -> dict:
    return {'name': self.name, 'base_config': self.base_config, 'budgets': list(self.budgets),
            'notes': self.notes, 'runs': [r.to_json() for r in self.runs]}

  @classmethod
  def from_json(cls, obj: dict) -> Sweep:
    """From to_json()'s dict; other keys (the launcher's fingerprint) are ignored."""
    if not isinstance(obj, dict) or not isinstance(obj.get('runs'), list):
      raise PlanError('a sweep must be a JSON object with a list of runs')
    try:
      return cls(name=obj['name'], base_config=obj['base_config'],
                 runs=tuple(Run.from_json(r) for r in obj['runs']),
                 budgets=tuple(obj.get('budgets', ())), notes=obj.get('notes', ''))
    except PlanError:
      raise
    except (KeyError, TypeError, ValueError) as e:
      raise PlanError(f'bad sweep JSON ({one_line(e)})') from None


def sweep_path(name_or_path: str) -> str:
  """experiments/sweeps/NAME.py for a bare name; a path as given."""
  if name_or_path.endswith('.py') or os.sep in name_or_path:
    return name_or_path
  return os.path.join('experiments', 'sweeps', f'{name_or_path}.py')


def load_sweep(path: str) -> Sweep:
  """Imports a sweep file (or experiments/sweeps/NAME.py) and returns its get_sweep(); any
  failure, or a base config that does not load, is a one-line PlanError naming the file. Runs
  are checked one by one by the sweep directory (SweepDir.invalid_runs), so that one bad run
  does not stop the others."""
  path = sweep_path(path)
  sweep = call_file(path, 'get_sweep')
  if not isinstance(sweep, Sweep):
    raise PlanError(f'{path}: get_sweep() returned {type(sweep).__name__}, not a sweeps.Sweep')
  try:
    load_config(sweep.base_config)
  except PlanError as e:
    raise PlanError(f'{path}: {e}') from None
  return sweep
