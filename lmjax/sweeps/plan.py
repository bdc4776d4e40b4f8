"""Planning scaling-law sweeps: model shapes, runs, designs, and the sweep file; pure functions.

A sweep is a base config file and a list of `Run`s, each a set of config overrides plus what it
is planned to measure. Every run is resolved (lmjax.config.resolve) when it is planned, so a bad
run fails here, with its name, not hours later in a launcher.

Conventions:
- N is the non-embedding parameter count (Kaplan et al. 2020, Sec. 2.1), `n_total` counts the
  embeddings too; both exact, from lmjax.flops on the resolved config.
- D = steps · batch_size · seq_len, the tokens a run trains on: a design asks for D, trains
  steps = round(D / tokens per step) and reports the D of those steps.
- C = D · training FLOPs per token (lmjax.flops.exact_flops_per_token), not 6ND.

Shapes (`ladder`): with d_model ≈ aspect · n_layers and N ≈ 12 · n_layers · d_model² (Kaplan
et al. 2020, Eq. 2.1), n_layers = round((N / (12 · aspect²))^(1/3)), at least `min_layers`; d_model
is then the multiple of head_dim near sqrt(N / (12 · n_layers)) whose exact N is nearest the
target (in log), n_heads = d_model / head_dim and d_ff the preset's rule
(lmjax.config.default_d_ff). Kaplan et al. 2020 (Sec. 3.1, Fig. 5) find the loss depends only
weakly on d_model / n_layers over a wide range.

Designs, each a list of runs: `isoflop` (Hoffmann et al. 2022, Approach 2: several N per budget,
D = C / FLOPs per token), `l_of_n` (many N at one D), `l_of_d` (one N at many D), `grid` (every
N with every D).

Cooldown branches (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations", Sec. 4): with `cooldown=f`, each shape and seed trains ONE 'stable' run at
constant lr after warmup, keeping a checkpoint at every branch step, and each D is a branch that
starts from the stable run's checkpoint at
  branch_step = steps − max(round(steps · f), 1),
exactly where lmjax.optim's wsd schedule starts its decay, and trains to `steps` with wsd. The
stable and wsd schedules agree at every step before branch_step, so a branch is the wsd run it
stands for, at the cost of its cooldown only (`compute`).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import json
import math
import numbers
import os
import re
from collections.abc import Callable

from ml_collections import ConfigDict

from lmjax.config import ConfigError, default_d_ff, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DESIGNS = ('isoflop', 'l_of_n', 'l_of_d', 'grid', 'stable')
BUDGET_RTOL = 0.1  # an IsoFLOP run's C is within this of its budget (launch.fit snaps with it)
SWEEP_DIR = '<sweep_dir>'  # stands for the sweep directory when a branch is checked at plan time
_SAFE = re.compile(r'[A-Za-z0-9._-]+')


class PlanError(ValueError):
  """A run or sweep that cannot be planned; the message is one line and names it."""


def _one_line(e: Exception) -> str:
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  return f'{type(e).__name__}: {lines[0]}' if lines else type(e).__name__


# --- config files and overrides ---------------------------------------------------------------

def repo_path(path: str) -> str:
  """A config or sweep file's path: absolute as given, otherwise relative to the repo root."""
  return path if os.path.isabs(path) else os.path.join(ROOT, path)


