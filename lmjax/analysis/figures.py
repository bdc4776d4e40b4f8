"""Figures for notebooks: learning curves with the compute-optimal frontier, a user law's fit,
a compute multiplier, hyperparameter laws (`hparams`) and the lr shift with width (`lr_shift`);
and `show`, which puts figures, PNG files or PNG bytes into a notebook.

Every function returns a matplotlib Figure on the Agg canvas (no pyplot state), so they work
the same in Colab, headless CI and scripts; `fig.savefig(path)` writes one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps, colors
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from lmjax.core import figures
from lmjax.core.figures import figure
from lmjax.scaling import envelope, plots

X_LABELS = {'flops': 'training FLOPs C', 'tokens': 'tokens D', 'step': 'step'}


def frontier(x, y):
  """The lower envelope of points (x, y): the lowest y reached at or before each x, at the
  points that set it (envelope.py), sorted by x."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
  x, y = x[ok], y[ok]
  keep = envelope.lower_envelope(x, y)
  order = np.argsort(x[keep])
  return x[keep][order], y[keep][order]


def curves(runs: pd.DataFrame, curves: pd.DataFrame, x='flops', y='eval_loss',
           color='model.d_model', show_frontier=True, title=''):
  """Every run's learning curve of `y` against `x` ('flops', 'tokens' or 'step') on log axes,
  coloured by a runs-table column (up to 10 distinct numbers, such as a sweep's model sizes, one
  colour each in order; more on a colour scale; anything else by category), with the
  compute-optimal frontier: the lowest loss any run reached at each x. Train-loss curves are
  the logged window means (metrics.jsonl's `loss`; older runs logged the last step's)."""
  fig, (ax,) = figure()
  data = curves[np.isfinite(curves[y].astype(float))] if y in curves else curves.iloc[:0]
  values = runs.set_index('name', drop=False)[color] if color in runs else pd.Series(dtype=float)
  numeric = pd.api.types.is_numeric_dtype(values) and values.notna().any()
  distinct = sorted(values.dropna().unique()) if numeric else []
  if numeric and len(distinct) <= 10:  # a handful of sizes: discrete colours, in the legend
    palette = colormaps['viridis'](np.linspace(0, 0.9, len(distinct)))
    cats = [f'{v:g}' for v in distinct]
    cmap = lambda i: palette[i]
    pick = lambda name: palette[distinct.index(values[name])] if name in values and \
        values[name] in distinct else '0.5'
    numeric = False
  elif numeric:
    norm = colors.LogNorm(values.min(), values.max()) if values.min() > 0 and \
        values.max() > values.min() else colors.Normalize(values.min(), values.max() + 1e-12)
    cmap = colormaps['viridis']
    pick = lambda name: cmap(norm(values.get(name, np.nan)))
  else:
    cats = list(dict.fromkeys(values.astype(str)))
    tab = colormaps['tab10']
    cmap = lambda i: tab(i % 10)
    pick = lambda name: cmap(cats.index(str(values.get(name)))) if name in values else '0.5'
  for name, c in data.groupby('name', sort=False):
    c = c.sort_values(x)
    ax.plot(c[x], c[y].astype(float), color=pick(name), lw=1.2, alpha=0.85,
            marker='.' if y.startswith('eval') else None, ms=4)
  if show_frontier and len(data):
    fx, fy = frontier(data[x], data[y])
    ax.plot(fx, fy, 'k--', lw=1.5, label='frontier (lowest loss at each x)')
    ax.legend(loc='upper right', fontsize=8)
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel(X_LABELS.get(x, x))
  ax.set_ylabel(y)
  ax.set_title(title or f'{data["name"].nunique()} runs, coloured by {color}')
  if numeric:
    fig.colorbar(_mappable(norm, cmap), ax=ax, label=color)
  elif cats:
    for i, cat in enumerate(cats):
      ax.plot([], [], color=cmap(i), label=f'{color}={cat}')
    ax.legend(loc='upper right', fontsize=8)
  return fig


def _mappable(norm, cmap):
  from matplotlib.cm import ScalarMappable
  return ScalarMappable(norm=norm, cmap=cmap)


