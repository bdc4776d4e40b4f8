"""The config side of planning: base config files, a run's overrides, resolving, and counts.

A sweep is a base config file and a list of runs, each a set of config overrides plus what it is
planned to measure. Every run is resolved (lmjax.config.resolve) when it is planned, so a bad
run fails here, with its name, not hours later in a launcher. PlanError is the one error of
planning, in every module of lmjax.sweeps.
"""
from __future__ import annotations

import copy
import os

from ml_collections import ConfigDict

from lmjax.config import ConfigError, resolve
from lmjax.core import pyfile
from lmjax.core.errors import LmjaxError, one_line
from lmjax.model.flops import ConfigCounts as Counts
from lmjax.model.flops import config_counts as counts  # the one count of a config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PlanError(LmjaxError, ValueError):
  """A run or sweep that cannot be planned; the message is one line and names it."""


def repo_path(path: str) -> str:
  """A config or sweep file's path: absolute as given, otherwise relative to the repo root."""
  return path if os.path.isabs(path) else os.path.join(ROOT, path)


def call_file(path: str, function: str):
  """Imports a .py file (lmjax.core.pyfile) and returns `function()`; failures are PlanError."""
  try:
    return pyfile.call_function(repo_path(path), function, shown_as=path)
  except pyfile.PyFileError as e:
    raise PlanError(str(e)) from None


def load_config(base_config) -> ConfigDict:
  """The unresolved config of a config file (its get_config()), or a copy of a ConfigDict."""
  if isinstance(base_config, ConfigDict):
    return copy.deepcopy(base_config)
  config = call_file(base_config, 'get_config')
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
      raise PlanError(f'{where}config.{key}={value!r}: {one_line(e)}') from None
  return config


def resolve_config(config: ConfigDict, where: str) -> ConfigDict:
  """lmjax.config.resolve, its error a PlanError starting with `where`."""
  try:
    return resolve(config)
  except ConfigError as e:
    raise PlanError(f'{where}{e}') from None


def resolve_overrides(base_config, overrides: dict, where: str) -> ConfigDict:
  """Base config, then `overrides`, then resolve(); PlanError starting with `where`."""
  return resolve_config(apply_overrides(load_config(base_config), overrides, where), where)


def resolve_run(base_config, run, parent_dir: str | None = None) -> ConfigDict:
  """The resolved config of a run; a cooldown branch given `parent_dir`, its stable run's
  directory, starts from there (sweeps.Run.branch_overrides). PlanError naming the run."""
  return resolve_overrides(base_config, {**run.overrides, **run.branch_overrides(parent_dir)},
                           f'run {run.name}: ')


def measure(base: ConfigDict, model: dict, seq_len: int, where: str) -> Counts:
  """The counts of `base` with the model fields `model` at `seq_len`; `base` is not changed."""
  config = apply_overrides(copy.deepcopy(base), {**model, 'data.seq_len': seq_len}, where)
  return counts(resolve_config(config, where))
