"""Fit scaling laws to a runs table: python -m launch.fit --runs=TABLE [--law=...] [--out=DIR].

Reads a CSV/TSV/JSON runs table (lmjax/scaling/table.py: columns N, D and/or C, loss, optional
N_no_emb, any other column a tag), fits the laws asked for, bootstraps them over runs, prints a
table of fitted values with standard errors and percentile intervals, and with --out writes
DIR/fits.json (atomically) and PNG plots. Known published files are recognised by their
header; the Epoch AI Chinchilla file gets Besiroglu et al. 2024's conventions (D = C/(6N), the
5 highest losses dropped, Chinchilla's nine IsoFLOP budgets). A bad flag or table exits with
status 2 and a one-line error, and writes nothing.
"""
import json
import math
import os
import shutil
import tempfile
import time

from absl import app, flags

from launch.flags_util import fail, parse_flags

LAWS = ('chinchilla', 'isoflop', 'kaplan_n', 'kaplan_d', 'kaplan_c', 'approach1')

_RUNS = flags.DEFINE_string('runs', None, 'Runs table: .csv, .tsv or .json.')
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'A launch.sweep directory instead of --runs: '
                                 'its finished runs become the table (written to '
                                 'DIR/runs.csv); --out defaults to DIR/fits.')
_LAW = flags.DEFINE_list('law', ['all'], f'Laws to fit: {", ".join(LAWS)} or all (all: every '
                         'law the table supports; approach1 only with --run_tags).')
_OUT = flags.DEFINE_string('out', None, 'Directory for fits.json and the plots (none: print '
                           'only).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap replicates (0: none).')
_BOOT_STARTS = flags.DEFINE_integer('bootstrap_starts', 4, 'Starts per replicate: the best '
                                    'distinct optima of the full-data grid fit.')
_SEED = flags.DEFINE_integer('seed', 0, 'Bootstrap seed.')
_LEVEL = flags.DEFINE_float('level', 0.95, 'Percentile-interval level.')
_DELTA = flags.DEFINE_float('huber_delta', 1e-3, 'Huber δ on log loss (Hoffmann et al. 2022).')
_OBJECTIVE = flags.DEFINE_enum('objective', 'huber', ['huber', 'huber_nll'], 'huber: summed '
                               'Huber (Hoffmann et al. 2022); huber_nll: Huber likelihood with '
                               'a fitted scale (Besiroglu et al. 2024).')
_REDUCTION = flags.DEFINE_enum('reduction', 'sum', ['sum', 'mean'], 'Sum or mean over runs '
                               '(same optimum; our stopping rules are scale-free).')
_STARTS = flags.DEFINE_enum('starts', 'hoffmann', ['hoffmann', 'coarse'], 'Chinchilla starts: '
                            "Hoffmann's 4,500-point grid, or its 72 points with a, b in "
                            '{0, 10, 20}, alpha = beta in {0, 0.5, 1, 2} and e in {-1, 0, 1}.')
_COLUMNS = flags.DEFINE_list('columns', [], 'FIELD=COLUMN pairs mapping the fields n, '
                             'n_no_emb, d, c, loss to column names of the table.')
_WHERE = flags.DEFINE_list('where', [], 'TAG=VALUE pairs: keep only rows whose tag columns '
                           'equal these values.')
_N_COUNT = flags.DEFINE_enum('n_count', 'both', ['both', 'n', 'n_no_emb'], 'Which parameter '
                             'count to fit with: the n column, n_no_emb (without embeddings), '
                             'or both when the table has both.')
_DROP = flags.DEFINE_integer('drop_highest_loss', None, 'Drop the rows whose loss is >= the '
                             "k-th largest (default: the format's, 5 for the Epoch file; "
                             'else 0).')
_IRREDUCIBLE = flags.DEFINE_bool('kaplan_irreducible', False, 'Fit Kaplan laws as '
                                 'E + (X_c/X)^alpha.')
_FRONTIER = flags.DEFINE_bool('kaplan_frontier', True, 'Fit Kaplan laws only to the runs on '
                              'the lower envelope of loss against X.')
