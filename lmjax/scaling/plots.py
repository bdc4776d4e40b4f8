"""PNG plots of scaling fits (matplotlib, Agg canvas; no display and no pyplot state).

- `kaplan(...)`: loss against N, D or C, every run faint, the runs fitted marked, the fitted
  law with its bootstrap band (Kaplan et al. 2020, Figs. 1 and 13 style); optionally the loss
  along the compute-optimal frontier of a Chinchilla fit.
- `isoflop(...)`: the IsoFLOP profiles and their parabolas, then N_opt against C with the fitted
  power law (Hoffmann et al. 2022, Fig. 3).
- `frontier(...)`: N_opt and D_opt against C from every fit, with the published Chinchilla
  (Approach 3, Hoffmann et al. 2022, App. D.2) and Kaplan (Kaplan et al. 2020, Table 6) lines for
  reference (Hoffmann et al. 2022, Fig. 1 style).
- `chinchilla(...)`: observed against fitted loss, and the log-space residuals against N.
- `hparams(...)`: loss against lr per budget with each optimum, and lr_opt(C), B_opt(C) with
  their power laws (DeepSeek-AI 2024, Fig. 3 style; hparams.py).
Bands are the 2.5-97.5 percentiles of the curve over bootstrap replicates.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps, ticker

from lmjax.core.figures import figure
from lmjax.scaling import hparams as hparams_lib
from lmjax.scaling import laws, predict

_X = {'kaplan_n': ('N', 'parameters N'), 'kaplan_d': ('D', 'tokens D'),
      'kaplan_c': ('C', 'training FLOPs C')}


def _loss_log_axis(axis):
  """Log scale with plain labels (2, 2.5, 3 rather than 2×10⁰): loss spans less than a decade."""
  axis.set_major_locator(ticker.LogLocator(subs=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)))
  axis.set_major_formatter(ticker.FormatStrFormatter('%g'))
  axis.set_minor_formatter(ticker.NullFormatter())


def _band(theta_samples, fn, level=0.95):
  lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
  values = fn(theta_samples)
  return np.nanpercentile(values, lo_q, 0), np.nanpercentile(values, hi_q, 0)


def _span(values, lo=0.8, hi=1.25):
  return np.geomspace(np.min(values) * lo, np.max(values) * hi, 200)


def _fmt_params(params):
  return ', '.join(f'{k}={v:.4g}' for k, v in params.items())


def kaplan(table, fit, path, boot=None, chinchilla_fit=None, title=''):
  """Loss against the fit's X; see module doc."""
  key, label = _X[fit.law]
  x_all = {'N': table.N, 'D': table.D, 'C': table.C}[key]
  fig, (ax,) = figure(height=4.8)
  ax.scatter(x_all, table.loss, s=8, c='0.75', label=f'runs ({len(table)})', zorder=1)
  ax.scatter(x_all[fit.rows], table.loss[fit.rows], s=18, c='tab:blue', zorder=3,
             label=f'fitted ({len(fit.rows)}' + (', lower envelope)' if
                                                fit.settings.get('frontier') else ')'))
  xs = _span(x_all)
  ax.plot(xs, predict.loss_curve(fit, xs)[0], c='tab:red', lw=2, zorder=4,
          label=f'fit: {_fmt_params(fit.params)}')
  if boot is not None:
    lo, hi = _band(boot['theta'], lambda th: predict.loss_curve(fit, xs, theta=th))
    ax.fill_between(xs, lo, hi, color='tab:red', alpha=0.2, lw=0, zorder=2,
                    label='95% bootstrap band')
  if chinchilla_fit is not None and key == 'C':
    _, _, l_opt = predict.chinchilla_optimal(chinchilla_fit.params, xs)
    ax.plot(xs, l_opt[0] if l_opt.ndim > 1 else l_opt, c='tab:green', ls='--', lw=1.5,
            zorder=4, label='L(N_opt, D_opt) from the Chinchilla fit')
  ax.set_xscale('log')
  ax.set_yscale('log')
  _loss_log_axis(ax.yaxis)
  ax.set_xlabel(label)
  ax.set_ylabel('loss')
  ax.set_title(title or f'{fit.law}: L({key}) = '
               + ('E + ' if 'E' in fit.params else '') + f'({key}_c/{key})^alpha_{key}')
  ax.legend(fontsize=7)
  fig.savefig(path, dpi=120)
  return path


