"""Designs, each a list of runs: `isoflop` (Hoffmann et al. 2022, Approach 2: several N per
budget, D = C / FLOPs per token), `l_of_n` (many N at one D), `l_of_d` (one N at many D), `grid`
(every N with every D), `hparams` (every learning rate and batch size at each budget, DeepSeek-AI
2024, Sec. 3.1); and `compute`, the FLOPs a plan spends and saves.

Cooldown branches (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations", Sec. 4): with `cooldown=f`, each shape and seed trains ONE 'stable' run at
constant lr after warmup, keeping a checkpoint at every branch step, and each D is a branch that
starts from the stable run's checkpoint at
  branch_step = steps − max(round(steps · f), 1),
exactly where lmjax.train.optim's wsd schedule starts its decay, and trains to `steps` with wsd. The
stable and wsd schedules agree at every step before branch_step, so a branch is the wsd run it
stands for, at the cost of its cooldown only (`compute`).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import NamedTuple

from ml_collections import ConfigDict

from lmjax.sweeps.configs import Counts, PlanError, load_config, measure, resolve_run
from lmjax.sweeps.runs import Recipe, Run, check_unique, run_name, short_number
from lmjax.sweeps.shapes import Shape

# Stands for a branch's stable run directory when the branch is checked at plan time.
PLANNED_PARENT = '<the stable run>'
BUDGET_RTOL = 0.1  # an IsoFLOP run's C is within this of its budget (launch.fit snaps with it)


class Prepared(NamedTuple):
  """A shape as a design uses it: its model overrides and their counts at the recipe's seq_len."""
  model: dict
  counts: Counts


def _prepare(base: ConfigDict, shape, recipe: Recipe) -> Prepared:
  """A Shape, or a dict of model fields, prepared."""
  if isinstance(shape, Shape):
    model = shape.overrides()
  elif isinstance(shape, dict):
    model = {k if k.startswith('model.') else f'model.{k}': v for k, v in shape.items()}
  else:
    raise PlanError(f'a shape must be a sweeps.Shape or a dict of model fields, got '
                    f'{type(shape).__name__}')
  return Prepared(model, measure(base, model, recipe.seq_len, f'shape {model}: '))


def _run(base, shape: Prepared, recipe, steps, seed, design, *, warmup, schedule, budget=None,
         suffix='', tag='', extra=None, branch_of=None, branch_step=None) -> Run:
  """Plans and resolves one run; a run that fails validation raises PlanError naming it."""
  suffix = '_'.join(s for s in (suffix, tag) if s)
  n_no_emb, n, fpt = shape.counts.N_no_emb, shape.counts.N, shape.counts.flops_per_token
  d = steps * recipe.tokens_per_step
  overrides = {**shape.model, 'data.batch_size': recipe.batch_size,
               'data.seq_len': recipe.seq_len, 'train.steps': steps,
               'optim.lr': recipe.peak_lr(n_no_emb, N=n, D=d, C=d * fpt),
               'optim.warmup_steps': warmup,
               'optim.schedule': schedule, 'seed': seed,
               'checkpoint.every_steps': max(1, math.ceil(steps / max(recipe.checkpoints, 1)))}
  if schedule == 'wsd':
    overrides.update({'optim.decay_fraction': recipe.decay_fraction,
                      'optim.decay_shape': recipe.decay_shape})
  overrides.update(extra or {})
  run = Run(run_name(n_no_emb, d, d * fpt, seed, suffix), overrides, n_no_emb, n, d, d * fpt, fpt,
            seed, design, budget, branch_of, branch_step)
  resolve_run(base, run, PLANNED_PARENT)  # a branch as it will start (train.init_step checked)
  return run


def _steps(recipe: Recipe, tokens: float, where: str) -> int:
  steps = round(tokens / recipe.tokens_per_step)
  if steps < 1:
    raise PlanError(f'{where}D={tokens:.3g} is less than one step of {recipe.tokens_per_step} '
                    'tokens')
  return steps


def _independent(base, shape: Prepared, recipe, tokens, seed, design, budget=None,
                 tag='') -> Run:
  steps = _steps(recipe, tokens, f'{design} N={shape.counts.N_no_emb:.3g}: ')
  return _run(base, shape, recipe, steps, seed, design, warmup=recipe.warmup(steps),
              schedule=recipe.schedule, budget=budget, tag=tag)


