"""The exit codes of lmjax's entry points, in one jax-free module (the sweep launchers read the
codes of the runs they start without importing JAX)."""

EXIT_OK = 0
EXIT_FAILED = 1      # launch.sweep: some runs are not done; launch.memory: does not fit
EXIT_USAGE = 2       # a bad flag, config, path, dataset, checkpoint or sweep file; nothing written
EXIT_NONFINITE = 3   # the loss or gradient norm went non-finite; the last good checkpoint is kept
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGINT after saving; run again to resume
