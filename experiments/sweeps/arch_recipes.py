"""The arch-recipes study (experiments/README.md): the same IsoFLOP ladder for the `vaswani`,
`gpt2` and `llama` presets, each at the learning rate a small sweep chose for it.

Run it with `python -m experiments.arch_recipes` (lr sweep, study sweep, analysis). Two sweeps:
- `lr_sweep(scale)`: each preset at one size and budget, at the learning rates LR(N)·m for the
  multipliers m of `scale.lr_grid`, where LR(N) is Kaplan et al. 2020's Eq. D.1 (as in
  stdlib_isoflop); trained as the study trains (wsd, the same cooldown fraction).
- `study_sweep(scale, lr_mults)`: every preset at every size and budget (cooldown branches of one
  stable run per size and seed, Hägele et al. 2024), plus seeds 1 and 2 at two sizes and the two
  smallest budgets, whose branches have exactly the schedule of seed 0's: run-to-run noise at
  fixed (N, D). LR(N)·m_p with each preset's chosen multiplier m_p.

Matched sizes: every preset has the same layers, d_model and heads for a target; the MLP width
keeps the MLP's weights equal (4·d_model for ReLU/GELU; round(8·d_model/3) for SwiGLU's three
matrices, not LLaMA's rounding up to 64, which at d_model 32 would add 50%), so the non-embedding
N differ only by biases and norm scales (5.6% at the smallest size, 1.4% at the largest). Run
names end with the preset.

`get_sweep()` is the full study as `launch.sweep --sweep=arch_recipes` sees it: its learning
rates come from the finished lr sweep in runs/arch_recipes/lr, or, before that sweep has run,
from the lr sweep of the published study (experiments/results/arch_recipes/results.json), as
the plan's notes say.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

from lmjax import sweeps
from lmjax.config import GATED
from lmjax.config import PRESETS as PRESET_FIELDS

PRESETS = ('vaswani', 'gpt2', 'llama')
WORKDIR = 'runs/arch_recipes'  # the study's default directory: lr/, study/, results/
PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results', 'arch_recipes', 'results.json')  # the first full run


@dataclasses.dataclass(frozen=True)
class Groups:
  """The models a study compares (the presets here; dense and MoE models in
  experiments/sweeps/moe_vs_dense.py): their names, the one the others are measured against, and
  how a run's group is read from its overrides and from the runs table (lmjax.analysis). Rows of
  the lr sweep and the report name a run's group under the key 'preset'."""
  names: tuple
  reference: str
  column: str                 # the config field (and runs-table column) that tells them apart
  by_value: tuple = ()        # ((field value, group name), ...); () : the value is the name
  word: str = 'preset'        # what the report's tables call a group

  def of_value(self, value) -> str:
    return dict(self.by_value).get(value, value) if self.by_value else value

  def of_overrides(self, overrides) -> str:
    return self.of_value(overrides[self.column])

  def of_frame(self, frame):
    """The group of every row of a runs DataFrame."""
    return frame[self.column].map(self.of_value)


def kaplan_lr(n):
  """Kaplan et al. 2020, Eq. D.1: LR(N) = 0.003239 − 0.0001395 log N."""
  return 0.003239 - 0.0001395 * math.log(n)


@dataclasses.dataclass(frozen=True)
class Scale:
  """What the study trains: `full` is the study; `mini` runs in seconds, for its test."""
  base: str
  batch_size: int
  seq_len: int
  warmup_steps: int
  targets: tuple          # non-embedding N of the ladder
  budgets: tuple          # training FLOPs of the IsoFLOP curves
  lr_target: float        # the lr sweep's size ...
  lr_budget: float        # ... and budget
  lr_grid: tuple          # multipliers of kaplan_lr(N)
  seed_targets: tuple     # sizes that get the extra seeds
  seeds: tuple = (1, 2)   # extra seeds, at the two smallest budgets of seed_targets
  aspect: float = 32
  head_dim: int = 16
  cooldown: float = 0.2
  max_tokens_per_param: float = 2000
  checkpoints: int = 4

  def recipe(self, lr) -> sweeps.Recipe:
    return sweeps.Recipe(batch_size=self.batch_size, seq_len=self.seq_len, lr=lr,
                         warmup_steps=self.warmup_steps, warmup_fraction=0.1, schedule='wsd',
                         decay_fraction=self.cooldown, checkpoints=self.checkpoints)


SCALES = {
    'full': Scale(base='experiments/configs/scaling_cpu.py', batch_size=16, seq_len=128,
                  warmup_steps=100, targets=(4e3, 1.5e4, 4e4, 1e5),
                  budgets=(2.5e11, 7.5e11, 2.25e12), lr_target=1e5, lr_budget=5e11,
                  lr_grid=(0.5, 1, 2, 4, 8), seed_targets=(1.5e4, 1e5)),
    'mini': Scale(base='experiments/configs/tiny.py', batch_size=8, seq_len=32, warmup_steps=2,
                  targets=(2e3,), budgets=(3e8, 6e8, 1.2e9), lr_target=2e3,
                  lr_budget=3e8, lr_grid=(1, 4), seed_targets=(2e3,), seeds=(1,), aspect=16,
                  head_dim=8, checkpoints=2),
}


ARCH = Groups(PRESETS, 'vaswani', 'model.preset')


def scale_of(name: str) -> Scale:
  if name not in SCALES:
    raise sweeps.PlanError(f'scale {name!r}: one of {", ".join(SCALES)}')
  return SCALES[name]


def matched_d_ff(d_model: int, preset: str) -> int:
  """The MLP width that gives `preset` the MLP weights of a 4·d_model ReLU MLP (module doc)."""
  gated = PRESET_FIELDS[preset]['activation'] in GATED
  return round(8 * d_model / 3) if gated else 4 * d_model


