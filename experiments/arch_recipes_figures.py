"""The figures of the arch-recipes and MoE studies (the multiplier figures are
lmjax.analysis.figures'): every run's loss against compute with each group's fitted L(C), the
seeds at fixed (N, D), and the lr sweep. `groups`: experiments/sweeps/arch_recipes.py, Groups."""
from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import NullFormatter

from lmjax.core.figures import figure
from lmjax.scaling.multiplier import frontier_mask

def _color(groups, name):
  """A group's colour: tab10 in the order of groups.names (the presets: vaswani, gpt2, llama)."""
  names = list(groups.names)
  return colormaps['tab10'](names.index(name) if name in names else len(names))


def loss_vs_compute(done, fits, groups):
  """Every finished run (seed 0 filled, other seeds hollow), the frontier of each group, and
  L(C) from the fits: each non-reference group's own, the reference's from its fit with the
  last group (llama for the presets)."""
  fig, (ax,) = figure()
  for preset, g in done.groupby('group'):
    c, loss = g['C'].to_numpy(float), g['loss'].to_numpy(float)
    first = g['seed'].to_numpy() == 0
    color = _color(groups, preset)
    ax.scatter(c[first], loss[first], s=14, color=color, alpha=0.5, label=f'{preset} runs')
    ax.scatter(c[~first], loss[~first], s=14, facecolors='none', edgecolors=color, alpha=0.7)
    on, _ = frontier_mask(c, loss)
    order = np.argsort(c[on])
    ax.plot(c[on][order], loss[on][order], ':', color=color, lw=0.8)
  grid = np.geomspace(done['C'].min() / 1.5, done['C'].max() * 1.5, 200)
  curves = {}
  for _, m in sorted(fits.items(), key=lambda kv: kv[0] != groups.names[-1]):
    for name, p in m.params().items():
      curves.setdefault(name, p)  # the reference: from the first fit (the last group's)
  for name, p in curves.items():
    ax.plot(grid, p['E'] + p['A'] * grid ** (-p['alpha']), color=_color(groups, name), lw=1.5,
            label=f'{name} L(C), α={p["alpha"]:.3f}')
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_ylim(done['loss'].min() * 0.95, done['loss'].max() * 1.05)
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.set_xlabel('training FLOPs C')
  ax.set_ylabel('final eval loss (nats/byte)')
  ax.legend(fontsize=7)
  ax.set_title('Loss against compute; hollow: seeds other than 0; dotted: frontiers', fontsize=9)
  return fig


def seed_spread(seeds, groups):
  """At each seeded (size, budget): each group's seeds (dots), mean (bar) and sd."""
  fig, (ax,) = figure(width=7.2)
  cells = sorted({(r['n_layers'], r['d_model'], r['budget']) for r in seeds},
                 key=lambda k: (k[2], k[0] * k[1]))
  names = list(groups.names)
  width = 0.8 / max(1, len(names))
  for r in seeds:
    x = cells.index((r['n_layers'], r['d_model'], r['budget'])) + \
        (names.index(r['preset']) - 1) * width
    color = _color(groups, r['preset'])
    ax.plot([x - width / 3, x + width / 3], [r['mean']] * 2, color=color, lw=2)
    ax.errorbar([x], [r['mean']], yerr=[r['sd']], color=color, capsize=3, lw=0.8)
    ax.scatter(np.full(len(r['losses']), x), r['losses'], s=10, color=color)
  for p in names:
    ax.plot([], [], color=_color(groups, p), lw=2, label=p)
  ax.set_xticks(range(len(cells)))
  ax.set_xticklabels([f'{l}×{d}\nC={b:.2g}' for l, d, b in cells], fontsize=8)
  ax.set_ylabel('final eval loss: each seed, mean ± sd')
  ax.legend(fontsize=8)
  ax.set_title(f'Run-to-run noise at fixed (N, D) next to the differences between {groups.word}s',
               fontsize=9)
  return fig


def lr_sweep(lr_rows, groups):
  """Final loss against learning rate per group; the chosen lr circled, diverged runs marked."""
  fig, (ax,) = figure()
  finite = [r['loss'] for r in lr_rows if math.isfinite(r['loss'])]
  top = max(finite) * 1.05 if finite else 1.0
  for p in groups.names:
    mine = sorted((r for r in lr_rows if r['preset'] == p), key=lambda r: r['lr'])
    if not mine:
      continue
    lr = np.array([r['lr'] for r in mine])
    loss = np.array([r['loss'] if math.isfinite(r['loss']) else np.nan for r in mine])
    color = _color(groups, p)
    ax.plot(lr, loss, 'o-', color=color, label=p)
    for r in mine:
      if not math.isfinite(r['loss']):
        ax.scatter([r['lr']], [top], marker='x', color=color)
      if r['chosen']:
        ax.scatter([r['lr']], [r['loss']], s=120, facecolors='none', edgecolors=color)
  ax.set_xscale('log')
  ax.set_xlabel('peak learning rate at the lr sweep\'s size')
  ax.set_ylabel('final eval loss')
  ax.legend(fontsize=8)
  ax.set_title('lr sweep: circled, chosen; x, diverged', fontsize=9)
  return fig
