"""Fit scaling laws to a runs table: python -m launch.fit --runs=TABLE [--law=...] [--out=DIR].

--law=hparams fits the optimal learning rate and batch size of each budget against C, N and D
(DeepSeek-AI 2024; lmjax/scaling/hparams.py) from the table's lr and batch_size columns (a
sweeps.hparams sweep collects them); its laws go into fits.json, where sweeps.fitted_lr reads
the lr law back as a recipe's learning rate.

Reads a CSV/TSV/JSON runs table (lmjax/scaling/table.py: columns N, D and/or C, loss, optional
N_no_emb, any other column a tag), fits the laws asked for, bootstraps them over runs, prints a
table of fitted values with standard errors and percentile intervals, and with --out writes
DIR/fits.json (atomically) and PNG plots. Known published files are recognised by their
header; the Epoch AI Chinchilla file gets Besiroglu et al. 2024's conventions (D = C/(6N), the
5 highest losses dropped, Chinchilla's nine IsoFLOP budgets). A bad flag or table exits with
status 2 and a one-line error, and writes nothing. The fitting is lmjax/scaling/fit.py.

--accuracy=COLUMN fits downstream accuracy instead (lmjax/scaling/downstream.py): Gadre et al.
2024's exponential and Llama 3's sigmoid against the loss, and the two-step prediction from C,
each bootstrapped over runs; OUT/downstream.json.
"""
import dataclasses

from absl import flags

from lmjax.core import storage
from lmjax.core.cli import fail, run
from lmjax.scaling import downstream, fit, table
from lmjax.scaling.options import CHOICES, LAWS, PREDICT_C, PREDICT_ND, FitOptions, parse_pairs
from lmjax.sweeps import collect

_D = FitOptions()  # the defaults
_RUNS = flags.DEFINE_string('runs', None, 'Runs table: .csv, .tsv or .json.')
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'A launch.sweep directory instead of --runs: '
                                 'its finished runs become the table (written to '
                                 'DIR/runs.csv); --out defaults to DIR/fits.')
_LAW = flags.DEFINE_list('law', list(_D.laws), f'Laws to fit: {", ".join(LAWS)} or all (all: '
                         'every law the table supports but hparams; approach1 only with '
                         '--run_tags). hparams: the optimal lr and batch size per budget and '
                         'their power laws in C, N, D (needs lr and budget columns).')
_OUT = flags.DEFINE_string('out', None, 'Directory for fits.json and the plots (none: print '
                           'only).')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', _D.bootstrap, 'Bootstrap replicates (0: none).')
_BOOT_STARTS = flags.DEFINE_integer('bootstrap_starts', _D.bootstrap_starts, 'Starts per '
                                    'replicate: the best distinct optima of the full-data grid '
                                    'fit.')
_SEED = flags.DEFINE_integer('seed', _D.seed, 'Bootstrap seed.')
_LEVEL = flags.DEFINE_float('level', _D.level, 'Percentile-interval level.')
_DELTA = flags.DEFINE_float('huber_delta', _D.huber_delta, 'Huber δ on log loss (Hoffmann et '
                            'al. 2022).')
_OBJECTIVE = flags.DEFINE_enum('objective', _D.objective, CHOICES['objective'], 'huber: summed '
                               'Huber (Hoffmann et al. 2022); huber_nll: Huber likelihood with '
                               'a fitted scale (Besiroglu et al. 2024).')
_REDUCTION = flags.DEFINE_enum('reduction', _D.reduction, CHOICES['reduction'], 'Sum or mean '
                               'over runs (same optimum; our stopping rules are scale-free).')
_STARTS = flags.DEFINE_enum('starts', _D.starts, CHOICES['starts'], 'Chinchilla starts: '
                            "Hoffmann's 4,500-point grid, or its 72 points with a, b in "
                            '{0, 10, 20}, alpha = beta in {0, 0.5, 1, 2} and e in {-1, 0, 1}.')
_COLUMNS = flags.DEFINE_list('columns', [], 'FIELD=COLUMN pairs mapping the fields N, '
                             'N_no_emb, D, C, loss to column names of the table.')
_WHERE = flags.DEFINE_list('where', [], 'TAG=VALUE pairs: keep only rows whose tag columns '
                           'equal these values.')
_N_COUNT = flags.DEFINE_enum('n_count', _D.n_count, CHOICES['n_count'], 'Which parameter '
                             'count to fit with: the N column, N_no_emb (without embeddings), '
                             'or both when the table has both.')
