"""eval: a trained run measured on held-out text and on downstream tasks.

- per_token.py: a whole split token by token: loss, bits per byte, accuracy, calibration, loss by
  position and by document group;
- outputs.py: `evaluate_run`, what launch.eval and notebooks call: RUN/eval/ and TensorBoard;
- pages.py: its figures and the per-token log-probability page;
- harness.py: lmjax models in lm-evaluation-harness; `evaluate_run`, what launch.harness calls;
- corpus_tasks.py: harness tasks made from the default corpus's held-out files, no download;
- training_tasks.py: `run`, what launch.train calls: a training run (lmjax/train/run.py) whose
  evaluations also run the harness's tasks (config.eval).

May import: lmjax.core, lmjax.config, lmjax.data, lmjax.model, lmjax.train, lmjax.infer
(generation tasks decode). Not sweeps or analysis (import-linter, .importlinter).
"""
