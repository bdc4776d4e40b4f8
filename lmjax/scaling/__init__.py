"""Scaling-law fitting: runs tables, Kaplan and Chinchilla laws, IsoFLOP, bootstrap, plots.

Modules (pure float64 numpy; no JAX, so the float32 training code is untouched):
- table.py: the runs table (N, N without embeddings, D, C, loss, tags) and its CSV/JSON loader;
- laws.py: the formulas (Kaplan et al. 2020; Hoffmann et al. 2022) and published constants;
- objective.py: Huber and Huber-likelihood objectives of a law in log-sum-exp form;
- lbfgs.py: a batched L-BFGS that runs thousands of starts or bootstrap replicates at once;
- parametric.py: grid fits of L(N, D) (Approach 3) and of L(N), L(D), L(C);
- convergence.py: the convergence check of a fitted point;
- isoflop.py: IsoFLOP parabolas (Approach 2); envelope.py: lower envelopes and Approach 1;
- bootstrap.py: resampling runs, standard errors, percentile intervals;
- predict.py: loss and compute-optimal N, D for new budgets, with intervals;
- plots.py: PNG plots;
- optimum.py: the optimum of a loss over a log-spaced grid of learning rates and batch sizes;
- hparams.py: the optimal lr and batch size against C, N, D (DeepSeek-AI 2024), with intervals;
- lr_transfer.py: the optimal lr's shift per doubling of width (an lr-transfer study);
- options.py: FitOptions, every option of a fit, checked once;
- fit.py: fit_runs(table, options), the whole fit as one call, and write_report.
The command line is `python -m launch.fit`.

May import: lmjax.core only, and never JAX (import-linter, .importlinter): float64 numpy, scipy
and matplotlib.
"""
