"""The arch-recipes study's analysis, with lmjax.analysis: what experiments/arch_recipes.py
prints and writes to WORKDIR/results (results.md, results.json and the figures). The MoE study
(experiments/moe_vs_dense.py) runs the same analysis over its own groups (`analyse(groups=)`);
below, "preset" is a group and "vaswani" the reference.

- the lr sweep: each preset's final loss at each learning rate, the one chosen, and whether it
  lies at the edge of the grid (the best lr may then lie beyond it);
- the IsoFLOP curves: each preset's loss at each size and budget (seed 0), and whether each
  budget's minimum lies inside the sizes trained (else the frontier overstates L at that C);
- run-to-run noise: at each (size, budget) trained with several seeds, each preset's mean and
  standard deviation (ddof 1) over seeds, and the difference of each preset from vaswani there
  with its standard error sqrt(s_a²/n_a + s_b²/n_b);
- L(C) per preset and the compute multipliers (lmjax.scaling.multiplier): for p in llama, gpt2,
  L_g(C) = E + A_g·C^(−α_g) fitted jointly to p and vaswani (one asymptote E) on their compute
  frontiers, and M_p(L) = C_vaswani(L) / C_p(L), the compute vaswani needs to reach the loss p
  reaches with C_p(L) (M > 1: p's recipe is worth M× compute), at losses both frontiers reach
  (or, when they share none, in the gap between them, marked as extrapolated), with bootstrap
  intervals over runs, seeds included.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from lmjax import analysis
from lmjax.core.atomic import atomic_open, write_text
from lmjax.core.errors import LmjaxError

SHAPE = ('model.n_layers', 'model.d_model')


class ReportError(LmjaxError, ValueError):
  """The study's runs cannot be analysed; one line."""


def seed_table(done) -> list:
  """One row per preset and (size, budget) with more than one seed."""
  rows = []
  keys = [*SHAPE, 'budget']
  for (preset, *key), g in done.groupby(['group', *keys], sort=True):
    if len(g) < 2:
      continue
    loss = g['loss'].to_numpy(float)
    rows.append(dict(preset=preset, n_layers=int(key[0]), d_model=int(key[1]),
                     budget=float(key[2]), N_no_emb=int(g['N_no_emb'].iloc[0]), seeds=len(loss),
                     mean=float(loss.mean()), sd=float(loss.std(ddof=1)),
                     min=float(loss.min()), max=float(loss.max()),
                     losses=[float(x) for x in loss]))
  return rows


def isoflop_table(done) -> list:
  """Seed 0's loss at every size and budget, per preset, and whether the budget's minimum lies
  inside the sizes trained at it (not at the smallest or largest)."""
  rows = []
  first = done[done['seed'] == 0]
  for (preset, budget), g in first.groupby(['group', 'budget'], sort=True):
    g = g.sort_values('N_no_emb')
    losses = g['loss'].to_numpy(float)
    best = int(np.argmin(losses))
    rows.append(dict(preset=preset, budget=float(budget),
                     N_no_emb=[int(x) for x in g['N_no_emb']], loss=[float(x) for x in losses],
                     best_N_no_emb=int(g['N_no_emb'].iloc[best]),
                     inside=bool(0 < best < len(losses) - 1)))
  return rows


def differences(seeds, reference) -> list:
  """Each group's mean minus the reference's at each seeded (size, budget), with its standard
  error."""
  ref = {(r['n_layers'], r['d_model'], r['budget']): r for r in seeds
         if r['preset'] == reference}
  out = []
  for r in seeds:
    a = ref.get((r['n_layers'], r['d_model'], r['budget']))
    if r['preset'] == reference or a is None:
      continue
    se = math.sqrt(r['sd'] ** 2 / r['seeds'] + a['sd'] ** 2 / a['seeds'])
    diff = r['mean'] - a['mean']
    out.append(dict(preset=r['preset'], n_layers=r['n_layers'], d_model=r['d_model'],
                    budget=r['budget'], diff=diff, se=se, z=diff / se if se > 0 else math.inf))
  return out


def lr_table(lr_rows, groups=None) -> list:
  """The lr sweep's rows by group and multiplier, marked with the sweep file's own choice
  (choose_multipliers) and whether it lies at the edge of the grid."""
  from experiments.sweeps.arch_recipes import ARCH, choose_multipliers
  groups = groups or ARCH
  chosen = choose_multipliers(lr_rows, groups)
  out = []
  for p in groups.names:
    mine = sorted((r for r in lr_rows if r['preset'] == p), key=lambda r: r['mult'])
    for r in mine:
      pick = r['mult'] == chosen[p]
      out.append({**r, 'chosen': pick, 'edge': pick and r in (mine[0], mine[-1])})
  return out