def isoflop(table, fit, path, boot=None):
  """IsoFLOP profiles with parabolas, and N_opt against C; see module doc."""
  fig, (ax, ax2) = figure(2, height=4.8)
  cmap = colormaps['viridis']
  n_b = len(fit.budgets)
  for i, bud in enumerate(fit.budgets):
    color = cmap(i / max(n_b - 1, 1))
    n, loss = table.N[bud.rows], table.loss[bud.rows]
    left_out = np.setdiff1d(bud.all_rows, bud.rows)
    if left_out.size:  # runs beyond the n_nearest fitted ones
      ax.scatter(table.N[left_out], table.loss[left_out], s=10, facecolor='none',
                 edgecolor=color, linewidths=0.6, alpha=0.6)
    ax.scatter(n, loss, s=12, color=color, label=f'C={bud.c:.3g}' + (
        f' ({", ".join(bud.flags)})' if bud.flags else ''))
    if np.all(np.isfinite(bud.coef)):
      xs = np.linspace(np.log(n).min(), np.log(n).max(), 100)
      u = xs - bud.x_mean
      ax.plot(np.exp(xs), bud.coef[0] + bud.coef[1] * u + bud.coef[2] * u * u, color=color,
              lw=1)
    if np.isfinite(bud.n_opt):
      ax.scatter([bud.n_opt], [bud.loss_opt], marker='*', s=90, zorder=5,
                 facecolor='none' if bud.flags else color, edgecolor='k', linewidths=0.8)
  fitted = np.concatenate([b.rows for b in fit.budgets])
  lo, hi = table.loss[fitted].min(), table.loss[fitted].max()
  ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))  # runs far above are cut off
  ax.set_xscale('log')
  ax.set_xlabel('parameters N')
  ax.set_ylabel('loss')
  ax.set_title('IsoFLOP profiles (stars: parabola minima, hollow if flagged;\n'
               'hollow dots: runs not fitted)', fontsize=10)
  ax.legend(fontsize=6, ncol=2)
  cs = np.array([b.c for b in fit.budgets])
  used = np.zeros(n_b, bool)
  used[fit.used] = True
  n_opt = np.array([b.n_opt for b in fit.budgets])
  ax2.scatter(cs[used], n_opt[used], c='tab:blue', zorder=3, label='minima used')
  if (~used).any():
    ax2.scatter(cs[~used], n_opt[~used], facecolor='none', edgecolor='tab:blue', zorder=3,
                label='flagged, not used')
  grid = _span(cs, 0.7, 1.4)
  ax2.plot(grid, fit.n_opt(grid), c='tab:red',
           label=f'N_opt = {np.exp(fit.log_k_n):.3g}·C^{fit.a:.3f}')
  if boot is not None:
    curves = np.exp(boot['log_k_n'][:, None] + boot['a'][:, None] * np.log(grid)[None])
    ax2.fill_between(grid, np.nanpercentile(curves, 2.5, 0), np.nanpercentile(curves, 97.5, 0),
                     color='tab:red', alpha=0.2, lw=0, label='95% bootstrap band')
  ax2.set_xscale('log')
  ax2.set_yscale('log')
  ax2.set_xlabel('training FLOPs C')
  ax2.set_ylabel('N_opt')
  ax2.set_title('Approach 2: compute-optimal N')
  ax2.legend(fontsize=7)
  fig.savefig(path, dpi=120)
  return path


