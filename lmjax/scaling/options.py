"""What a fit of scaling laws to a runs table is asked to do: every option, its default, its check.

`FitOptions` is validated once, when it is made; a bad value raises FitOptionsError in one line.
Lists may be given as `python -m launch.fit` takes them (strings such as '1e21', 'N:D',
'TAG=VALUE') or as Python values; either way they are stored as numbers, pairs and dicts.
"""
from __future__ import annotations

import dataclasses
import math

from lmjax.core.errors import LmjaxError

LAWS = ('chinchilla', 'isoflop', 'kaplan_n', 'kaplan_d', 'kaplan_c', 'approach1', 'hparams')
BY_NAME_ONLY = ('hparams',)  # laws that 'all' leaves out: they need columns of their own
PREDICT_C = ('1e21', '1e22', '1e23', '5.76e23', '1e24', '1e25')  # 5.76e23: Chinchilla's budget
PREDICT_ND = ('7e10:1.4e12',)  # Chinchilla's N and D (Hoffmann et al. 2022, Table 1)
CHOICES = dict(objective=('huber', 'huber_nll'), reduction=('sum', 'mean'),
               starts=('hoffmann', 'coarse'), n_count=('both', 'N', 'N_no_emb'))


class FitOptionsError(LmjaxError, ValueError):
  """An option that cannot be used. `option` is the field; the one-line message names it as
  launch.fit's flag (`--law` for `laws`, else `--` and the field's name) and gives its value."""

  def __init__(self, option: str, message: str):
    super().__init__(message)
    self.option = option


def parse_pairs(values, option: str, sep: str = '=') -> dict:
  """['KEY=VALUE', ...] (or a dict) as {KEY: VALUE}, both stripped."""
  if isinstance(values, dict):
    return {str(k): str(v) for k, v in values.items()}
  out = {}
  for item in values:
    if sep not in item:
      raise FitOptionsError(option, f'--{option}={item}: expected KEY{sep}VALUE')
    k, v = item.split(sep, 1)
    out[k.strip()] = v.strip()
  return out


def _positive_floats(values, option: str) -> tuple:
  text = ','.join(str(v) for v in values)
  try:
    out = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    raise FitOptionsError(option, f'--{option}={text}: expected numbers') from None
  if not all(math.isfinite(v) and v > 0 for v in out):
    raise FitOptionsError(option, f'--{option}={text}: every value must be finite and positive')
  return out


def _nd_pairs(values) -> tuple:
  pairs = []
  for item in values:
    parts = item.split(':') if isinstance(item, str) else list(item)
    if len(parts) != 2:
      raise FitOptionsError('predict_nd', f'--predict_nd={item}: expected N:D')
    pairs.append(_positive_floats(parts, 'predict_nd'))
  return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class FitOptions:
  laws: tuple = ('all',)           # names in LAWS, or 'all': every law but BY_NAME_ONLY
  bootstrap: int = 1000            # replicates over runs (0: none)
  bootstrap_starts: int = 4        # starts per replicate: the best optima of the full fit
  seed: int = 0
  level: float = 0.95              # percentile-interval level
  huber_delta: float = 1e-3        # Huber δ on log loss (Hoffmann et al. 2022, App. D.2)
  objective: str = 'huber'         # or 'huber_nll' (Besiroglu et al. 2024)
  reduction: str = 'sum'           # or 'mean' over runs (same optimum)
  starts: str = 'hoffmann'         # Hoffmann's 4,500 Chinchilla starts, or 'coarse' (72)
  where: dict = dataclasses.field(default_factory=dict)  # keep rows whose tags equal these
  n_count: str = 'both'            # 'N', 'N_no_emb', or both when the table has both
  drop_highest_loss: int | None = None  # None: the table format's (5 for the Epoch file), else 0
  kaplan_irreducible: bool = False  # Kaplan laws as E + (X_c/X)^alpha
  kaplan_frontier: bool = True     # Kaplan laws fitted to the lower envelope only
  budgets: tuple | None = None     # IsoFLOP budgets; None: a budget tag, the format's, or C
  budget_rtol: float | None = None  # None: the format's, else 0.1
  isoflop_min_points: int = 4
  isoflop_nearest: int = 0         # fit each parabola to the k runs nearest its minimum (0: all)
  run_tags: tuple = ()             # tag columns that identify a run; enables Approach 1
  predict_c: tuple = PREDICT_C     # budgets at which to predict compute-optimal N and D
  predict_nd: tuple = PREDICT_ND   # (N, D) pairs at which to predict the loss

  def __post_init__(self):
    laws = (self.laws,) if isinstance(self.laws, str) else tuple(self.laws)
    for law in laws:
      if law != 'all' and law not in LAWS:
        raise FitOptionsError('laws', f'--law={law}: allowed {", ".join(LAWS)}, all')
    set_ = lambda name, value: object.__setattr__(self, name, value)
    set_('laws', laws)
    set_('run_tags', tuple(self.run_tags))
    set_('where', parse_pairs(self.where, 'where'))
    if 'approach1' in laws and not self.run_tags:
      raise FitOptionsError('laws', '--law=approach1 needs --run_tags (the tag columns that '
                            'identify a run)')
    self._check()
    set_('predict_nd', _nd_pairs(self.predict_nd))
    set_('budgets', _positive_floats(self.budgets, 'budgets') if self.budgets else None)
    set_('predict_c', _positive_floats(self.predict_c, 'predict_c'))

  def _check(self):
    checks = [
        ('bootstrap', self.bootstrap >= 0 and self.bootstrap != 1, '0 (none) or at least 2 '
         'replicates'),
        ('bootstrap_starts', self.bootstrap_starts >= 1, 'must be at least 1'),
        ('level', 0 < self.level < 1, 'must be in (0, 1)'),
        ('huber_delta', self.huber_delta > 0 and math.isfinite(self.huber_delta),
         'must be positive'),
        ('drop_highest_loss', self.drop_highest_loss is None or self.drop_highest_loss >= 0,
         'must be >= 0'),
        ('isoflop_min_points', self.isoflop_min_points >= 3, 'a parabola needs at least 3'),
        ('isoflop_nearest', not self.isoflop_nearest or self.isoflop_nearest >= 3,
         '0 (all) or at least 3'),
        ('budget_rtol', self.budget_rtol is None or self.budget_rtol > 0, 'must be positive'),
    ] + [(name, getattr(self, name) in allowed, f'allowed {", ".join(allowed)}')
         for name, allowed in CHOICES.items()]
    for name, ok, why in checks:
      if not ok:
        raise FitOptionsError(name, f'--{name}={getattr(self, name)}: {why}')

  def law_list(self) -> list:
    """The laws to fit, in order, without repeats; 'all' expands (approach1 with run_tags; not
    the laws of BY_NAME_ONLY)."""
    out = []
    for law in self.laws:
      out += [l for l in LAWS if (l != 'approach1' or self.run_tags) and l not in BY_NAME_ONLY
              ] if law == 'all' else [law]
    return list(dict.fromkeys(out))

  @property
  def explicit(self) -> bool:
    """Laws asked for by name: one that cannot be fitted is an error, not a skip."""
    return 'all' not in self.laws

  def to_json(self) -> dict:
    return dataclasses.asdict(self)