def shapes(scale: Scale, targets, preset: str) -> list[dict]:
  """The matched shapes of `targets` for `preset`, as model overrides."""
  base = sweeps.load_config(scale.base)
  base.model.preset = 'vaswani'  # the ladder's rule on a 4·d_model MLP, shared by every preset
  out = []
  for s in sweeps.ladder(targets, base, aspect=scale.aspect, head_dim=scale.head_dim,
                         seq_len=scale.seq_len):
    out.append({**s.overrides(), 'model.preset': preset,
                'model.d_ff': matched_d_ff(s.d_model, preset)})
  return out


def lr_sweep(scale: Scale) -> sweeps.Sweep:
  runs = []
  for preset in PRESETS:
    shape = shapes(scale, [scale.lr_target], preset)
    for m in scale.lr_grid:
      recipe = scale.recipe(lambda n, m=m: m * kaplan_lr(n))
      runs += sweeps.isoflop(shape, [scale.lr_budget], recipe=recipe, base_config=scale.base,
                             tag=f'{preset}_lr{m:g}')
  return sweeps.Sweep(name='arch_recipes_lr', base_config=scale.base, runs=tuple(runs),
                      notes=f'{len(scale.lr_grid)} learning rates x {len(PRESETS)} presets at '
                            f'N={scale.lr_target:g}, C={scale.lr_budget:g}')


def study_sweep(scale: Scale, lr_mults: dict) -> sweeps.Sweep:
  """The study, with each preset's lr multiplier of `lr_mults` {preset: m}."""
  missing = [p for p in PRESETS if p not in lr_mults]
  if missing:
    raise sweeps.PlanError(f'study: no learning rate chosen for {", ".join(missing)}')
  runs = []
  for preset in PRESETS:
    recipe = scale.recipe(lambda n, m=lr_mults[preset]: m * kaplan_lr(n))
    common = dict(recipe=recipe, base_config=scale.base, cooldown=scale.cooldown,
                  max_tokens_per_param=scale.max_tokens_per_param, tag=preset)
    runs += sweeps.isoflop(shapes(scale, scale.targets, preset), scale.budgets, **common)
    runs += sweeps.isoflop(shapes(scale, scale.seed_targets, preset), scale.budgets[:2],
                           seeds=scale.seeds, **common)
  return sweeps.Sweep(name='arch_recipes', base_config=scale.base, runs=tuple(runs),
                      budgets=scale.budgets,
                      notes=f'{", ".join(PRESETS)} at lr multipliers '
                            f'{", ".join(f"{p} {lr_mults[p]:g}" for p in PRESETS)}')


def lr_results(lr_dir: str, sweep: sweeps.Sweep, groups: Groups = ARCH) -> list[dict]:
  """One row per run of the lr sweep in `lr_dir`: preset (the run's group), mult, lr, loss (inf:
  diverged or non-finite), state. PlanError when the directory is not that sweep's or a run is
  unfinished."""
  from lmjax.sweeps.sweepdir import SweepDir, SweepDirError
  try:
    sweep_dir = SweepDir.open(lr_dir, sweep, create=False)
  except SweepDirError as e:
    raise sweeps.PlanError(f'the lr sweep: {e}') from None
  rows = []
  for run in sweep.runs:
    state = sweep_dir.state(run.name)
    if state not in ('done', 'diverged'):
      raise sweeps.PlanError(
          f'the lr sweep in {lr_dir}: run {run.name} is {state}; the study\'s learning rates '
          'come from it (the study\'s command runs it first)')
    loss = (sweep_dir.summary(run.name) or {}).get('eval_loss') if state == 'done' else None
    loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
    preset = groups.of_overrides(run.overrides)
    rows.append(dict(run=run.name, preset=preset, N_no_emb=run.N_no_emb, C=run.C,
                     lr=run.overrides['optim.lr'], mult=float(run.name.rsplit('_lr', 1)[1]),
                     loss=loss, state=state))
  return rows


def choose_multipliers(rows, groups: Groups = ARCH) -> dict:
  """{group: the lr multiplier of its lowest final loss}; PlanError if a group has none."""
  out = {}
  for preset in groups.names:
    mine = [r for r in rows if r['preset'] == preset and math.isfinite(r['loss'])]
    if not mine:
      raise sweeps.PlanError(f'the lr sweep: every run of {preset} diverged; widen lr_grid down')
    out[preset] = min(mine, key=lambda r: r['loss'])['mult']
  return out


def published_multipliers(path=PUBLISHED) -> dict:
  """{preset: lr multiplier} that the published study's lr sweep chose (its results.json)."""
  try:
    with open(path) as f:
      rows = json.load(f)['lr']
  except (OSError, ValueError, KeyError) as e:
    raise sweeps.PlanError(f'{path}: the published study\'s lr sweep is unreadable ({e})') from None
  return {r['preset']: r['mult'] for r in rows if r.get('chosen')}


def get_sweep():
  scale = SCALES['full']
  lr_dir = f'{WORKDIR}/lr'
  if os.path.isfile(os.path.join(lr_dir, 'sweep.json')):
    sweep = study_sweep(scale, choose_multipliers(lr_results(lr_dir, lr_sweep(scale))))
    source = f'chosen by the lr sweep in {lr_dir}'
  else:
    sweep = study_sweep(scale, published_multipliers())
    source = (f'chosen by the published study\'s lr sweep ({os.path.relpath(PUBLISHED)}); '
              f'python -m experiments.arch_recipes runs the lr sweep in {lr_dir} first')
  return dataclasses.replace(sweep, notes=f'{sweep.notes}, {source}')