def law_fit(fit, x_name=None, title=''):
  """A user law's fit: observed against fitted loss with its bootstrap interval per run, and
  the log residual against one input (default the law's first)."""
  fig, (a1, a2) = figure(2, width=5.2)
  problem = fit.problem
  x = problem.x
  pred = fit.predict(x)
  obs = problem.loss
  if 'lo' in pred:
    a1.errorbar(pred['value'], obs, xerr=[pred['value'] - pred['lo'], pred['hi'] - pred['value']],
                fmt='o', ms=4, elinewidth=0.8, alpha=0.8, label='runs (fit interval)')
  else:
    a1.plot(pred['value'], obs, 'o', ms=4, label='runs')
  lo, hi = min(obs.min(), pred['value'].min()), max(obs.max(), pred['value'].max())
  a1.plot([lo, hi], [lo, hi], 'k:', lw=1)
  a1.set_xlabel('fitted loss')
  a1.set_ylabel('observed loss')
  a1.legend(fontsize=8)
  name = x_name or fit.law.inputs[0]
  a2.scatter(x[name], np.log(obs) - np.log(pred['value']), s=12)
  a2.axhline(0, color='k', lw=0.8)
  a2.set_xscale('log' if np.all(x[name] > 0) else 'linear')
  a2.set_xlabel(name)
  a2.set_ylabel('log observed − log fitted')
  shown = ', '.join(f'{k}={v:.3g}' for k, v in fit.params.items() if k not in problem.fixed)
  fig.suptitle(title or f'{fit.law.name}: {shown}', fontsize=10)
  return fig


def multiplier(m, losses=None, title=''):
  """Both groups' frontier runs and fitted L(C) with bootstrap bands, and M(L) with its band."""
  fig, (a1, a2) = figure(2, width=5.6)
  names = m.names
  all_c = np.concatenate([m.data[n][0] for n in names])
  grid = np.geomspace(all_c.min() / 2, all_c.max() * 2, 200)
  theta = m.fit.boot['theta'] if m.fit.boot is not None else None
  for i, name in enumerate(names):
    c, loss = m.data[name]
    color = colormaps['tab10'](i)
    a1.scatter(c, loss, s=10, color=color, alpha=0.3)
    a1.scatter(c[m.rows[name]], loss[m.rows[name]], s=22, color=color, label=f'{name} frontier')
    p = m.params()[name]
    a1.plot(grid, p['E'] + p['A'] * grid ** (-p['alpha']), color=color, lw=1.5)
    if theta is not None:
      ps = m.params(theta)[name]
      with np.errstate(all='ignore'):
        band = ps['E'][:, None] + ps['A'][:, None] * grid[None] ** (-ps['alpha'][:, None])
      a1.fill_between(grid, *np.nanpercentile(band, [2.5, 97.5], 0), color=color, alpha=0.15)
  a1.set_xscale('log')
  a1.set_yscale('log')
  a1.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
  all_loss = np.concatenate([m.data[n][1] for n in names])
  a1.set_ylim(all_loss.min() * 0.95, all_loss.max() * 1.05)  # the bands, not runaway replicates
  a1.set_xlabel('training FLOPs C')
  a1.set_ylabel('eval loss')
  a1.legend(fontsize=8)
  from lmjax.scaling.multiplier import shared_range
  if losses is None:
    losses = np.linspace(*shared_range(m)[:2], 60)
  curve = m.curve(losses)
  a2.plot(curve['loss'], curve['value'], 'k-', lw=1.5, label=f'M = C_{names[1]} / C_{names[0]}')
  if 'lo' in curve:
    hi = np.where(np.isfinite(curve['hi']), curve['hi'], np.nan)
    a2.fill_between(curve['loss'], curve['lo'], hi, color='0.6', alpha=0.3,
                    label=f'{100 * m.level:g}% bootstrap interval')
  a2.axhline(1.0, color='k', lw=0.6, ls=':')
  a2.set_yscale('log')
  a2.set_xlabel('loss L')
  a2.set_ylabel('compute multiplier M(L)')
  a2.legend(fontsize=8)
  fig.suptitle(title or f'compute multiplier of {names[1]} over {names[0]}', fontsize=10)
  return fig


def hparams(fit, title=''):
  """A fit_hparams result: loss against lr per budget with the optima, then lr_opt(C) and
  B_opt(C) with their laws and bootstrap bands (the PNG launch.fit --law=hparams writes)."""
  return plots.hparams_figure(fit, title)


