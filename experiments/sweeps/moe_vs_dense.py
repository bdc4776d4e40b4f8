"""The MoE-vs-dense study (experiments/README.md, study 3): dense LLaMA-style models and mixtures of
4 and 8 experts, two per token, on one IsoFLOP ladder at matched active compute, each group at
the learning rate its own small sweep chose. The machinery is the arch-recipes study's
(experiments/sweeps/arch_recipes.py: Scale, the lr sweep's rows and choice; experiments/study.py;
experiments/arch_recipes_report.py), over the groups dense, moe4 and moe8.

Matched active compute: every group has the ladder's layers, d_model and heads (the arch-recipes
ladder, head_dim 16, d_model ≈ 32 × layers). The dense MLP (SwiGLU) is 2·w wide; each expert is
w = round(4·d_model/3) wide and a token goes through two of them (Mixtral's router, dropless), so
a token's matmul FLOPs are the dense model's plus the router's, 2·d_model·E per layer
(lmjax/model/flops.py counts it; C is active compute). At a budget every group trains on nearly
the same tokens; a mixture holds E/2 times the dense MLP's weights. The budgets each shape trains
at are the dense model's (no more than `max_tokens_per_param` tokens per parameter), for every
group alike. A run's peak lr is m·LR(N) (Kaplan et al. 2020, Eq. D.1) with N its non-embedding
parameters (every expert counted) and m its group's multiplier from the lr sweep.

`get_sweep()` is the study as `launch.sweep --sweep=moe_vs_dense` sees it: its learning rates come
from the finished lr sweep in runs/moe_vs_dense/lr, or, before that has run, from the published
study's (experiments/results/moe_vs_dense/results.json).
"""
from __future__ import annotations

import dataclasses
import os

from experiments.sweeps import arch_recipes as arch
from lmjax import sweeps

EXPERTS = {'dense': 0, 'moe4': 4, 'moe8': 8}
TOP_K = 2
GROUPS = arch.Groups(tuple(EXPERTS), 'dense', 'model.moe_experts',
                     by_value=tuple((e, g) for g, e in EXPERTS.items()), word='model')
WORKDIR = 'runs/moe_vs_dense'
PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results', 'moe_vs_dense', 'results.json')

SCALES = {
    # The lr grid: a first run with multipliers 0.5 to 4 chose 4, its top, for dense and moe8.
    'full': dataclasses.replace(arch.SCALES['full'], lr_target=4e4, lr_grid=(1, 2, 4, 8),
                                seed_targets=(1.5e4, 4e4)),
    'mini': arch.SCALES['mini'],
}


def scale_of(name: str) -> arch.Scale:
  if name not in SCALES:
    raise sweeps.PlanError(f'scale {name!r}: one of {", ".join(SCALES)}')
  return SCALES[name]


def expert_width(d_model: int) -> int:
  return round(4 * d_model / 3)


def shapes(scale: arch.Scale, targets, group: str) -> list[dict]:
  """The ladder's shapes of `targets` as `group`'s model overrides (module doc)."""
  out = []
  for shape in arch.shapes(scale, targets, 'llama'):
    w = expert_width(shape['model.d_model'])
    fields = {'model.d_ff': TOP_K * w, 'model.moe_experts': EXPERTS[group]}
    if EXPERTS[group]:
      fields.update({'model.moe_top_k': TOP_K, 'model.moe_d_ff': w,
                     'model.moe_router': 'mixtral'})
    out.append({**shape, **fields})
  return out


def _dense_budgets(scale: arch.Scale, shape: dict) -> list[float]:
  """The budgets of `scale` at which the dense model of `shape` trains (max_tokens_per_param)."""
  runs = sweeps.isoflop([shape], scale.budgets, recipe=scale.recipe(arch.kaplan_lr),
                        base_config=scale.base, max_tokens_per_param=scale.max_tokens_per_param)
  return sorted({r.budget for r in runs})


def _ladder(scale, targets, group, budgets_of, recipe, seeds=(0,)):
  runs = []
  for dense, shape in zip(shapes(scale, targets, 'dense'), shapes(scale, targets, group)):
    runs += sweeps.isoflop([shape], budgets_of(dense), recipe=recipe, base_config=scale.base,
                           cooldown=scale.cooldown, seeds=seeds, tag=group)
  return runs


def lr_sweep(scale: arch.Scale) -> sweeps.Sweep:
  runs = []
  for group in GROUPS.names:
    shape = shapes(scale, [scale.lr_target], group)
    for m in scale.lr_grid:
      recipe = scale.recipe(lambda n, m=m: m * arch.kaplan_lr(n))
      runs += sweeps.isoflop(shape, [scale.lr_budget], recipe=recipe, base_config=scale.base,
                             tag=f'{group}_lr{m:g}')
  return sweeps.Sweep(name='moe_vs_dense_lr', base_config=scale.base, runs=tuple(runs),
                      notes=f'{len(scale.lr_grid)} learning rates x {len(GROUPS.names)} models '
                            f'at N={scale.lr_target:g} (dense), C={scale.lr_budget:g}')


def study_sweep(scale: arch.Scale, lr_mults: dict) -> sweeps.Sweep:
  """The study, with each group's lr multiplier of `lr_mults` {group: m}."""
  missing = [g for g in GROUPS.names if g not in lr_mults]
  if missing:
    raise sweeps.PlanError(f'study: no learning rate chosen for {", ".join(missing)}')
  runs = []
  for group in GROUPS.names:
    recipe = scale.recipe(lambda n, m=lr_mults[group]: m * arch.kaplan_lr(n))
    all_budgets = lambda dense: _dense_budgets(scale, dense)
    first_two = lambda dense: _dense_budgets(scale, dense)[:2]
    runs += _ladder(scale, scale.targets, group, all_budgets, recipe)
    runs += _ladder(scale, scale.seed_targets, group, first_two, recipe, scale.seeds)
  return sweeps.Sweep(name='moe_vs_dense', base_config=scale.base, runs=tuple(runs),
                      budgets=scale.budgets,
                      notes=f'{", ".join(GROUPS.names)} (top-{TOP_K}) at lr multipliers '
                            f'{", ".join(f"{g} {lr_mults[g]:g}" for g in GROUPS.names)}')


def get_sweep():
  scale = SCALES['full']
  lr_dir = f'{WORKDIR}/lr'
  if os.path.isfile(os.path.join(lr_dir, 'sweep.json')):
    rows = arch.lr_results(lr_dir, lr_sweep(scale), GROUPS)
    sweep = study_sweep(scale, arch.choose_multipliers(rows, GROUPS))
    source = f'chosen by the lr sweep in {lr_dir}'
  else:
    sweep = study_sweep(scale, arch.published_multipliers(PUBLISHED))
    source = (f'chosen by the published study\'s lr sweep ({os.path.relpath(PUBLISHED)}); '
              f'python -m experiments.moe_vs_dense runs the lr sweep in {lr_dir} first')
  return dataclasses.replace(sweep, notes=f'{sweep.notes}, {source}')