def frontier(path, c_data, chinchilla_fit=None, chinchilla_boot=None, isoflop_fit=None,
             isoflop_boot=None, approach1_fit=None, c_max=1e26):
  """N_opt and D_opt against C from the fits, with the published lines; see module doc."""
  grid = np.geomspace(np.min(c_data) * 0.5, max(c_max, np.max(c_data) * 10), 200)
  fig, (ax_n, ax_d) = figure(2, height=4.8)
  pub = laws.CHINCHILLA_APPROACH3
  n_pub, d_pub = laws.compute_optimal(grid, pub['A'], pub['B'], pub['alpha'], pub['beta'])
  n_kap = laws.kaplan_n_opt(grid)
  for ax, ours_key, pub_v, kap_v in ((ax_n, 0, n_pub, n_kap), (ax_d, 1, d_pub,
                                                              grid / (6 * n_kap))):
    ax.plot(grid, pub_v, c='k', ls='--', lw=1, label='Chinchilla, published Approach 3')
    ax.plot(grid, kap_v, c='0.5', ls=':', lw=1.5, label='Kaplan et al. 2020 (N non-emb.)')
    if chinchilla_fit is not None:
      vals = predict.chinchilla_optimal(chinchilla_fit.params, grid)[ours_key]
      ax.plot(grid, vals.ravel(), c='tab:red', lw=2, label='this fit, Approach 3')
      if chinchilla_boot is not None:
        samples = predict.chinchilla_optimal(chinchilla_boot['params'], grid)[ours_key]
        ax.fill_between(grid, np.nanpercentile(samples, 2.5, 0),
                        np.nanpercentile(samples, 97.5, 0), color='tab:red', alpha=0.2, lw=0,
                        label='95% bootstrap band')
    if isoflop_fit is not None:
      fn = isoflop_fit.n_opt if ours_key == 0 else isoflop_fit.d_opt
      ax.plot(grid, fn(grid), c='tab:blue', lw=1.5, label='this fit, Approach 2')
      if isoflop_boot is not None:
        k, p = ('log_k_n', 'a') if ours_key == 0 else ('log_k_d', 'b')
        curves = np.exp(isoflop_boot[k][:, None] + isoflop_boot[p][:, None] * np.log(grid))
        ax.fill_between(grid, np.nanpercentile(curves, 2.5, 0),
                        np.nanpercentile(curves, 97.5, 0), color='tab:blue', alpha=0.15, lw=0)
      used = isoflop_fit.used
      ax.scatter([isoflop_fit.budgets[i].c for i in used],
                 [(isoflop_fit.budgets[i].n_opt, isoflop_fit.budgets[i].d_opt)[ours_key]
                  for i in used], c='tab:blue', s=16, zorder=4, label='IsoFLOP minima')
    if approach1_fit is not None:
      ax.plot(approach1_fit.c, (approach1_fit.n_opt, approach1_fit.d_opt)[ours_key],
              c='tab:green', lw=1, label='this fit, Approach 1 envelope')
    ax.axvspan(np.min(c_data), np.max(c_data), color='0.9', zorder=0, label='C of the runs')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('training FLOPs C')
    ax.set_ylabel(('N_opt (parameters)', 'D_opt (tokens)')[ours_key])
    ax.legend(fontsize=7)
  ax_n.set_title('Compute-optimal model size')
  ax_d.set_title('Compute-optimal tokens')
  fig.savefig(path, dpi=120)
  return path


def chinchilla(table, fit, path):
  """Observed against fitted loss, and residuals against N; see module doc."""
  fig, (ax, ax2) = figure(2, height=4.8)
  pred = predict.loss_curve(fit, table.N, table.D)[0]
  sc = ax.scatter(pred, table.loss, c=np.log10(table.C), s=12, cmap='viridis')
  lims = [min(pred.min(), table.loss.min()) * 0.97, max(pred.max(), table.loss.max()) * 1.03]
  ax.plot(lims, lims, c='k', lw=1, label='y = x')
  ax.set_xscale('log')
  ax.set_yscale('log')
  _loss_log_axis(ax.xaxis)
  _loss_log_axis(ax.yaxis)
  ax.set_xlabel('fitted loss L(N, D)')
  ax.set_ylabel('observed loss')
  ax.set_title('Chinchilla fit: ' + _fmt_params({k: v for k, v in fit.params.items()
                                                  if k != 'sigma'}), fontsize=8)
  ax.legend(fontsize=7)
  fig.colorbar(sc, ax=ax, label='log10 C')
  resid = np.log(table.loss) - np.log(pred)
  ax2.scatter(table.N, resid, c=np.log10(table.C), s=12, cmap='viridis')
  ax2.axhline(0, c='k', lw=1)
  ax2.set_xscale('log')
  ax2.set_xlabel('parameters N')
  ax2.set_ylabel('log L − log L̂')
  ax2.set_title(f'residuals (median |r| = {np.median(np.abs(resid)):.3g})')
  fig.savefig(path, dpi=120)
  return path