_BUDGETS = flags.DEFINE_list('budgets', None, 'IsoFLOP budgets (FLOPs) to snap C to (default: '
                             "a budget tag column, the format's, or C rounded to 4 digits).")
_BUDGET_RTOL = flags.DEFINE_float('budget_rtol', None, 'Relative distance from a budget within '
                                  "which C snaps to it (default: the format's, else 0.1).")
_MIN_POINTS = flags.DEFINE_integer('isoflop_min_points', 4, 'Fewest runs for an IsoFLOP '
                                   'parabola.')
_NEAREST = flags.DEFINE_integer('isoflop_nearest', 0, 'Fit each parabola to the k runs '
                                'nearest the lowest loss (0: all runs).')
_RUN_TAGS = flags.DEFINE_list('run_tags', [], 'Tag columns that together identify a run '
                              '(one row per checkpoint); enables Approach 1.')
_PREDICT_C = flags.DEFINE_list('predict_c', ['1e21', '1e22', '1e23', '5.76e23', '1e24', '1e25'],
                               'FLOP budgets at which to predict compute-optimal N and D.')
_PREDICT_ND = flags.DEFINE_list('predict_nd', ['7e10:1.4e12'], 'N:D pairs at which to predict '
                                'the loss.')
_PLOTS = flags.DEFINE_bool('plots', True, 'Write PNG plots into --out.')
_ALL = (_RUNS, _SWEEP_DIR, _LAW, _OUT, _BOOTSTRAP, _BOOT_STARTS, _SEED, _LEVEL, _DELTA,
        _OBJECTIVE, _REDUCTION, _STARTS, _COLUMNS, _WHERE, _N_COUNT, _DROP, _IRREDUCIBLE,
        _FRONTIER, _BUDGETS,
        _BUDGET_RTOL, _MIN_POINTS, _NEAREST, _RUN_TAGS, _PREDICT_C, _PREDICT_ND, _PLOTS)


def _pairs(values, flag, sep='='):
  out = {}
  for item in values:
    if sep not in item:
      fail(f'--{flag}={item}: expected KEY{sep}VALUE')
    k, v = item.split(sep, 1)
    out[k.strip()] = v.strip()
  return out


def _floats(values, flag):
  try:
    out = [float(v) for v in values]
  except ValueError:
    fail(f'--{flag}={",".join(values)}: expected numbers')
  if not all(math.isfinite(v) and v > 0 for v in out):
    fail(f'--{flag}={",".join(values)}: every value must be finite and positive')
  return out


def _check_flags():
  if bool(_RUNS.value) == bool(_SWEEP_DIR.value):
    fail('give exactly one of --runs (a runs table) and --sweep_dir (a launch.sweep directory)')
  if _SWEEP_DIR.value and _OUT.value is None:
    flags.FLAGS.out = os.path.join(_SWEEP_DIR.value, 'fits')
  laws = []
  for law in _LAW.value:
    if law == 'all':
      laws += [l for l in LAWS if l != 'approach1' or _RUN_TAGS.value]
    elif law in LAWS:
      laws.append(law)
    else:
      fail(f'--law={law}: allowed {", ".join(LAWS)}, all')
  if 'approach1' in laws and not _RUN_TAGS.value:
    fail('--law=approach1 needs --run_tags (the tag columns that identify a run)')
  if _BOOTSTRAP.value < 0 or _BOOTSTRAP.value == 1:
    fail(f'--bootstrap={_BOOTSTRAP.value}: 0 (none) or at least 2 replicates')
  if _BOOT_STARTS.value < 1:
    fail(f'--bootstrap_starts={_BOOT_STARTS.value}: must be at least 1')
  if not (0 < _LEVEL.value < 1):
    fail(f'--level={_LEVEL.value}: must be in (0, 1)')
  if not (_DELTA.value > 0 and math.isfinite(_DELTA.value)):
    fail(f'--huber_delta={_DELTA.value}: must be positive')
  if _DROP.value is not None and _DROP.value < 0:
    fail(f'--drop_highest_loss={_DROP.value}: must be >= 0')
  if _MIN_POINTS.value < 3:
    fail(f'--isoflop_min_points={_MIN_POINTS.value}: a parabola needs at least 3')
  if _NEAREST.value and _NEAREST.value < 3:
    fail(f'--isoflop_nearest={_NEAREST.value}: 0 (all) or at least 3')
  if _BUDGET_RTOL.value is not None and not _BUDGET_RTOL.value > 0:
    fail(f'--budget_rtol={_BUDGET_RTOL.value}: must be positive')
  if _OUT.value and os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
    fail(f'--out={_OUT.value} is a file, not a directory')
  nd = []
  for item in _PREDICT_ND.value:
    parts = item.split(':')
    if len(parts) != 2:
      fail(f'--predict_nd={item}: expected N:D')
    nd.append(_floats(parts, 'predict_nd'))
  budgets = _floats(_BUDGETS.value, 'budgets') if _BUDGETS.value else None
  return list(dict.fromkeys(laws)), _floats(_PREDICT_C.value, 'predict_c'), nd, budgets


