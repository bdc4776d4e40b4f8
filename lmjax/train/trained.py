"""A trained run read back for evaluation and sampling: its config, model and params at a step.

`load(workdir, step=None)` reads the run's resolved config (its config.json, else a
checkpoint's), builds the model for this machine's mesh (`config.mesh`, as training does) and
restores only the params of the newest checkpoint, or of `step`, onto their shardings: the
optimizer state is never read. The params are checked against the digests saved with them
(lmjax/train/digests.py): a damaged checkpoint is named and the one before it used, unless
`step` asked for it. `params_path` instead names params written by
`checkpoint.export_params`. Every problem is a `RunError` whose message names the flag.
`quantized(run, scheme)` is the run with its projection weights quantised (lmjax/model/quantize.py).
"""
from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

import jax
import ml_collections

from lmjax.config import ConfigError
from lmjax.core import storage
from lmjax.core.errors import LmjaxError, one_line
from lmjax.core.rundir import RunDirError
from lmjax.model import quantize
from lmjax.train import checkpoint, sharding, steps


class RunError(LmjaxError, ValueError):
  """A run directory, step or params path that cannot be read; the message names the flag."""


class Trained(NamedTuple):
  config: Any          # the run's resolved config (ConfigDict)
  model: Any           # lmjax.model.transformer.Transformer for this machine's mesh
  params: Any          # sharded over the mesh
  step: int            # the checkpoint's step (-1 for exported params)
  mesh: Any
  param_shardings: Any
  workdir: str


def read_config(workdir) -> ml_collections.ConfigDict:
  """The run's resolved config (config.json, else its newest checkpoint's)."""
  if not storage.isdir(workdir):
    raise RunError(f'--workdir={workdir}: no such directory')
  try:
    saved = checkpoint.saved_config(workdir)
  except RunDirError as e:
    raise RunError(str(e)) from None
  if saved is None:
    raise RunError(f'--workdir={workdir}: not a run directory (no config.json and no '
                   'checkpoint)')
  return ml_collections.ConfigDict(saved)


def _stderr(message):
  print(message, file=sys.stderr)


def load(workdir, step=None, params_path=None, mesh_override=None, log=_stderr) -> Trained:
  """The run in `workdir` at `step` (default: its newest checkpoint that reads back intact,
  each damaged one named through `log`), or with the params at `params_path`. `mesh_override`
  (a config.mesh-like dict) replaces the run's mesh."""
  config = read_config(workdir)
  if mesh_override:
    config.mesh.update(mesh_override)
  try:
    mesh = sharding.make_mesh(config)
    model = steps.build_model(config, mesh)
  except (ConfigError, ValueError) as e:
    where = f' on --mesh={",".join(str(v) for v in mesh_override.values())}' if (
        mesh_override) else ''
    raise RunError(f'--workdir={workdir}: its model cannot run here{where}: {e}') from None
  shardings = steps.param_shardings(model, config, mesh)
  abstract = checkpoint.abstract_like(
      jax.eval_shape(lambda: steps.init_params(model, config, jax.random.PRNGKey(0))),
      shardings)
  if params_path:
    if not os.path.isdir(params_path):
      raise RunError(f'--params={params_path}: no such directory')
    try:
      params = checkpoint.load_params(params_path, abstract)
    except Exception as e:  # noqa: BLE001  (orbax raises many types for foreign directories)
      raise RunError(f'--params={params_path}: not params of this run\'s model '
                     f'({one_line(e, 160)})') from None
    return Trained(config, model, params, -1, mesh, shardings, workdir)
  return Trained(config, model, *_restore(workdir, config, abstract, step, log), mesh,
                 shardings, workdir)


def _restore(workdir, config, abstract_params, step, log):
  try:
    ckpts = checkpoint.Checkpoints(workdir, config.checkpoint, read_only=True)
  except checkpoint.CheckpointError as e:
    raise RunError(f'--workdir={workdir}: {e}') from None
  have = ckpts.steps()
  if not have:
    raise RunError(f'--workdir={workdir}: no checkpoint yet')
  if step is not None and step not in have:
    ckpts.close()
    raise RunError(f'--step={step}: no checkpoint at that step (have {have})')
  errors = []
  try:  # --step: that checkpoint or an error; else the newest that reads back intact
    for s in [step] if step is not None else reversed(have):
      try:
        return ckpts.restore_params(s, abstract_params), s
      except checkpoint.BaseMissing as e:
        raise RunError(f'--workdir={workdir}: {e}') from None
      except Exception as e:  # noqa: BLE001  (orbax raises many types for damaged files)
        errors.append(f'{ckpts.path(s)} ({one_line(e, 160)})')
        if step is None and s != have[0]:
          log(f'the checkpoint {ckpts.path(s)} is damaged ({one_line(e, 160)}); trying the '
              'previous one')
  finally:
    ckpts.close()
  if step is not None:
    raise RunError(f'--step={step}: the checkpoint {errors[0]} cannot be read')
  raise RunError(f'--workdir={workdir}: no checkpoint can be read: {"; ".join(errors)}')


def quantized(run: Trained, scheme: str, block: int = quantize.BLOCK) -> Trained:
  """`run` with its projection weights quantised by `scheme` (int8 | int4 | nf4; blocks of
  `block` input rows for the 4-bit schemes) and a model that dequantises them in its program;
  the quantised params are replicated over the run's mesh. QuantizeError for a bad scheme."""
  quantize.check(scheme, block)
  params = quantize.quantize_params(run.params, scheme, block)
  shardings = jax.tree.map(lambda _: sharding.replicated(run.mesh), params)
  params = jax.device_put(params, shardings)
  return run._replace(model=quantize.Dequantized(run.model), params=params,
                      param_shardings=shardings)
