"""eval: a trained run measured on held-out text.

- per_token.py: a whole split token by token: loss, bits per byte, accuracy, calibration, loss by
  position and by document group;
- outputs.py: `evaluate_run`, what launch.eval and notebooks call: RUN/eval/ and TensorBoard;
- pages.py: its figures and the per-token log-probability page.

May import: lmjax.core, lmjax.config, lmjax.data, lmjax.model, lmjax.train. Not infer, sweeps or
analysis (import-linter, .importlinter). Downstream tasks (lm-evaluation-harness) go here.
"""
