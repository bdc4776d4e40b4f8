"""The runs of a sweep: `Run` (overrides of the base config and what it measures), `Recipe` (how
a design trains its runs), run names and the --config flags of a run.

Conventions:
- N counts every parameter, N_no_emb all but the embeddings (Kaplan et al. 2020, Sec. 2.1);
  both exact, from lmjax.model.flops on the resolved config. A recipe's lr(N) and a ladder's
  targets are in N_no_emb, as Kaplan et al.'s laws are; a recipe's lr may also be a law fitted by
  `launch.fit --law=hparams` (`fitted_lr`), against the run's C, D, N or N_no_emb.
- D = steps · batch_size · seq_len, the tokens a run trains on: a design asks for D, trains
  steps = round(D / tokens per step) and reports the D of those steps.
- C = D · training FLOPs per token (lmjax.model.flops.exact_flops_per_token), not 6ND.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

from lmjax.core.errors import one_line
from lmjax.scaling import hparams
from lmjax.sweeps.configs import PlanError

LEGACY_FIELDS = {'n': 'N_no_emb', 'n_total': 'N', 'd': 'D', 'c': 'C'}
DESIGNS = ('isoflop', 'l_of_n', 'l_of_d', 'grid', 'hparams', 'stable')
SAFE_NAME = re.compile(r'[A-Za-z0-9._-]+')  # run and sweep names: file names on every system


def short_number(x: float) -> str:
  """3 significant digits, filesystem-safe: 123456 -> 1.23e5, 4.1e6 -> 4.1e6, 3000 -> 3e3."""
  mantissa, exponent = f'{x:.2e}'.split('e')
  return f'{mantissa.rstrip("0").rstrip(".")}e{int(exponent)}'


def run_name(n: float, d: float, c: float, seed: int, suffix: str = '') -> str:
  """N1.23e5_D4.1e6_C3.02e12_s0[_suffix]."""
  name = f'N{short_number(n)}_D{short_number(d)}_C{short_number(c)}_s{seed}'
  return f'{name}_{suffix}' if suffix else name


def flag_value(value) -> str:
  """A value as ml_collections config_flags parses it back: 3, 0.001, wsd, true, (10,20)."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, (tuple, list)):
    inner = ','.join(repr(v) for v in value)
    return f'({inner},)' if len(value) == 1 else f'({inner})'
  return repr(value) if isinstance(value, float) else str(value)


def flags(overrides: dict) -> list[str]:
  """--config.k=v for every override, sorted by field."""
  return [f'--config.{k}={flag_value(v)}' for k, v in sorted(overrides.items())]


def jsonable(overrides: dict) -> dict:
  """Overrides sorted by field, tuples as lists: as they are saved and fingerprinted."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(overrides.items())}


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a sweep: overrides of the base config, and what it measures."""
  name: str                 # stable, unique in its sweep, [A-Za-z0-9._-]
  overrides: dict           # dotted config field -> value
  N_no_emb: int             # parameters without embeddings (Kaplan et al. 2020, Sec. 2.1)
  N: int                    # every parameter
  D: int                    # training tokens: steps · batch_size · seq_len
  C: float                  # training FLOPs: D · flops_per_token
  flops_per_token: float
  seed: int
  design: str               # one of DESIGNS; 'stable' is a cooldown trunk, not a data point
  budget: float | None = None       # isoflop, hparams: the budget C it belongs to
  branch_of: str | None = None      # a cooldown branch: the stable run it starts from
  branch_step: int | None = None    # ... at this checkpoint step

  def __post_init__(self):
    if not SAFE_NAME.fullmatch(self.name or ''):
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
    """--config.k=v for every override, sorted (the sweep directory adds a branch's start)."""
    return flags(self.overrides)

  def branch_overrides(self, parent_dir: str | None) -> dict:
    """What a cooldown branch adds to its overrides: the run directory of its stable run,
    `parent_dir`, and the step it starts from; nothing for a run from scratch, or when
    `parent_dir` is None."""
    if self.branch_of is None or parent_dir is None:
      return {}
    return {'train.init_from': parent_dir, 'train.init_step': self.branch_step}

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), 'overrides': jsonable(self.overrides)}

  @classmethod
  def from_json(cls, obj: dict) -> Run:
    if not isinstance(obj, dict):
      raise PlanError(f'a run must be a JSON object, got {type(obj).__name__}')
    # sweep.json written before the counts were named N, N_no_emb, D and C.
    obj = {LEGACY_FIELDS.get(k, k): v for k, v in obj.items()}
    try:
      overrides = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in dict(obj['overrides']).items()}
      return cls(**{**obj, 'overrides': overrides})
    except PlanError:
      raise
    except (KeyError, TypeError, ValueError) as e:
      raise PlanError(f'run {obj.get("name")!r}: bad JSON ({one_line(e)})') from None


def check_unique(runs) -> list[Run]:
  """The runs as a list; two runs of one name are a PlanError."""
  seen = set()
  for run in runs:
    if run.name in seen:
      raise PlanError(f'run name {run.name} appears twice; runs of a sweep need distinct N, D, '
                      'C or seed')
    seen.add(run.name)
  return list(runs)


COUNTS = ('C', 'D', 'N', 'N_no_emb')  # what a fitted lr can be a law against


@dataclasses.dataclass(frozen=True)
class FittedLr:
  """A learning rate rule fitted by `launch.fit --law=hparams`: lr = a·X^b, X the run's C, D, N
  or N_no_emb (`against`); `source` names the fits file it came from."""
  a: float
  b: float
  against: str = 'C'
  source: str = ''

  def __post_init__(self):
    if self.against not in COUNTS:
      raise PlanError(f'fitted lr {self.source}: against={self.against!r}; allowed '
                      f'{", ".join(COUNTS)}')

  def lr(self, **counts) -> float:
    """a·X^b at the run's counts (N_no_emb=, N=, D=, C=); PlanError when X is not among them."""
    x = counts.get(self.against)
    if x is None:
      raise PlanError(f'recipe: the lr is a law against {self.against} ({self.source}); this '
                      f'design gives the run\'s {", ".join(k for k, v in counts.items() if v)}')
    return float(self.a * float(x) ** self.b)


def fitted_lr(path: str, against: str = 'C') -> FittedLr:
  """The lr law against `against` (C, D, N or N_no_emb) that `launch.fit --law=hparams
  --out=DIR` wrote to DIR/fits.json (`path`: the file or DIR), as a recipe's lr:
  `Recipe(..., lr=sweeps.fitted_lr('fits'))`. A missing or bad file is a one-line PlanError."""
  try:
    law = hparams.read_law(path, 'lr', against)
  except hparams.HparamsError as e:
    raise PlanError(f'fitted_lr: {e}') from None
  return FittedLr(law.a, law.b, against, str(path))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the runs of a design are trained, as rules of their N and steps."""
  batch_size: int
  seq_len: int
  # The peak lr: a number, a function of the non-embedding N, or a law of C, D or N (fitted_lr).
  lr: float | Callable[[int], float] | FittedLr
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

  def peak_lr(self, n: int, *, N=None, D=None, C=None) -> float:
    """The peak lr of a run of non-embedding size `n` (and, for a FittedLr against them, its
    N, D or C)."""
    if isinstance(self.lr, FittedLr):
      lr = self.lr.lr(N_no_emb=n, N=N, D=D, C=C)
    else:
      lr = float(self.lr(n) if callable(self.lr) else self.lr)
    if not (math.isfinite(lr) and lr > 0):
      raise PlanError(f'recipe: lr at N={n:.3g} is {lr!r}; it must be a positive number')
    return lr