_DROP = flags.DEFINE_integer('drop_highest_loss', None, 'Drop the rows whose loss is >= the '
                             "k-th largest (default: the format's, 5 for the Epoch file; "
                             'else 0).')
_IRREDUCIBLE = flags.DEFINE_bool('kaplan_irreducible', _D.kaplan_irreducible, 'Fit Kaplan laws '
                                 'as E + (X_c/X)^alpha.')
_FRONTIER = flags.DEFINE_bool('kaplan_frontier', _D.kaplan_frontier, 'Fit Kaplan laws only to '
                              'the runs on the lower envelope of loss against X.')
_BUDGETS = flags.DEFINE_list('budgets', None, 'IsoFLOP budgets (FLOPs) to snap C to (default: '
                             "a budget tag column, the format's, or C rounded to 4 digits).")
_BUDGET_RTOL = flags.DEFINE_float('budget_rtol', None, 'Relative distance from a budget within '
                                  "which C snaps to it (default: the format's, else 0.1).")
_MIN_POINTS = flags.DEFINE_integer('isoflop_min_points', _D.isoflop_min_points, 'Fewest runs '
                                   'for an IsoFLOP parabola.')
_NEAREST = flags.DEFINE_integer('isoflop_nearest', _D.isoflop_nearest, 'Fit each parabola to '
                                'the k runs nearest the lowest loss (0: all runs).')
_RUN_TAGS = flags.DEFINE_list('run_tags', [], 'Tag columns that together identify a run '
                              '(one row per checkpoint); enables Approach 1.')
_PREDICT_C = flags.DEFINE_list('predict_c', list(PREDICT_C), 'FLOP budgets at which to predict '
                               'compute-optimal N and D.')
_PREDICT_ND = flags.DEFINE_list('predict_nd', list(PREDICT_ND), 'N:D pairs at which to predict '
                                'the loss.')
_PLOTS = flags.DEFINE_bool('plots', True, 'Write PNG plots into --out.')
_ACCURACY = flags.DEFINE_list('accuracy', [], 'Instead of the loss laws: downstream accuracy '
                              'columns (e.g. tasks/stdlib_next_line/acc, from config.eval.tasks '
                              'or launch.harness) fitted against the loss by Gadre et al.\'s '
                              'law and a sigmoid, and from C in two steps, predicted at '
                              '--predict_c; written to OUT/downstream.json.')
_CHANCE = flags.DEFINE_float('chance', None, '--accuracy: the sigmoid\'s floor, fixed (1/choices '
                             'for multiple choice; default: fitted).')
_ALL = (_RUNS, _SWEEP_DIR, _LAW, _OUT, _BOOTSTRAP, _BOOT_STARTS, _SEED, _LEVEL, _DELTA,
        _OBJECTIVE, _REDUCTION, _STARTS, _COLUMNS, _WHERE, _N_COUNT, _DROP, _IRREDUCIBLE,
        _FRONTIER, _BUDGETS, _BUDGET_RTOL, _MIN_POINTS, _NEAREST, _RUN_TAGS, _PREDICT_C,
        _PREDICT_ND, _PLOTS)
_FLAG_OF = {'laws': 'law'}  # FitOptions fields whose flag has another name


def main():
  if bool(_RUNS.value) == bool(_SWEEP_DIR.value):
    fail('give exactly one of --runs (a runs table) and --sweep_dir (a launch.sweep directory)')
  options = FitOptions(**{f.name: flags.FLAGS[_FLAG_OF.get(f.name, f.name)].value
                          for f in dataclasses.fields(FitOptions)})
  columns = parse_pairs(_COLUMNS.value, 'columns')
  out = _OUT.value
  if out is None and _SWEEP_DIR.value:
    out = storage.join(_SWEEP_DIR.value, 'fits')
  fit.check_out_dir(out)
  t = (collect.collect_to_csv(_SWEEP_DIR.value) if _SWEEP_DIR.value
       else table.load_runs(_RUNS.value, columns or None))
  if _ACCURACY.value:
    downstream.fit_and_write(t, _ACCURACY.value, out, chance=_CHANCE.value,
                             predict_c=options.predict_c, bootstrap=options.bootstrap,
                             seed=options.seed, level=options.level)
    return
  fit.fit_and_write(t, options, out, plots=_PLOTS.value,
                    flags={**{h.name: h.value for h in _ALL}, 'out': out})


if __name__ == '__main__':
  run(main)
