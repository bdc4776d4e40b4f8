"""The coordinate check of μP (Yang et al. 2022, "Tensor Programs V", Sec. 6 and Fig. 5; Dey et
al. 2025, Fig. 7, for depth): train a few AdamW steps at several widths (or depths) from the same
data and watch the size of the activations. Under a parametrization that transfers, each
activation's root mean square stays about the same as the model widens; under the standard one,
the output logits (and the blocks' updates) grow with width.

`coord_check` trains each shape `steps` steps at the config's learning rate, constant, without
warmup, and after every update t = 0..steps measures on one fixed batch: the embedding output,
each block's attention logits (the causal ones), attention output, MLP output and block output
(named block_{i}.<quantity>, and last_block.<quantity> for the last block at every depth), and the
output logits. Widths change d_model with n_heads fixed (head_dim = d_model / n_heads)
and d_ff by the preset's rule; the base shape of mup is the first width (and first depth).
`write` saves the table as JSON and one figure per sweep, SP and μP side by side.
"""
from __future__ import annotations

import dataclasses
import os

import jax
from ml_collections import ConfigDict

from lmjax.config import ConfigError, resolve
from lmjax.core import atomic, figures
from lmjax.data import loader
from lmjax.model.transformer import Attention, Block, Mlp, Transformer
from lmjax.train.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg

QUANTITIES = ('embedding', 'attention_logits', 'attention_out', 'mlp_out', 'block_out',
              'output_logits')


@dataclasses.dataclass
class CoordCheck:
  """rows: one per (parametrization, axis, size, step t, activation name) with its RMS; `axis`
  is width (d_model) or depth (n_layers)."""
  rows: list
  steps: int

  def values(self, parametrization, axis, name, step):
    """{size: rms} of one activation after `step` updates (block names: block_{i}.quantity)."""
    return {r['size']: r['rms'] for r in self.rows if r['parametrization'] == parametrization
            and r['axis'] == axis and r['name'] == name and r['step'] == step}

  def spread(self, parametrization, axis, name, step=None):
    """Largest over smallest RMS across sizes after `step` updates (default: the last)."""
    v = list(self.values(parametrization, axis, name, self.steps if step is None else step)
             .values())
    return max(v) / min(v)

  def growth(self, parametrization, axis, name, step=None):
    """RMS at the largest size over RMS at the smallest, after `step` updates."""
    v = self.values(parametrization, axis, name, self.steps if step is None else step)
    return v[max(v)] / v[min(v)]

  def names(self, axis):
    return sorted({r['name'] for r in self.rows if r['axis'] == axis}, key=_order)


def _order(name):
  block, _, quantity = name.rpartition('.')
  special = {'': 0, 'last_block': 10 ** 6}
  index = special[block] if block in special else int(block.split('_')[1]) + 1
  return index, QUANTITIES.index(quantity)


def _sizes(text, what):
  """Sizes from '32,64' or a sequence of ints; ConfigError in one line."""
  if not text:
    return ()
  if not isinstance(text, str):
    text = ','.join(map(str, text))
  try:
    sizes = tuple(int(x) for x in str(text).split(','))
  except ValueError:
    sizes = ()
  if len(sizes) < 2 or min(sizes) < 1 or list(sizes) != sorted(set(sizes)):
    raise ConfigError(f'--{what}={text}: expected two or more increasing positive integers, '
                      'e.g. 32,64,128,256')
  return sizes