def _clean(x):
  """numpy scalars and arrays to JSON types; NaN and inf to None."""
  import numpy as np
  if isinstance(x, dict):
    return {str(k): _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, np.ndarray):
    return _clean(x.tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if math.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def _collect(sweep_dir):
  """The finished runs of a sweep directory; every run left out is printed with its reason."""
  from lmjax.sweeps import collect
  try:
    t, left_out = collect.collect(sweep_dir)
  except collect.CollectError as e:
    fail(str(e))
  for item in left_out:
    print(f'left out {item["name"]}: {item["reason"]}')
  path = collect.write_csv(t, os.path.join(sweep_dir, 'runs.csv'))
  print(f'collected {len(t)} finished runs of {sweep_dir} into {path}')
  return t


def _load():
  from lmjax.scaling import table as table_lib
  columns = _pairs(_COLUMNS.value, 'columns')
  where = _pairs(_WHERE.value, 'where')
  try:
    t = _collect(_SWEEP_DIR.value) if _SWEEP_DIR.value else table_lib.load_runs(
        _RUNS.value, columns or None)
    read = len(t)
    if where:
      t = t.where(**where)
      if len(t) == 0:
        fail(f'--where={",".join(_WHERE.value)}: no rows match')
    drop = _DROP.value if _DROP.value is not None else t.meta.get('drop_highest_loss', 0)
    t = t.drop_highest_loss(drop)
  except table_lib.TableError as e:
    fail(str(e))
  return t, dict(read=read, where=where, dropped_highest=drop)


def _fit_count(t, laws, predict_c, predict_nd, budgets, timings):
  """All fits for one parameter count; returns (results, skipped, objects for plots)."""
  import numpy as np
  from lmjax.scaling import bootstrap, envelope, isoflop, parametric, predict, table
  errors = (parametric.FitError, isoflop.IsoflopError, envelope.EnvelopeError, table.TableError)
  explicit = 'all' not in _LAW.value
  res, skipped, objs = {}, {}, {}
  reps, level = _BOOTSTRAP.value, _LEVEL.value
  for law in laws:
    t0 = time.perf_counter()
    try:
      if law == 'chinchilla':
        starts = None
        if _STARTS.value == 'coarse':
          starts = np.array([[a, b, s, s, e] for a in (0, 10, 20) for b in (0, 10, 20)
                             for s in (0, .5, 1, 2) for e in (-1, 0, 1)], float)
        fit = parametric.fit_chinchilla(t, delta=_DELTA.value, objective=_OBJECTIVE.value,
                                        reduction=_REDUCTION.value, starts=starts)
      elif law.startswith('kaplan'):
        fit = parametric.fit_kaplan(t, law, irreducible=_IRREDUCIBLE.value,
                                    frontier=_FRONTIER.value, delta=_DELTA.value,
                                    objective=_OBJECTIVE.value, reduction=_REDUCTION.value)
      elif law == 'isoflop':
        rtol = _BUDGET_RTOL.value or t.meta.get('budget_rtol', 0.1)
        fit = isoflop.fit_isoflop(t, budgets=budgets or t.meta.get('budgets'), rtol=rtol,
                                  min_points=_MIN_POINTS.value,
                                  n_nearest=_NEAREST.value or None)
      else:
        fit = envelope.approach1(t, _RUN_TAGS.value)
    except errors as e:
      if explicit:
        fail(str(e))
      skipped[law] = str(e)
      continue
    out = fit.to_json()
    boot = None
    if reps and law != 'approach1':
      if law == 'isoflop':
        boot = bootstrap.bootstrap_isoflop(t, fit, reps, _SEED.value)
        out['bootstrap'] = dict(replicates=reps, failed=boot['failed'], summary=bootstrap.summarize(
            {k: boot[k] for k in ('a', 'b')}, level))
      else:
        boot = bootstrap.bootstrap_parametric(fit, reps, _SEED.value, _BOOT_STARTS.value)
        out['bootstrap'] = dict(replicates=reps, starts=boot['starts'],
                                unconverged=boot['unconverged'], summary=bootstrap.summarize(
                                    {**boot['params'], **boot['derived']}, level))
    if law == 'chinchilla':
      out['predictions'] = dict(
          compute_optimal=predict.compute_optimal_at(fit, predict_c, boot, level),
          loss=[predict.loss_at(fit, n, d, boot, level)[0] for n, d in predict_nd])
    if law == 'isoflop':
      out['predictions'] = dict(compute_optimal=predict.compute_optimal_at(fit, predict_c, boot,
                                                                           level))
    res[law] = out
    objs[law] = (fit, boot)
    timings[law] = round(time.perf_counter() - t0, 3)
  return res, skipped, objs


def _fmt(v):
  return '—' if v is None or (isinstance(v, float) and not math.isfinite(v)) else f'{v:.4g}'


def _print_table(source_line, results, skipped, level):
  print(source_line)
  pct = f'{100 * level:g}% interval'
  for count, fits in results.items():
    print(f'\nN counted as {count}')
    print(f'  {"law":<11}{"quantity":<10}{"value":>12}{"se":>12}   {pct}')
    for law, out in fits.items():
      summary = out.get('bootstrap', {}).get('summary', {})
      if law in ('isoflop', 'approach1'):
        values = {k: out[k] for k in ('a', 'b')}
        values.update(n_opt_coef=out['n_opt_coef'])
      else:
        values = {**out['params'], **out.get('derived', {})}
      for i, (name, v) in enumerate(values.items()):
        s = summary.get(name, {})
        interval = f'[{_fmt(s.get("lo"))}, {_fmt(s.get("hi"))}]' if s else ''
        print(f'  {law if i == 0 else "":<11}{name:<10}{_fmt(v):>12}{_fmt(s.get("se")):>12}   '
              f'{interval}')
      if 'convergence' in out:
        conv = out['convergence']
        print(f'  {"":<11}{out["n_at_best"]}/{out["n_starts"]} starts at the best objective '
              f'{out["objective"]:.10g}; {conv["message"]} (restart gains '
              f'{conv["rel_improvement"]:.1e})')
      if law == 'isoflop':
        flagged = [f'{b["c"]:.3g}: {", ".join(b["flags"])}' for b in out['budgets'] if b['flags']]
        print(f'  {"":<11}{out["n_budgets_used"]}/{len(out["budgets"])} budgets used'
              + (f'; flagged {"; ".join(flagged)}' if flagged else '')
              + (f'; {out["unmatched_runs"]} runs matched no budget' if out['unmatched_runs']
                 else ''))
    for law, reason in skipped.get(count, {}).items():
      print(f'  {law:<11}skipped: {reason}')
    chin = fits.get('chinchilla', {}).get('predictions')
    if chin:
      print('  compute-optimal (Chinchilla fit):')
      for row in chin['compute_optimal']:
        iv = lambda r: f' [{_fmt(r.get("lo"))}, {_fmt(r.get("hi"))}]' if 'lo' in r else ''
        print(f'    C={row["c"]:.3g}: N_opt={_fmt(row["n_opt"]["value"])}{iv(row["n_opt"])}, '
              f'D_opt={_fmt(row["d_opt"]["value"])}{iv(row["d_opt"])}, '
              f'L={_fmt(row["loss"]["value"])}')


def _write_plots(tmp, t, objs, suffix):
  from lmjax.scaling import plots
  written = []
  chin = objs.get('chinchilla', (None, None))
  iso = objs.get('isoflop', (None, None))
  a1 = objs.get('approach1', (None, None))
  if chin[0] is not None:
    written.append(plots.chinchilla(t, chin[0], os.path.join(tmp, f'chinchilla{suffix}.png')))
  for law in ('kaplan_n', 'kaplan_d', 'kaplan_c'):
    if law in objs:
      fit, boot = objs[law]
      name = f'loss_vs_{law[-1]}{suffix}.png'
      written.append(plots.kaplan(t, fit, os.path.join(tmp, name), boot, chin[0]))
  if iso[0] is not None:
    written.append(plots.isoflop(t, iso[0], os.path.join(tmp, f'isoflop{suffix}.png'), iso[1]))
  if chin[0] is not None or iso[0] is not None or a1[0] is not None:
    written.append(plots.frontier(os.path.join(tmp, f'frontier{suffix}.png'), t.c, chin[0],
                                  chin[1], iso[0], iso[1], a1[0]))
  return [os.path.basename(p) for p in written]


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  laws, predict_c, predict_nd, budgets = _check_flags()
  t, counts_info = _load()
  if _N_COUNT.value == 'n_no_emb' and t.n_no_emb is None:
    fail(f'--n_count=n_no_emb: {t.source} has no n_no_emb column (map one with --columns)')
  counts = {'both': ['n', 'n_no_emb'] if t.n_no_emb is not None else ['n'],
            'n': ['n'], 'n_no_emb': ['n_no_emb']}[_N_COUNT.value]
  timings, results, skipped, objects = {}, {}, {}, {}
  for count in counts:
    tc = t.with_n(count)
    results[count], skipped[count], objects[count] = _fit_count(
        tc, laws, predict_c, predict_nd, budgets, timings.setdefault(count, {}))
  if not any(results.values()):
    fail('no law could be fitted: ' + '; '.join(f'{k}: {v}' for s in skipped.values()
                                                 for k, v in s.items()))
  desc = t.describe()
  source_line = (f'runs: {t.source}: {len(t)} rows fitted of {counts_info["read"]} read'
                 + (f', {counts_info["dropped_highest"]} highest losses dropped'
                    if counts_info['dropped_highest'] else '')
                 + (f'; {", ".join(t.derived)}' if t.derived else '')
                 + (f'; format {desc["format"]}' if 'format' in desc else ''))
  _print_table(source_line, results, skipped, _LEVEL.value)
  if not _OUT.value:
    return
  from lmjax.scaling import laws as laws_lib
  created = not os.path.exists(_OUT.value)
  os.makedirs(_OUT.value, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.fit-', dir=_OUT.value)
  done = False
  try:
    written = []
    if _PLOTS.value:
      for count in counts:
        suffix = '' if count == 'n' else '_no_emb'
        written += _write_plots(tmp, t.with_n(count), objects[count], suffix)
    doc = dict(
        runs={**desc, **counts_info}, flags={h.name: h.value for h in _ALL},
        fits=results, skipped={k: v for k, v in skipped.items() if v},
        published=dict(chinchilla_approach3=laws_lib.CHINCHILLA_APPROACH3,
                       chinchilla_exponents=laws_lib.CHINCHILLA_EXPONENTS,
                       epoch_approach3=laws_lib.EPOCH_APPROACH3,
                       epoch_approach3_se=laws_lib.EPOCH_APPROACH3_SE,
                       kaplan_n_opt=laws_lib.KAPLAN_N_OPT),
        plots=written, timings_s=timings)
    with open(os.path.join(tmp, 'fits.json'), 'w') as f:
      json.dump(_clean(doc), f, indent=1, allow_nan=False)
    for name in written:
      os.replace(os.path.join(tmp, name), os.path.join(_OUT.value, name))
    os.replace(os.path.join(tmp, 'fits.json'), os.path.join(_OUT.value, 'fits.json'))
    done = True
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if not done and created:
      shutil.rmtree(_OUT.value, ignore_errors=True)
  print(f'\nwrote {os.path.join(_OUT.value, "fits.json")} and {len(written)} plot(s):')
  for name in written:
    print(f'  {os.path.join(_OUT.value, name)}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