def _cooldown_family(base, shape: Prepared, recipe, ds, seed, design, cooldown,
                     budgets=None, tag='') -> list[Run]:
  """One stable run and one wsd branch per D (module doc); the stable run comes first.
  `budgets`, one per D, tags the branches of an IsoFLOP design."""
  where = f'{design} N={shape.counts.N_no_emb:.3g} cooldown={cooldown}: '
  if not 0 < cooldown < 1:
    raise PlanError(f'{where}cooldown must be in (0, 1)')
  steps = [_steps(recipe, d, where) for d in ds]
  if len(set(steps)) < len(steps):
    raise PlanError(f'{where}two D values round to the same number of steps ({steps})')
  warmup = recipe.warmup(min(steps))  # one warmup for the whole family, so the schedules agree
  # lmjax.train.optim.schedule: wsd decays over max(round(steps · decay_fraction), 1) final steps.
  branch_at = {s: s - max(round(s * cooldown), 1) for s in steps}
  for s, b in branch_at.items():
    if b <= warmup:
      raise PlanError(f'{where}the {s}-step branch would start at step {b}, not after the '
                      f'{warmup} warmup steps')
  keep = tuple(sorted(set(branch_at.values())))
  stable = _run(base, shape, recipe, keep[-1], seed, 'stable', warmup=warmup,
                schedule='constant', suffix='stable', tag=tag,
                extra={'checkpoint.keep_steps': keep})
  branches = [_run(base, shape, recipe, s, seed, design, warmup=warmup,
                   schedule='wsd', suffix=f'cd{cooldown:g}', tag=tag,
                   extra={'optim.decay_fraction': float(cooldown)}, branch_of=stable.name,
                   branch_step=branch_at[s], budget=None if budgets is None else float(b))
              for s, b in zip(steps, budgets or [None] * len(steps))]
  return [stable, *branches]


def isoflop(shapes, budgets, *, recipe: Recipe, base_config, cooldown: float | None = None,
            seeds=(0,), max_tokens_per_param: float | None = None, tag: str = '') -> list[Run]:
  """Every shape at every budget C (D = C / FLOPs per token); C within BUDGET_RTOL of it.
  With `cooldown`, each shape's budgets are branches of one stable run (module doc), so a
  shape costs about its largest budget rather than the sum of them. `max_tokens_per_param`
  leaves out the budgets that would give a shape more than that many tokens per parameter (N
  with embeddings): a tiny model far past its best size at a large budget says nothing about
  that budget's minimum (Hoffmann et al. 2022 likewise choose sizes per budget). `tag` (every
  design has it) ends each run's name, to tell apart designs of one sweep whose runs share N,
  D and seed (two presets of one shape)."""
  base = load_config(base_config)
  prepared = [_prepare(base, s, recipe) for s in shapes]
  runs = []
  for shape in prepared:
    fpt = shape.counts.flops_per_token
    mine = [b for b in budgets if not max_tokens_per_param or
            b / fpt / shape.counts.N <= max_tokens_per_param]
    if not mine:
      raise PlanError(f'isoflop N={shape.counts.N_no_emb:.3g}: every budget gives it more than '
                      f'max_tokens_per_param={max_tokens_per_param:g} tokens per parameter')
    for seed in seeds:
      if cooldown:
        runs += _cooldown_family(base, shape, recipe, [b / fpt for b in mine], seed,
                                 'isoflop', cooldown, mine, tag)
      else:
        runs += [_independent(base, shape, recipe, b / fpt, seed, 'isoflop', float(b), tag)
                 for b in mine]
  return _within_budgets(runs, 'isoflop')


def _within_budgets(runs, design) -> list[Run]:
  """The runs, each checked to have C within BUDGET_RTOL of its budget, and unique names."""
  for run in runs:
    if run.budget is not None and abs(run.C / run.budget - 1) > BUDGET_RTOL:
      raise PlanError(f'{design}: run {run.name} has C {run.C:.3g}, more than '
                      f'{BUDGET_RTOL:.0%} from its budget {run.budget:.3g} ({run.steps} steps)')
  return check_unique(runs)


def _shape_per_budget(shapes, budgets) -> list:
  """One shape per budget, from one shape (a Shape or a dict of model fields), a list of shapes
  in the order of `budgets`, or a dict {budget: shape}."""
  if isinstance(shapes, Shape) or (isinstance(shapes, dict) and not all(
      isinstance(k, numbers.Real) for k in shapes)):
    return [shapes] * len(budgets)
  if isinstance(shapes, dict):
    missing = [b for b in budgets if b not in shapes]
    if missing:
      raise PlanError(f'hparams: no shape for budget {missing[0]:.3g} (shapes are given for '
                      f'{", ".join(f"{b:.3g}" for b in shapes)})')
    return [shapes[b] for b in budgets]
  shapes = list(shapes)
  if len(shapes) != len(budgets):
    raise PlanError(f'hparams: {len(shapes)} shapes for {len(budgets)} budgets; give one shape, '
                    'one per budget, or a dict {budget: shape}')
  return shapes


