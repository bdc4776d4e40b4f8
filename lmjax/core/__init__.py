"""core: what every room shares, jax-free leaves that import nothing else of lmjax.

- errors.py: the one error base (`LmjaxError`: a one-line message and an exit code), the exit
  codes of every entry point, and `one_line`, the one way an exception becomes one line;
- atomic.py: atomic file writes, the one way lmjax writes a file another process may read;
- rundir.py: a run directory's layout (config.json, metrics.jsonl, summary.json, checkpoints/,
  tb/, eval/, samples/, its lock), owned here alone;
- storage.py: paths that may be on object storage (`gs://`, `memory://` through fsspec):
  reading, writing whole, the start-up check of a bucket; `s3://` refused;
- pyfile.py: importing a user's config or sweep file;
- cli.py: what every entry point shares: `run(main)` (its LmjaxError one line and its exit
  code), flags and config files that fail in one line;
- figures.py: matplotlib figures on the Agg canvas and their PNG bytes (no pyplot state).

May import: the standard library, numpy, matplotlib, absl and fsspec; nothing else of lmjax, and never
JAX (import-linter, .importlinter).
"""