def _fmt(x, digits=4):
  return '—' if x is None or not math.isfinite(x) else f'{x:.{digits}g}'


_MACHINE = ('cpu', 'cpu_isa', 'jaxlib')


def machines(done) -> list:
  """[{cpu, cpu_isa, jaxlib, runs}] over the finished runs (lmjax/train/machine.py: results differ
  across CPUs); runs from before summaries recorded it have None."""
  cols = [f'machine.{k}' for k in _MACHINE]
  table = done.reindex(columns=cols)
  counts = table.astype(str).where(table.notna(), '').value_counts().items()
  return [{**{k: v or None for k, v in zip(_MACHINE, key)}, 'runs': int(n)}
          for key, n in counts]


def markdown(res, groups) -> str:
  word, ref = groups.word, groups.reference
  where = '; '.join(f'{m["cpu"] or "not recorded"} ({m["cpu_isa"] or "?"}, jaxlib '
                    f'{m["jaxlib"] or "?"}): {m["runs"]} runs' for m in res.get('machines', []))
  lines = [f'Ran on: {where}.', '', '## Learning rates (one size, one budget)', '',
           f'| {word} | lr multiplier | lr | final loss | |', '|---|---|---|---|---|']
  for r in res['lr']:
    mark = 'chosen' + (' (edge of the grid)' if r['edge'] else '') if r['chosen'] else ''
    loss = 'diverged' if r['state'] == 'diverged' else _fmt(r['loss'])
    lines.append(f'| {r["preset"]} | {r["mult"]:g} | {r["lr"]:.3g} | {loss} | {mark} |')
  lines += ['', '## IsoFLOP curves (seed 0): loss at each N, smallest N first', '',
            f'| {word} | budget C | losses | best N | minimum inside the sizes |',
            '|---|---|---|---|---|']
  for r in res['isoflop']:
    losses = ', '.join(f'{n:,}: {l:.3f}' for n, l in zip(r['N_no_emb'], r['loss']))
    lines.append(f'| {r["preset"]} | {r["budget"]:.3g} | {losses} | {r["best_N_no_emb"]:,} | '
                 f'{"yes" if r["inside"] else "no"} |')
  lines += ['', '## Run-to-run noise (seeds at fixed N, D)', '',
            f'| {word} | layers × d_model | N | budget C | seeds | mean loss | sd | range |',
            '|---|---|---|---|---|---|---|---|']
  for r in res['seeds']:
    lines.append(f'| {r["preset"]} | {r["n_layers"]} × {r["d_model"]} | {r["N_no_emb"]:,} | '
                 f'{r["budget"]:.3g} | {r["seeds"]} | {r["mean"]:.4f} | {r["sd"]:.4f} | '
                 f'{r["min"]:.4f}–{r["max"]:.4f} |')
  lines += ['', f'Pooled seed sd: {res["pooled_sd"]:.4f} (all {word}s and cells).', '',
            f'| {word} − {ref} | layers × d_model | budget C | Δ mean loss | se | Δ/se |',
            '|---|---|---|---|---|---|']
  for r in res['differences']:
    lines.append(f'| {r["preset"]} | {r["n_layers"]} × {r["d_model"]} | {r["budget"]:.3g} | '
                 f'{r["diff"]:+.4f} | {r["se"]:.4f} | {r["z"]:+.1f} |')
  level = f'{100 * res["level"]:g}%'
  lines += ['', f'## Compute multipliers M = C_{ref}(L) / C_{word}(L) ({level} bootstrap '
            'intervals over runs, seeds included)', '',
            f'| {word} | loss L | C_{word}(L) | C_{ref}(L) | M | interval |',
            '|---|---|---|---|---|---|']
  for p, m in res['multipliers'].items():
    for r in m['at']:
      lines.append(f'| {p} | {r["loss"]:.2f} | {_fmt(r["c_a"], 3)} | {_fmt(r["c_b"], 3)} | '
                   f'{_fmt(r["m"], 3)} | [{_fmt(r.get("lo"), 3)}, {_fmt(r.get("hi"), 3)}] |')
  gaps = [p for p, m in res['multipliers'].items() if m['extrapolated']]
  if gaps:
    lines += ['', f'Extrapolated: the frontiers of {" and ".join(gaps)} and {ref} share no '
              'loss, so their multipliers are stated in the gap between them, where at least one '
              'fitted L(C) runs past the compute it was measured at.']
  lines += ['', f'## L(C) = E + A·C^(−α) on each frontier (joint with {ref}, one E)', '',
            '| fit | group | E | A | α | frontier runs |', '|---|---|---|---|---|---|']
  for p, m in res['multipliers'].items():
    for g, q in m['params'].items():
      lines.append(f'| {p} vs {ref} | {g} | {q["E"]:.4g} | {q["A"]:.4g} | {q["alpha"]:.4g} | '
                   f'{m["frontier_runs"][g]} of {m["runs"][g]} |')
    b = m['bootstrap']
    if b:
      lines.append(f'| | bootstrap | {b["replicates"]} replicates: {b["failed"]} failed, '
                   f'{b["unconverged"]} unconverged | | | |')
  return '\n'.join(lines) + '\n'