def _positive(values, what, kind=float) -> list:
  """The values as `kind`, each checked positive (and whole, for int); PlanError naming them."""
  out = list(values)
  if not out or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                        and math.isfinite(v) and v > 0 and kind(v) == v for v in out):
    raise PlanError(f'hparams: {what} {out}: give positive '
                    + ('integers' if kind is int else 'numbers'))
  return [kind(v) for v in out]


def hparams(shapes, budgets, lrs, batch_sizes, *, recipe: Recipe, base_config, seeds=(0,),
            tag: str = '') -> list[Run]:
  """Every (learning rate, batch size) pair at every budget C, for hyperparameter scaling laws
  (DeepSeek-AI 2024, Sec. 3.1; lmjax.scaling.hparams fits them). `shapes`: one shape for every
  budget, one per budget (a list in the order of `budgets`), or a dict {budget: shape}. Each
  run trains D = C / FLOPs per token in steps = round(D / (B · seq_len)) steps, so the batch
  size B trades steps for tokens per step at the same C (within BUDGET_RTOL); its warmup is the
  recipe's rule of its steps. The recipe's lr and batch_size are replaced by the grid's; names
  end in lr<lr>_B<B>."""
  base = load_config(base_config)
  lrs, batch_sizes = _positive(lrs, 'lrs'), _positive(batch_sizes, 'batch_sizes', int)
  per_budget = _shape_per_budget(shapes, budgets)
  prepared = {}
  runs = []
  for budget, given in zip(budgets, per_budget):
    key = repr(given)
    if key not in prepared:
      prepared[key] = _prepare(base, given, recipe)
    shape = prepared[key]
    d = budget / shape.counts.flops_per_token
    for b in batch_sizes:
      for lr in lrs:
        cell = dataclasses.replace(recipe, batch_size=b, lr=lr)
        steps = _steps(cell, d, f'hparams C={budget:.3g} B={b}: ')
        runs += [_run(base, shape, cell, steps, seed, 'hparams', warmup=cell.warmup(steps),
                      schedule=cell.schedule, budget=float(budget),
                      suffix=f'lr{short_number(lr)}_B{b}', tag=tag) for seed in seeds]
  return _within_budgets(runs, 'hparams')


def l_of_n(shapes, d, *, recipe: Recipe, base_config, seeds=(0,), tag: str = '') -> list[Run]:
  """Every shape at one D (large enough that N limits the loss)."""
  base = load_config(base_config)
  runs = [_independent(base, shape, recipe, d, seed, 'l_of_n', tag=tag)
          for shape in (_prepare(base, s, recipe) for s in shapes) for seed in seeds]
  return check_unique(runs)


def _over_d(shapes, ds, recipe, base_config, seeds, cooldown, design, tag) -> list[Run]:
  base = load_config(base_config)
  runs = []
  for s in shapes:
    shape = _prepare(base, s, recipe)
    for seed in seeds:
      if cooldown:
        runs += _cooldown_family(base, shape, recipe, ds, seed, design, cooldown, tag=tag)
      else:
        runs += [_independent(base, shape, recipe, d, seed, design, tag=tag) for d in ds]
  return check_unique(runs)


def l_of_d(shape, ds, *, recipe: Recipe, base_config, cooldown: float | None = None,
           seeds=(0,), tag: str = '') -> list[Run]:
  """One shape at every D; with `cooldown`, as branches of one stable run (module doc)."""
  return _over_d([shape], ds, recipe, base_config, seeds, cooldown, 'l_of_d', tag)


def grid(shapes, ds, *, recipe: Recipe, base_config, cooldown: float | None = None,
         seeds=(0,), tag: str = '') -> list[Run]:
  """Every shape at every D; with `cooldown`, one stable run per shape and seed."""
  return _over_d(shapes, ds, recipe, base_config, seeds, cooldown, 'grid', tag)


def compute(runs) -> dict:
  """FLOPs a plan spends against training each data point on its own.

  spent: stable and independent runs in full, branches from branch_step to their end;
  independent: every data point (all but stable runs) in full; saved = independent − spent.
  """
  names = {r.name for r in runs}
  spent = independent = 0.0
  for r in runs:
    if r.design != 'stable':
      independent += r.C
    if r.branch_of is None:
      spent += r.C
      continue
    if r.branch_of not in names:
      raise PlanError(f'run {r.name} branches from {r.branch_of}, which is not in the plan')
    spent += (r.steps - r.branch_step) * (r.D // r.steps) * r.flops_per_token
  saved = independent - spent
  return {'spent': spent, 'independent': independent, 'saved': saved,
          'saved_fraction': saved / independent if independent else 0.0}