def lr_shift(shifts, title=''):
  """An lr_shift result (or {family: result}): per family, the seed-mean loss against lr at each
  width with its optimum (hollow: at the grid's edge, not in the slope); then the optima
  against width with each family's fitted line."""
  shifts = shifts if isinstance(shifts, dict) else {'': shifts}
  fig, axes = figure(len(shifts) + 1, width=4.6, height=4.2)
  cmap = colormaps['viridis']
  for k, (ax, (name, s)) in enumerate(zip(axes, shifts.items())):
    for i, (w, (lrs, losses), o, used) in enumerate(zip(s.widths, s.curves, s.optima, s.used)):
      color = cmap(i / max(len(s.widths) - 1, 1))
      ax.plot(lrs, losses, 'o-', ms=3, lw=1, color=color, label=f'width {w:g}')
      ax.scatter([o.x], [o.loss], marker='*', s=90, zorder=5, edgecolor='k',
                 facecolor=color if used else 'none', linewidths=0.8)
    ax.set_xscale('log')
    ax.set_xlabel('learning rate')
    ax.set_ylabel('loss (mean over seeds)')
    ax.set_title((f'{name}: ' if name else '') + 'loss against lr', fontsize=10)
    ax.legend(fontsize=7)
    last = axes[-1]
    color = colormaps['tab10'](k % 10)
    opt = np.array([o.x for o in s.optima])
    last.scatter(s.widths[s.used], opt[s.used], color=color, zorder=3)
    last.scatter(s.widths[~s.used], opt[~s.used], facecolor='none', edgecolor=color, zorder=3)
    iv = '' if s.samples is None else f' [{s.interval[0]:+.2f}, {s.interval[1]:+.2f}]'
    last.plot(s.widths, s.predict(s.widths), color=color,
              label=f'{name + ": " if name else ""}{s.slope:+.2f}{iv} octaves per doubling')
  last.set_xscale('log', base=2)
  last.set_yscale('log', base=2)
  last.set_xlabel('width (d_model)')
  last.set_ylabel('optimal learning rate')
  last.set_title('optimal lr against width', fontsize=10)
  last.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def accuracy(result, title=''):
  """A fit_accuracy result: accuracy against the loss with Gadre et al.'s law (as 1 − error) and
  the sigmoid, each with its bootstrap band; then accuracy against C with the two-step
  prediction and its paired band."""
  fig, (a1, a2) = figure(2, width=4.8, height=4.2)
  loss, acc, c = result['loss'], result['acc'], result['C']
  grid = np.linspace(loss.min() - 0.1 * np.ptp(loss), loss.max() + 0.1 * np.ptp(loss), 200)
  a1.scatter(loss, acc, s=18, color='k', zorder=3, label='runs')
  for name, color, flip in (('gadre', 'tab:blue', True), ('sigmoid', 'tab:orange', False)):
    p = result[name].predict({'L': grid})
    f = (lambda v: 1 - v) if flip else (lambda v: v)
    a1.plot(grid, f(p['value']), color=color, label=name)
    if 'lo' in p:
      a1.fill_between(grid, f(p['lo']), f(p['hi']), color=color, alpha=0.2, lw=0)
  a1.set_xlabel(result['loss_column'])
  a1.set_ylabel(result['column'])
  a1.set_title('accuracy against loss', fontsize=10)
  a1.legend(fontsize=8)
  cs = np.geomspace(c.min() / 2, c.max() * 10, 200)
  p = result['two_step'].predict(cs)
  a2.scatter(c, acc, s=18, color='k', zorder=3, label='runs')
  a2.plot(cs, p['value'], color='tab:green', label='two-step: C → loss → accuracy')
  if 'lo' in p:
    a2.fill_between(cs, p['lo'], p['hi'], color='tab:green', alpha=0.2, lw=0)
  a2.set_xscale('log')
  a2.set_xlabel('training FLOPs C')
  a2.set_ylabel(result['column'])
  a2.set_title('accuracy against compute', fontsize=10)
  a2.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def png(item) -> bytes:
  """PNG bytes of a Figure, a PNG file path, or PNG bytes."""
  if isinstance(item, Figure):
    return figures.png(item)
  if isinstance(item, (bytes, bytearray)):
    return bytes(item)
  with open(item, 'rb') as f:
    return f.read()


def show(*items):
  """Displays figures, PNG paths or PNG bytes in a notebook as images (Colab, Jupyter, CI's
  headless run alike); outside a notebook, does nothing."""
  try:
    from IPython import get_ipython
    from IPython.display import Image, display
  except ImportError:
    return
  if get_ipython() is None:
    return
  for item in items:
    display(Image(data=png(item), format='png'))
