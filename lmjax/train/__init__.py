"""train: a training run, from its config to its run directory, on a device mesh.

- run.py: `launch.train` as one call: platform flags, the run directory, the loop, exit paths;
- loop.py: the loop (checkpoints, preemption, loss guards); start.py: a fresh, resumed or
  branched start; log.py: what a run reports; metrics.py: metrics.jsonl and TensorBoard;
- steps.py: the train state, and `build_train_step`, the one place that builds model,
  optimizer, shardings and the jitted train step for a config and a mesh; optim.py: AdamW and
  schedules; loss.py: cross-entropy, whole or chunked;
- sharding.py: the mesh and logical-axis rules; checkpoint.py: orbax checkpoints;
  trained.py: a finished run read back (config, model on this mesh, params);
- memory.py, memory_plan.py, topology.py: memory per device from an ahead-of-time compile, on
  TPU topologies too (memory_plan: launch.memory as one call); throughput.py: the throughput
  benchmark; hf_runs.py: Hugging Face models as run directories, in and out;
- compile_cache.py, platform_flags.py, profiling.py, machine.py: a run's surroundings.

May import: lmjax.core, lmjax.config, lmjax.data, lmjax.model. Not eval, infer, sweeps or
analysis (import-linter, .importlinter). Fine-tuning objectives (SFT masks, DPO) and quantised
training go here.
"""