def shape_config(config: ConfigDict, parametrization, d_model, n_layers, base_d_model,
                 base_n_layers, steps) -> ConfigDict:
  """The resolved config of one shape of the check (module doc)."""
  c = ConfigDict(config.to_dict())
  m = c.model
  if d_model % m.n_heads or (d_model // m.n_heads) % 2:
    raise ConfigError(f'width {d_model}: config.model.n_heads={m.n_heads} must divide it into '
                      'an even head_dim')
  m.parametrization, m.d_model, m.n_layers, m.d_ff, m.head_dim = (
      parametrization, d_model, n_layers, None, 0)
  m.scan_layers = False
  mup = parametrization == 'mup'
  m.mup_base_d_model = base_d_model if mup else 0
  m.mup_base_head_dim = base_d_model // m.n_heads if mup else 0
  m.mup_base_n_layers = base_n_layers if mup else 0
  if not mup:
    m.mup_depth_alpha = 1.0
  c.optim.schedule, c.optim.warmup_steps, c.train.steps = 'constant', 0, steps
  return resolve(c)


def _probe(model):
  """params, batch -> the check's activations (module doc) as a flat {name: rms}."""
  def wanted(module, method):
    return method == '__call__' and isinstance(module, (Attention, Mlp, Block, Transformer))

  def rms(x):
    return jax.numpy.sqrt(jax.numpy.mean(x.astype(jax.numpy.float32) ** 2))

  @jax.jit
  def probe(params, batch):
    _, state = model.apply({'params': params}, batch['inputs'], batch.get('positions'),
                           batch.get('segment_ids'), capture_intermediates=wanted,
                           mutable=['intermediates'])
    inter = state['intermediates']
    out = {'embedding': inter['embedding_rms'][0], 'output_logits': rms(inter['__call__'][0])}
    for i in range(model.cfg.n_layers):
      block = inter[f'block_{i}']
      out[f'block_{i}.attention_logits'] = block['attn']['attention_logits_rms'][0]
      out[f'block_{i}.attention_out'] = rms(block['attn']['__call__'][0])
      out[f'block_{i}.mlp_out'] = rms(block['mlp']['__call__'][0])
      out[f'block_{i}.block_out'] = rms(block['__call__'][0])
    last = model.cfg.n_layers - 1  # the same activations again under a name every depth has
    out.update({f'last_block.{q}': out[f'block_{last}.{q}'] for q in QUANTITIES[1:5]})
    return out
  return probe


def _one_shape(c, batches):
  """[(step t, {name: rms})] for t = 0..steps: a fixed batch measured after t updates."""
  model, tx = build_model_and_optimizer(c)
  state, step = init_state(model, tx, c), make_train_step(model, tx, c)
  probe, schedule = _probe(model), schedule_arg(c)
  out = [(0, jax.device_get(probe(state.params, batches[0])))]
  for t, batch in enumerate(batches, 1):
    state, _ = step(state, batch, schedule)
    out.append((t, jax.device_get(probe(state.params, batches[0]))))
  return out


def coord_check(config: ConfigDict, widths='', depths='', steps=5,
                parametrizations=('sp', 'mup'), log=print) -> CoordCheck:
  """The check over `widths` (d_model, at the config's depth) and `depths` (n_layers, at the
  config's width), each a comma-separated list or sequence of sizes; ConfigError in one line."""
  widths, depths = _sizes(widths, 'widths'), _sizes(depths, 'depths')
  if not widths and not depths:
    raise ConfigError('--widths or --depths: give at least one of them')
  if not isinstance(steps, int) or steps < 1:
    raise ConfigError(f'--steps={steps}: expected a positive integer')
  base = resolve(ConfigDict(config.to_dict()))
  it = loader.train_iterator(loader.load(base), base)
  batches = [next(it) for _ in range(steps)]
  width, depth = base.model.d_model, base.model.n_layers
  sweeps = [('width', w, depth, widths[0], depth) for w in widths]
  sweeps += [('depth', width, d, width, depths[0]) for d in depths]
  rows = []
  for parametrization in parametrizations:
    for axis, d_model, n_layers, base_d, base_l in sweeps:
      c = shape_config(config, parametrization, d_model, n_layers, base_d,
                       base_l if axis == 'depth' else 0, steps)
      for t, values in _one_shape(c, batches):
        rows += [dict(parametrization=parametrization, axis=axis,
                      size=d_model if axis == 'width' else n_layers, step=t, name=name,
                      rms=float(v)) for name, v in values.items()]
      last = {r['name']: r['rms'] for r in rows[-len(values):]}
      log(f'{parametrization:>3} {axis} {d_model if axis == "width" else n_layers:>5}: after '
          f'{steps} steps, output logits RMS {last["output_logits"]:.3g}, last block output '
          f'{last["last_block.block_out"]:.3g}')
  return CoordCheck(rows, steps)


def table(check: CoordCheck, parametrizations=('sp', 'mup')) -> str:
  """Each activation's spread across sizes after the last step (largest / smallest RMS), and
  its growth (RMS at the largest size / at the smallest), per parametrization and axis."""
  lines = []
  for axis in ('width', 'depth'):
    names = [n for n in check.names(axis) if not n.startswith('block_')]
    if not names:
      continue
    lines.append(f'{axis}: spread (growth) of the RMS across sizes after {check.steps} steps')
    lines.append(f'  {"activation":<30}' + ''.join(f'{p:>18}' for p in parametrizations))
    for name in names:
      cells = ''.join(f'{check.spread(p, axis, name):>9.2f} ({check.growth(p, axis, name):5.2f})'
                      for p in parametrizations)
      lines.append(f'  {name:<30}{cells}')
  return '\n'.join(lines)


def _figure(check: CoordCheck, axis, parametrizations):
  """Rows: parametrizations; columns: the embedding, the last block's activations and the
  output logits; x: size; one line per step t."""
  names = ['embedding', *(f'last_block.{q}' for q in QUANTITIES[1:5]), 'output_logits']
  fig, axes = figures.figure(ncols=len(names), nrows=len(parametrizations), width=2.6,
                             height=2.4 * len(parametrizations), sharex=True)
  from matplotlib import colormaps
  colours = [colormaps['viridis'](t / max(check.steps, 1)) for t in range(check.steps + 1)]
  for row, parametrization in enumerate(parametrizations):
    for col, name in enumerate(names):
      ax = axes[row * len(names) + col]
      for t in range(check.steps + 1):
        v = check.values(parametrization, axis, name, t)
        sizes = sorted(v)
        ax.plot(sizes, [v[s] for s in sizes], 'o-', color=colours[t], ms=3, label=f't={t}')
      ax.set_xscale('log', base=2)
      ax.set_yscale('log')
      ax.set_title(f'{"SP" if parametrization == "sp" else "μP"}: {name}', fontsize=8)
      ax.tick_params(labelsize=7)
      if row == len(parametrizations) - 1:
        ax.set_xlabel('d_model' if axis == 'width' else 'n_layers', fontsize=8)
      if col == 0:
        ax.set_ylabel('RMS', fontsize=8)
  axes[len(names) - 1].legend(fontsize=6)
  return fig


def write(check: CoordCheck, out_dir, parametrizations=('sp', 'mup')) -> list:
  """out_dir/coordcheck.json and coordcheck_{width,depth}.png (atomically); their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [atomic.write_json(os.path.join(out_dir, 'coordcheck.json'),
                             {'steps': check.steps, 'rows': check.rows}, indent=1)]
  for axis in ('width', 'depth'):
    if any(r['axis'] == axis for r in check.rows):
      path = os.path.join(out_dir, f'coordcheck_{axis}.png')
      figures.write_png(_figure(check, axis, parametrizations), path)
      paths.append(path)
  return paths