def _call_file(path: str, function: str):
  """Imports a .py file and returns `function()`; every failure is a one-line PlanError."""
  full = repo_path(path)
  if not os.path.isfile(full):
    raise PlanError(f'{path}: no such file')
  if not full.endswith('.py'):
    raise PlanError(f'{path}: not a Python file (one defining {function}())')
  try:
    spec = importlib.util.spec_from_file_location(f'lmjax_plan_{function}', full)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 (a user's file can raise anything)
    raise PlanError(f'{path}: importing it raised {_one_line(e)}') from None
  if not callable(getattr(module, function, None)):
    raise PlanError(f'{path}: defines no {function}()')
  try:
    return getattr(module, function)()
  except Exception as e:  # noqa: BLE001
    raise PlanError(f'{path}: {function}() raised {_one_line(e)}') from None


def load_config(base_config) -> ConfigDict:
  """The unresolved config of a config file (its get_config()), or a copy of a ConfigDict."""
  if isinstance(base_config, ConfigDict):
    return copy.deepcopy(base_config)
  config = _call_file(base_config, 'get_config')
  if not isinstance(config, ConfigDict):
    raise PlanError(f'{base_config}: get_config() returned {type(config).__name__}, not a '
                    'ConfigDict')
  return config


def apply_overrides(config: ConfigDict, overrides: dict, where: str = '') -> ConfigDict:
  """Sets dotted fields ('optim.lr') in place, as --config.optim.lr=... would; returns config."""
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      node = node.get(part) if isinstance(node, ConfigDict) else None
    if not isinstance(node, ConfigDict) or leaf not in node:
      raise PlanError(f'{where}no such config field config.{key}')
    try:
      node[leaf] = tuple(value) if isinstance(value, list) else value
    except (TypeError, ValueError) as e:
      raise PlanError(f'{where}config.{key}={value!r}: {_one_line(e)}') from None
  return config


def _resolve(config: ConfigDict, where: str) -> ConfigDict:
  try:
    return resolve(config)
  except ConfigError as e:
    raise PlanError(f'{where}{e}') from None


def resolve_run(base_config, run: Run, sweep_dir: str | None = None) -> ConfigDict:
  """The resolved config of a run: base config, then the run's overrides, then resolve().

  With `sweep_dir`, a cooldown branch also gets train.init_from and train.init_step as the
  launcher sets them. Raises PlanError naming the run.
  """
  where = f'run {run.name}: '
  config = apply_overrides(load_config(base_config), run.overrides, where)
  if sweep_dir is not None and run.branch_of:
    config.train.init_from = os.path.join(sweep_dir, 'runs', run.branch_of)
    config.train.init_step = run.branch_step
  return _resolve(config, where)


def counts(resolved: ConfigDict) -> tuple[int, int, float]:
  """(non-embedding N, total N, training FLOPs per token) of a resolved config (lmjax.flops)."""
  # Imported here: lmjax.flops brings in the model (JAX); reading sweeps and tables does not.
  from lmjax import flops
  from lmjax.model import ModelConfig
  mcfg = ModelConfig.from_config(resolved.model)
  p = flops.param_counts(mcfg)
  return p['non_embedding'], p['total'], flops.exact_flops_per_token(mcfg, resolved.data.seq_len)


# --- shapes -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Shape:
  """A model shape with its exact counts at `seq_len` (lmjax.flops on the resolved config)."""
  n_layers: int
  d_model: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  n: int                  # non-embedding parameters
  n_total: int
  flops_per_token: float  # training FLOPs per token at seq_len
  seq_len: int
  target: float | None = None

  def overrides(self) -> dict:
    return {f'model.{k}': getattr(self, k)
            for k in ('n_layers', 'd_model', 'n_heads', 'n_kv_heads', 'd_ff')}


def _measure(base: ConfigDict, model: dict, seq_len: int, where: str):
  config = apply_overrides(copy.deepcopy(base), {**model, 'data.seq_len': seq_len}, where)
  return counts(_resolve(config, where))


def ladder(targets, base_config, *, aspect: float = 64.0, head_dim: int = 64, kv_group: int = 1,
           min_layers: int = 1, seq_len: int | None = None) -> list[Shape]:
  """Shapes for target non-embedding N (a number or a list), by the rule in the module doc.

  base_config: a config file or ConfigDict (its preset, activation, vocabulary and positions
  count); kv_group: query heads per kv head (n_kv_heads = n_heads / kv_group, so d_model is a
  multiple of head_dim · kv_group); seq_len: for FLOPs per token (None: the base config's).
  Two targets that give the same shape are an error.
  """
  targets = [targets] if isinstance(targets, numbers.Real) else list(targets)
  if not targets or not all(isinstance(t, numbers.Real) and math.isfinite(t) and t > 0
                            for t in targets):
    raise PlanError(f'ladder: targets must be positive numbers, got {targets!r}')
  if not (aspect > 0 and head_dim > 0 and kv_group > 0 and min_layers > 0):
    raise PlanError('ladder: aspect, head_dim, kv_group and min_layers must be positive')
  base = load_config(base_config)
  activation = _resolve(base, 'ladder: base config: ').model.activation
  seq_len = seq_len or base.data.seq_len
  step = head_dim * kv_group
  shapes = []
  for target in targets:
    layers = max(min_layers, round((target / (12 * aspect ** 2)) ** (1 / 3)))
    k0 = max(1, round(math.sqrt(target / (12 * layers)) / step))
    best = None
    for k in range(max(1, k0 - 2), k0 + 3):
      d = k * step
      model = {'model.n_layers': layers, 'model.d_model': d, 'model.n_heads': d // head_dim,
               'model.n_kv_heads': d // step, 'model.d_ff': default_d_ff(d, activation)}
      n, n_total, fpt = _measure(base, model, seq_len, f'ladder: N={target:.3g}: ')
      if best is None or abs(math.log(n / target)) < abs(math.log(best.n / target)):
        best = Shape(layers, d, d // head_dim, d // step, model['model.d_ff'], n, n_total, fpt,
                     seq_len, float(target))
    same = [s for s in shapes if s.overrides() == best.overrides()]
    if same:
      raise PlanError(f'ladder: targets {same[0].target:.3g} and {target:.3g} give the same '
                      f'shape ({layers} layers, d_model {best.d_model}); spread them or lower '
                      'head_dim')
    shapes.append(best)
  return shapes


# --- runs ---------------------------------------------------------------------------------------

def _short(x: float) -> str:
  """3 significant digits, filesystem-safe: 123456 -> 1.23e5, 4.1e6 -> 4.1e6, 3000 -> 3e3."""
  mantissa, exponent = f'{x:.2e}'.split('e')
  return f'{mantissa.rstrip("0").rstrip(".")}e{int(exponent)}'


def run_name(n: float, d: float, c: float, seed: int, suffix: str = '') -> str:
  """N1.23e5_D4.1e6_C3.02e12_s0[_suffix]."""
  name = f'N{_short(n)}_D{_short(d)}_C{_short(c)}_s{seed}'
  return f'{name}_{suffix}' if suffix else name


def _flag_value(value) -> str:
  """A value as ml_collections config_flags parses it back: 3, 0.001, wsd, true, (10,20)."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, (tuple, list)):
    inner = ','.join(repr(v) for v in value)
    return f'({inner},)' if len(value) == 1 else f'({inner})'
  return repr(value) if isinstance(value, float) else str(value)


def _jsonable(overrides: dict) -> dict:
  return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(overrides.items())}


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a sweep: overrides of the base config, and what it measures."""
  name: str                 # stable, unique in its sweep, [A-Za-z0-9._-]
  overrides: dict           # dotted config field -> value
  n: int                    # non-embedding parameters
  n_total: int
  d: int                    # training tokens: steps · batch_size · seq_len
  c: float                  # training FLOPs: d · flops_per_token
  flops_per_token: float
  seed: int
  design: str               # one of DESIGNS; 'stable' is a cooldown trunk, not a data point
  budget: float | None = None       # isoflop: the budget C it belongs to
  branch_of: str | None = None      # a cooldown branch: the stable run it starts from
  branch_step: int | None = None    # ... at this checkpoint step

  def __post_init__(self):
    if not _SAFE.fullmatch(self.name or ''):
      raise PlanError(f'run name {self.name!r}: only letters, digits and . _ - are allowed')
    if self.design not in DESIGNS:
      raise PlanError(f'run {self.name}: design {self.design!r} is not one of '
                      f'{", ".join(DESIGNS)}')
    if (self.branch_of is None) != (self.branch_step is None):
      raise PlanError(f'run {self.name}: branch_of and branch_step go together')

  @property
  def steps(self) -> int:
    return self.overrides['train.steps']

  def flags(self) -> list[str]:
    """--config.k=v for every override, sorted (the launcher adds init_from for branches)."""
    return [f'--config.{k}={_flag_value(v)}' for k, v in sorted(self.overrides.items())]

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), 'overrides': _jsonable(self.overrides)}

  @classmethod
  def from_json(cls, obj: dict) -> Run:
    if not isinstance(obj, dict):
      raise PlanError(f'a run must be a JSON object, got {type(obj).__name__}')
    try:
      overrides = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in dict(obj['overrides']).items()}
      return cls(**{**obj, 'overrides': overrides})
    except PlanError:
      raise
    except (KeyError, TypeError, ValueError) as e:
      raise PlanError(f'run {obj.get("name")!r}: bad JSON ({_one_line(e)})') from None


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the runs of a design are trained, as rules of their N and steps."""
  batch_size: int
  seq_len: int
  lr: float | Callable[[int], float]  # peak lr, or a function of the non-embedding N
  warmup_steps: int = 0               # warmup = min(warmup_steps, floor(warmup_fraction · steps))
  warmup_fraction: float = 0.1
  schedule: str = 'cosine'            # runs trained on their own; cooldown branches use wsd
  decay_fraction: float = 0.2         # schedule='wsd' only
  decay_shape: str = '1-sqrt'         # wsd decay; 1-sqrt is best in Hägele et al. 2024, Sec. 3
  checkpoints: int = 10               # checkpoint.every_steps = ceil(steps / checkpoints)

  @property
  def tokens_per_step(self) -> int:
    return self.batch_size * self.seq_len

  def warmup(self, steps: int) -> int:
    return min(self.warmup_steps, int(self.warmup_fraction * steps))

  def peak_lr(self, n: int) -> float:
    lr = float(self.lr(n) if callable(self.lr) else self.lr)
    if not (math.isfinite(lr) and lr > 0):
      raise PlanError(f'recipe: lr at N={n:.3g} is {lr!r}; it must be a positive number')
    return lr


def _prepare(base: ConfigDict, shape, recipe: Recipe):
  """(model overrides, (n, n_total, flops per token)) of a Shape or a dict of model fields."""
  if isinstance(shape, Shape):
    model = shape.overrides()
  elif isinstance(shape, dict):
    model = {k if k.startswith('model.') else f'model.{k}': v for k, v in shape.items()}
  else:
    raise PlanError(f'a shape must be a plan.Shape or a dict of model fields, got '
                    f'{type(shape).__name__}')
  return model, _measure(base, model, recipe.seq_len, f'shape {model}: ')


def _run(base, model, measured, recipe, steps, seed, design, *, warmup, schedule, budget=None,
         suffix='', extra=None, branch_of=None, branch_step=None) -> Run:
  """Plans and resolves one run; a run that fails validation raises PlanError naming it."""
  n, n_total, fpt = measured
  d = steps * recipe.tokens_per_step
  overrides = {**model, 'data.batch_size': recipe.batch_size, 'data.seq_len': recipe.seq_len,
               'train.steps': steps, 'optim.lr': recipe.peak_lr(n), 'optim.warmup_steps': warmup,
               'optim.schedule': schedule, 'seed': seed,
               'checkpoint.every_steps': max(1, math.ceil(steps / max(recipe.checkpoints, 1)))}
  if schedule == 'wsd':
    overrides.update({'optim.decay_fraction': recipe.decay_fraction,
                      'optim.decay_shape': recipe.decay_shape})
  overrides.update(extra or {})
  run = Run(run_name(n, d, d * fpt, seed, suffix), overrides, n, n_total, d, d * fpt, fpt,
            seed, design, budget, branch_of, branch_step)
  resolve_run(base, run, SWEEP_DIR if branch_of else None)
  return run


def _steps(recipe: Recipe, tokens: float, where: str) -> int:
  steps = round(tokens / recipe.tokens_per_step)
  if steps < 1:
    raise PlanError(f'{where}D={tokens:.3g} is less than one step of {recipe.tokens_per_step} '
                    'tokens')
  return steps


def _independent(base, model, measured, recipe, tokens, seed, design, budget=None) -> Run:
  steps = _steps(recipe, tokens, f'{design} N={measured[0]:.3g}: ')
  return _run(base, model, measured, recipe, steps, seed, design, warmup=recipe.warmup(steps),
              schedule=recipe.schedule, budget=budget)


def _cooldown_family(base, model, measured, recipe, ds, seed, design, cooldown,
                     budgets=None) -> list[Run]:
  """One stable run and one wsd branch per D (module doc); the stable run comes first.
  `budgets`, one per D, tags the branches of an IsoFLOP design."""
  where = f'{design} N={measured[0]:.3g} cooldown={cooldown}: '
  if not 0 < cooldown < 1:
    raise PlanError(f'{where}cooldown must be in (0, 1)')
  steps = [_steps(recipe, d, where) for d in ds]
  if len(set(steps)) < len(steps):
    raise PlanError(f'{where}two D values round to the same number of steps ({steps})')
  warmup = recipe.warmup(min(steps))  # one warmup for the whole family, so the schedules agree
  # lmjax.optim.schedule: wsd decays over max(round(steps · decay_fraction), 1) final steps.
  branch_at = {s: s - max(round(s * cooldown), 1) for s in steps}
  for s, b in branch_at.items():
    if b <= warmup:
      raise PlanError(f'{where}the {s}-step branch would start at step {b}, not after the '
                      f'{warmup} warmup steps')
  keep = tuple(sorted(set(branch_at.values())))
  stable = _run(base, model, measured, recipe, keep[-1], seed, 'stable', warmup=warmup,
                schedule='constant', suffix='stable', extra={'checkpoint.keep_steps': keep})
  branches = [_run(base, model, measured, recipe, s, seed, design, warmup=warmup,
                   schedule='wsd', suffix=f'cd{cooldown:g}',
                   extra={'optim.decay_fraction': float(cooldown)}, branch_of=stable.name,
                   branch_step=branch_at[s], budget=None if budgets is None else float(b))
              for s, b in zip(steps, budgets or [None] * len(steps))]
  return [stable, *branches]


def _check_unique(runs) -> list[Run]:
  seen = set()
  for run in runs:
    if run.name in seen:
      raise PlanError(f'run name {run.name} appears twice; runs of a sweep need distinct N, D, '
                      'C or seed')
    seen.add(run.name)
  return list(runs)


# --- designs ------------------------------------------------------------------------------------

def isoflop(shapes, budgets, *, recipe: Recipe, base_config, cooldown: float | None = None,
            seeds=(0,)) -> list[Run]:
  """Every shape at every budget C (D = C / FLOPs per token); C within BUDGET_RTOL of it.
  With `cooldown`, each shape's budgets are branches of one stable run (module doc), so a
  shape costs about its largest budget rather than the sum of them."""
  base = load_config(base_config)
  prepared = [_prepare(base, s, recipe) for s in shapes]
  runs = []
  for model, measured in prepared:
    for seed in seeds:
      if cooldown:
        runs += _cooldown_family(base, model, measured, recipe,
                                 [b / measured[2] for b in budgets], seed, 'isoflop', cooldown,
                                 budgets)
      else:
        runs += [_independent(base, model, measured, recipe, b / measured[2], seed, 'isoflop',
                              float(b)) for b in budgets]
  for run in runs:
    if run.budget is not None and abs(run.c / run.budget - 1) > BUDGET_RTOL:
      raise PlanError(f'isoflop: run {run.name} has C {run.c:.3g}, more than '
                      f'{BUDGET_RTOL:.0%} from its budget {run.budget:.3g} ({run.steps} steps)')
  return _check_unique(runs)


def l_of_n(shapes, d, *, recipe: Recipe, base_config, seeds=(0,)) -> list[Run]:
  """Every shape at one D (large enough that N limits the loss)."""
  base = load_config(base_config)
  runs = [_independent(base, model, measured, recipe, d, seed, 'l_of_n')
          for model, measured in (_prepare(base, s, recipe) for s in shapes) for seed in seeds]
  return _check_unique(runs)


def _over_d(shapes, ds, recipe, base_config, seeds, cooldown, design) -> list[Run]:
  base = load_config(base_config)
  runs = []
  for shape in shapes:
    model, measured = _prepare(base, shape, recipe)
    for seed in seeds:
      if cooldown:
        runs += _cooldown_family(base, model, measured, recipe, ds, seed, design, cooldown)
      else:
        runs += [_independent(base, model, measured, recipe, d, seed, design) for d in ds]
  return _check_unique(runs)


def l_of_d(shape, ds, *, recipe: Recipe, base_config, cooldown: float | None = None,
           seeds=(0,)) -> list[Run]:
  """One shape at every D; with `cooldown`, as branches of one stable run (module doc)."""
  return _over_d([shape], ds, recipe, base_config, seeds, cooldown, 'l_of_d')


def grid(shapes, ds, *, recipe: Recipe, base_config, cooldown: float | None = None,
         seeds=(0,)) -> list[Run]:
  """Every shape at every D; with `cooldown`, one stable run per shape and seed."""
  return _over_d(shapes, ds, recipe, base_config, seeds, cooldown, 'grid')


def compute(runs) -> dict:
  """FLOPs a plan spends against training each data point on its own.

  spent: stable and independent runs in full, branches from branch_step to their end;
  independent: every data point (all but stable runs) in full; saved = independent − spent.
  """
  names = {r.name for r in runs}
  spent = independent = 0.0
  for r in runs:
    if r.design != 'stable':
      independent += r.c
    if r.branch_of is None:
      spent += r.c
      continue
    if r.branch_of not in names:
      raise PlanError(f'run {r.name} branches from {r.branch_of}, which is not in the plan')
    spent += (r.steps - r.branch_step) * (r.d // r.steps) * r.flops_per_token
  saved = independent - spent
  return {'spent': spent, 'independent': independent, 'saved': saved,
          'saved_fraction': saved / independent if independent else 0.0}


# --- sweeps -------------------------------------------------------------------------------------

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
    if not _SAFE.fullmatch(self.name or ''):
      raise PlanError(f'sweep name {self.name!r}: only letters, digits and . _ - are allowed')
    runs = tuple(self.runs)
    if not runs:
      raise PlanError(f'sweep {self.name} has no runs')
    for run in runs:
      if not isinstance(run, Run):
        raise PlanError(f'sweep {self.name}: runs must be plan.Run, got {type(run).__name__}')
    _check_unique(runs)
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
    doc = [self.name, self.base_config, [[r.name, _jsonable(r.overrides)] for r in self.runs]]
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
      raise PlanError(f'bad sweep JSON ({_one_line(e)})') from None


def sweep_path(name_or_path: str) -> str:
  """experiments/sweeps/NAME.py for a bare name; a path as given."""
  if name_or_path.endswith('.py') or os.sep in name_or_path:
    return name_or_path
  return os.path.join('experiments', 'sweeps', f'{name_or_path}.py')


def load_sweep(path: str) -> Sweep:
  """Imports a sweep file (or experiments/sweeps/NAME.py) and returns its get_sweep(); any
  failure, or a base config that does not load, is a one-line PlanError naming the file. Runs
  are checked one by one with `invalid_runs`, so that one bad run does not stop the others."""
  path = sweep_path(path)
  sweep = _call_file(path, 'get_sweep')
  if not isinstance(sweep, Sweep):
    raise PlanError(f'{path}: get_sweep() returned {type(sweep).__name__}, not a plan.Sweep')
  try:
    load_config(sweep.base_config)
  except PlanError as e:
    raise PlanError(f'{path}: {e}') from None
  return sweep


def invalid_runs(sweep: Sweep) -> dict:
  """{run name: one-line reason} for the runs whose config does not resolve on the base."""
  base = load_config(sweep.base_config)
  bad = {}
  for run in sweep.runs:
    try:
      resolve_run(base, run, SWEEP_DIR)
    except PlanError as e:
      bad[run.name] = str(e)
  return bad