def hparams_figure(fit, title=''):
  """A hparams.HparamFit: loss against lr at each budget (the batch size nearest its B*; stars:
  optima, hollow when at the grid's edge), then lr_opt and B_opt against C with their laws and
  bootstrap bands; DeepSeek's lr law for reference (its B is in tokens, so not drawn)."""
  fig, axes = figure(3, width=4.8, height=4.4)
  cmap = colormaps['viridis']
  lr, batch, loss = fit.runs['lr'], fit.runs['batch_size'], fit.runs['loss']
  for i, b in enumerate(fit.budgets):
    color = cmap(i / max(len(fit.budgets) - 1, 1))
    rows = b.rows[np.isfinite(loss[b.rows])]
    if not rows.size:
      continue
    sizes = np.unique(batch[rows])
    near = sizes[np.argmin(np.abs(np.log(sizes) - np.log(b.batch_size)))] if np.isfinite(
        b.batch_size) else sizes[0]
    rows = rows[batch[rows] == near]
    xs = np.unique(lr[rows])
    axes[0].plot(xs, [loss[rows][lr[rows] == x].mean() for x in xs], 'o-', color=color, ms=3,
                 lw=1, label=f'C={b.c:.3g}, B={near:.3g}')
    if np.isfinite(b.lr):
      axes[0].scatter([b.lr], [b.loss], marker='*', s=90, zorder=5, edgecolor='k',
                      facecolor='none' if b.flags else color, linewidths=0.8)
  axes[0].set_xscale('log')
  axes[0].set_xlabel('learning rate')
  axes[0].set_ylabel('loss')
  axes[0].set_title('loss against lr (stars: optima)', fontsize=10)
  axes[0].legend(fontsize=6)
  cs = np.array([b.c for b in fit.budgets])
  grid = _span(cs, 0.7, 1.4)
  for ax, q, label in ((axes[1], 'lr', 'lr_opt'), (axes[2], 'batch_size', 'B_opt')):
    values = np.array([getattr(b, q) for b in fit.budgets])
    used = np.array([b.usable(q) for b in fit.budgets])
    ax.scatter(cs[used], values[used], c='tab:blue', zorder=3, label='optima used')
    if (~used & np.isfinite(values)).any():
      ax.scatter(cs[~used], values[~used], facecolor='none', edgecolor='tab:blue', zorder=3,
                 label='at an edge, not used')
    if (q, 'C') in fit.laws:
      law = fit.laws[q, 'C']
      ax.plot(grid, law.predict(grid), c='tab:red', label=f'{label} = {law.a:.3g}·C^{law.b:.3f}')
      if law.samples is not None:
        lo, hi = law.band(grid, fit.settings['level'])
        ax.fill_between(grid, lo, hi, color='tab:red', alpha=0.2, lw=0,
                        label=f'{100 * fit.settings["level"]:g}% bootstrap band')
    if q == 'lr':
      a, b = hparams_lib.DEEPSEEK_2024['lr']
      ax.plot(grid, a * grid ** b, c='k', ls='--', lw=1, label=f'DeepSeek 2024: {a}·C^{b}')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('training FLOPs C')
    ax.set_ylabel(label + (' (sequences)' if q == 'batch_size' else ''))
    ax.legend(fontsize=7)
  axes[1].set_title('optimal learning rate', fontsize=10)
  axes[2].set_title('optimal batch size', fontsize=10)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def hparams(fit, path):
  """hparams_figure written as a PNG; returns the path."""
  hparams_figure(fit).savefig(path, dpi=120)
  return path