def analyse(workdir, scale, lr_rows, bootstrap=1000, seed=0, level=0.95, groups=None) -> dict:
  """Writes WORKDIR/results and returns the results (with 'markdown'). `groups`: the models
  compared (experiments/sweeps/arch_recipes.py, Groups; default the three presets)."""
  from experiments.sweeps.arch_recipes import ARCH
  groups = groups or ARCH
  reference = groups.reference
  try:
    done = analysis.finished(analysis.load(os.path.join(workdir, 'study')).runs)
  except analysis.AnalysisError as e:
    raise ReportError(str(e)) from None
  if groups.column not in done:
    raise ReportError(f'{workdir}/study: its runs table has no column {groups.column}')
  done = done.assign(group=groups.of_frame(done))
  missing = [p for p in groups.names if not (done['group'] == p).any()]
  if missing:
    raise ReportError(f'no finished runs of {", ".join(missing)} in {workdir}/study')
  seeds = seed_table(done)
  sds = np.array([r['sd'] for r in seeds])
  dof = np.array([r['seeds'] - 1 for r in seeds])
  res = dict(lr=lr_table(lr_rows, groups), isoflop=isoflop_table(done), seeds=seeds,
             differences=differences(seeds, reference),
             pooled_sd=float(np.sqrt(np.sum(dof * sds ** 2) / np.sum(dof))) if seeds else math.nan,
             level=level, multipliers={}, runs=int(len(done)), machines=machines(done))
  fits = {}
  for p in groups.names:
    if p == reference:
      continue
    a, b = done[done['group'] == p], done[done['group'] == reference]
    try:  # stated at the losses both frontiers reach (multiplier.stated_losses)
      m = analysis.compute_multiplier(a, b, names=(p, reference), bootstrap=bootstrap,
                                      seed=seed, level=level)
    except analysis.AnalysisError as e:
      raise ReportError(f'{p} vs {reference}: {e}') from None
    fits[p] = m
    j = m.to_json()
    res['multipliers'][p] = dict(at=j['at'], params=j['params'], frontier_runs=j['frontier_runs'],
                                 runs={p: len(a), reference: len(b)}, bootstrap=j['bootstrap'],
                                 extrapolated=m.extrapolated)
  res['markdown'] = markdown(res, groups)
  out = os.path.join(workdir, 'results')
  os.makedirs(out, exist_ok=True)
  _figures(out, done, res, fits, groups)
  write_text(os.path.join(out, 'results.md'), res['markdown'])
  with atomic_open(os.path.join(out, 'results.json')) as f:
    json.dump(res, f, indent=1, default=float)
  return res


def _save(fig, path):
  with atomic_open(path, 'wb') as f:
    f.write(analysis.figures.png(fig))


def _figures(out, done, res, fits, groups):
  from experiments.arch_recipes_figures import loss_vs_compute, lr_sweep, seed_spread
  for p, m in fits.items():
    _save(analysis.figures.multiplier(m), os.path.join(out, f'multiplier_{p}.png'))
  _save(loss_vs_compute(done, fits, groups), os.path.join(out, 'loss_vs_compute.png'))
  _save(seed_spread(res['seeds'], groups), os.path.join(out, 'seeds.png'))
  _save(lr_sweep(res['lr'], groups), os.path.join(out, 'lr_sweep.png'))
