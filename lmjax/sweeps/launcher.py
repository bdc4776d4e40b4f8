"""`launch.sweep` as one call: a sweep file and a sweep directory in, the runs done (or
submitted to SLURM, or reported), the exit status out.

`run_sweep(sweep_file, workdir, SweepOptions(...))` loads and checks the plan (PlanError), opens
the directory (SweepDirError: another sweep's, or one whose runs this plan changes), prints the
plan, then: `status` reports every run; `dry_run` prints what would run (local: the commands;
slurm: the sbatch scripts) and writes nothing; otherwise the local pool (lmjax/sweeps/local.py)
or the SLURM arrays (lmjax/sweeps/slurm.py) do what is missing. Exit status: 0 every run done
(or submitted); 1 some run failed or could not start; 75 stopped by a signal.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys

from lmjax.core import storage
from lmjax.core.errors import EXIT_FAILED, EXIT_OK, LmjaxError
from lmjax.sweeps import local, slurm
from lmjax.sweeps.sweepdir import SweepDir
from lmjax.sweeps.sweepfile import load_sweep

BACKENDS = ('local', 'slurm')


class SweepOptionsError(LmjaxError, ValueError):
  """An option of launch.sweep out of its range; one line naming the flag."""


@dataclasses.dataclass(frozen=True)
class SweepOptions:
  """launch.sweep's flags; `slurm` holds the --slurm_* options by their names without it."""
  backend: str = 'local'
  parallel: int = 1             # local: runs at once
  cpus_per_run: int = 0         # local: cores each run is pinned to (0: no pinning)
  status: bool = False          # report every run's state and touch nothing
  dry_run: bool = False         # print what would run, write nothing
  train_flags: tuple = ()       # extra --config.a.b=v flags of every launch.train
  slurm: dict = dataclasses.field(default_factory=lambda: {'nodes': 1, 'python': None})

  def check(self, stream=sys.stderr):
    """Raises SweepOptionsError for a value out of range; warns of oversubscribed cores."""
    if self.backend not in BACKENDS:
      raise SweepOptionsError(f'--backend={self.backend}: one of {", ".join(BACKENDS)}')
    if self.parallel < 1:
      raise SweepOptionsError(f'--parallel={self.parallel}: must be >= 1')
    cores = len(os.sched_getaffinity(0))
    if not 0 <= self.cpus_per_run <= cores:
      raise SweepOptionsError(f'--cpus_per_run={self.cpus_per_run}: must be in [0, {cores}] '
                              '(the cores here)')
    if self.cpus_per_run * self.parallel > cores:
      stream.write(f'warning: --parallel={self.parallel} runs of --cpus_per_run='
                   f'{self.cpus_per_run} share {cores} cores\n')
    if self.slurm.get('nodes', 1) < 1:
      raise SweepOptionsError(f'--slurm_nodes={self.slurm["nodes"]}: must be >= 1')
    for f in self.train_flags:
      if not f.startswith('--config.') or '=' not in f:
        raise SweepOptionsError(f'--train_flags={f}: each must look like --config.a.b=value')


def run_sweep(sweep_file: str, workdir: str, options: SweepOptions, stream=sys.stdout) -> int:
  """launch.sweep (module doc); LmjaxError for a bad option, sweep file or directory."""
  options.check()
  if options.backend == 'slurm' and storage.is_remote(workdir) and not options.status:
    raise SweepOptionsError(f'--backend=slurm with --workdir={workdir}: SLURM tasks write '
                            'their logs and status files with the shell; put the sweep '
                            'directory on the cluster\'s shared file system')
  sweep = load_sweep(sweep_file)
  read_only = options.status or options.dry_run
  sweep_dir = SweepDir.open(workdir, sweep, create=not read_only)
  if options.status:
    jobs = slurm.job_ids(sweep_dir)
    return print_status(sweep_dir, jobs, stream, queued=slurm.queued(set(jobs.values())))
  invalid = local.announce(sweep, sweep_dir, read_only, stream)
  if options.backend == 'slurm':
    return slurm.submit(sweep_dir, options.slurm, options.dry_run, stream, skip=invalid)
  if options.dry_run:
    for run in sweep_dir.runs.values():
      if not sweep_dir.is_done(run.name) and run.name not in invalid:
        argv = sweep_dir.command(run, extra=options.train_flags)
        stream.write(' '.join(shlex.quote(a) for a in argv) + '\n')
    return EXIT_OK
  return local.run_locked(sweep_dir, invalid, options.parallel, options.cpus_per_run,
                          options.train_flags)


def _fmt_loss(summary):
  return f'{summary["eval_loss"]:.4f}' if summary and summary.get('eval_loss') else '—'


def print_status(sweep_dir: SweepDir, jobs: dict, stream=sys.stdout, queued=None) -> int:
  """Every run's state, eval loss and why it is not done; EXIT_OK when all are done. `queued`:
  the SLURM array tasks squeue lists (None: not asked), which decide whether a task is still
  running."""
  states = {}
  stream.write(f'sweep {sweep_dir.sweep.name} in {sweep_dir.path}: {len(sweep_dir.runs)} runs\n')
  stream.write(f'  {"run":<44}{"design":<9}{"state":<12}{"eval loss":>10}  detail\n')
  for name, run in sweep_dir.runs.items():
    state = states[name] = sweep_dir.state(name, queued)
    detail = ''
    if state in ('failed', 'diverged'):
      s = sweep_dir.status(name)
      tail = (s.get('log_tail') or sweep_dir.read_log(name)).strip()
      detail = f'exit {s.get("exit_code")}: {tail.rsplit(chr(10), 1)[-1][:100]}'
    elif state == 'pending' and run.branch_of and not sweep_dir.ready(run):
      detail = f'waits for {run.branch_of} step {run.branch_step}'
    if name in jobs:
      waiting = state == 'pending' and queued and jobs[name] in queued
      detail = f'job {jobs[name]}{" (queued)" if waiting else ""} {detail}'
    loss = _fmt_loss(sweep_dir.summary(name))
    stream.write(f'  {name:<44}{run.design:<9}{state:<12}{loss:>10}  {detail}\n')
  counts = {s: list(states.values()).count(s) for s in dict.fromkeys(states.values())}
  stream.write('  ' + ', '.join(f'{v} {k}' for k, v in counts.items()) + '\n')
  return EXIT_OK if counts.get('done', 0) == len(states) else EXIT_FAILED
