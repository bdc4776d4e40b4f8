"""The SLURM backend of a sweep: sbatch job arrays, one array task per run.

Two arrays at most: the runs that start from scratch (stable runs included), then the cooldown
branches, submitted with `--dependency=afterany:<first array>` so that they start once the stable
runs have saved their branch steps (a branch whose stable run failed stops with a one-line error).
Each task first checks that its Python (`--slurm_python`, by default the interpreter that
submitted the sweep) imports lmjax, then runs `launch.train` with its run's flags through srun
(several nodes: one process per node, `--distributed`, JAX reading SLURM's environment), appends
to `logs/<run>.log`, and writes `status/<run>.json` when it starts and ends: done, failed, or
interrupted (exit 75: the run saved a checkpoint on SLURM's SIGTERM, as at a time limit, a
`scancel` or a `scontrol requeue`; a requeued task runs the same command and resumes). The batch
shell survives that SIGTERM to record the outcome. Submitted job ids go to `slurm/jobs.json`; a
later submission skips runs that are done, or still queued or running according to squeue.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import NamedTuple

from lmjax.core.atomic import write_text
from lmjax.core.errors import EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE, LmjaxError
from lmjax.core.rundir import read_json
from lmjax.sweeps.sweepdir import write_json


class SlurmError(LmjaxError, RuntimeError):
  """sbatch or squeue failed; one line."""


class Submission(NamedTuple):
  first: list     # runs from scratch (stable runs included): the first array
  branches: list  # cooldown branches: the second array, after the first


def _status_json(sweep_dir, state, code):
  """The shell line that writes the task's status file (atomically: a temporary file moved)."""
  path = sweep_dir.status_path('$RUN')  # $RUN: the shell variable of the task's run name
  return (f"printf '{{\"state\": \"%s\", \"exit_code\": %s, \"backend\": \"slurm\", "
          f"\"job\": \"%s\", \"host\": \"%s\", \"pid\": %d}}\\n' {state} {code} "
          f'"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" "$(hostname)" $$ '
          f'> "{path}.tmp" && mv "{path}.tmp" "{path}"')


def script(sweep_dir, runs, opts, phase):
  """The sbatch script of one array: task i runs runs[i]."""
  nodes = opts['nodes']
  lines = ['#!/bin/bash',
           f'# lmjax sweep {sweep_dir.sweep.name}, {phase}: {len(runs)} run(s), one array task '
           'each.',
           '# Written by launch.sweep --backend=slurm; the sweep directory holds the state.',
           f'#SBATCH --job-name=lmjax-{sweep_dir.sweep.name}-{phase}',
           f'#SBATCH --array=0-{len(runs) - 1}'
           + (f'%{opts["max_concurrent"]}' if opts.get('max_concurrent') else ''),
           f'#SBATCH --nodes={nodes}', '#SBATCH --ntasks-per-node=1',
           f'#SBATCH --output={sweep_dir.slurm_output()}']
  for key in ('partition', 'time', 'account', 'gpus_per_node', 'cpus_per_task'):
    if opts.get(key):
      lines.append(f'#SBATCH --{key.replace("_", "-")}={opts[key]}')
  lines += [f'#SBATCH {x}' for x in opts.get('extra', ())]
  lines += ['set -uo pipefail', f'cd {shlex.quote(os.getcwd())}']
  lines += list(opts.get('setup', ()))
  lines += [f'export JAX_COMPILATION_CACHE_DIR={sweep_dir.jax_cache()}',
            'case "$SLURM_ARRAY_TASK_ID" in']
  extra = ['--distributed'] if nodes > 1 else []
  for i, run in enumerate(runs):
    argv = sweep_dir.command(run, python=opts.get('python') or sys.executable,
                             extra=extra)
    lines.append(f'  {i}) RUN={run.name}; CMD=({" ".join(shlex.quote(a) for a in argv)}) ;;')
  run_log = sweep_dir.log_path('$RUN')  # $RUN: the shell variable of the task's run name
  python = shlex.quote(opts.get('python') or sys.executable)
  lines += [f'  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit {EXIT_USAGE} ;;',
            'esac',
            # A Python that cannot run lmjax fails the task with one line, before srun.
            f'if ! why=$({python} -c "import absl, jax, lmjax" 2>&1); then',
            f'  echo "error: --slurm_python={python} on $(hostname) cannot import lmjax: '
            '$(echo "$why" | tail -n 1); pass the Python of an environment where lmjax is '
            f'installed (--slurm_python) or activate one (--slurm_setup)" >> "{run_log}"',
            '  ' + _status_json(sweep_dir, 'failed', EXIT_USAGE), f'  exit {EXIT_USAGE}', 'fi',
            _status_json(sweep_dir, 'running', 'null'),
            # SLURM's SIGTERM reaches launch.train, which saves a checkpoint and exits 75; the
            # shell outlives it to record that.
            """trap 'echo "$(date +%T) SIGTERM from SLURM" >&2' TERM""",
            f'srun --kill-on-bad-exit=1 "${{CMD[@]}}" >> "{run_log}" 2>&1 &',
            'pid=$!',
            'while wait $pid; code=$?; kill -0 $pid 2> /dev/null; do :; done',
            f'case $code in 0) state=done ;; {EXIT_PREEMPTED}) state=interrupted ;; '
            '*) state=failed ;; esac',
            _status_json(sweep_dir, '$state', '$code'),
            'exit $code', '']
  return '\n'.join(lines)


def queued(job_ids):
  """Array tasks ('123_4') of `job_ids` that squeue still lists (pending or running); None
  where squeue is not on PATH (a sweep directory read off the cluster)."""
  if not job_ids:
    return set()
  if shutil.which('squeue') is None:
    return None
  arrays = sorted({j.split('_')[0] for j in job_ids})
  out = subprocess.run(['squeue', '-h', '-r', '-o', '%i', '-j', ','.join(arrays)],
                       check=False, capture_output=True, text=True)
  return set(out.stdout.split()) if out.returncode == 0 else set()


def plan_submission(sweep_dir, skip=()) -> Submission:
  """The runs to submit, leaving out those done, queued or running, and `skip` (runs whose
  config is invalid)."""
  jobs = job_ids(sweep_dir)
  listed = queued(set(jobs.values()))
  if listed is None:
    raise SlurmError('squeue is not on PATH: run launch.sweep --backend=slurm on a SLURM '
                     'login node, or use --dry_run')
  missing = [r for r in sweep_dir.runs.values()
             if not sweep_dir.is_done(r.name) and jobs.get(r.name) not in listed
             and r.name not in skip]
  return Submission([r for r in missing if r.branch_of is None],
                    [r for r in missing if r.branch_of is not None])


def submit(sweep_dir, opts, dry_run, stream, skip=()):
  """Writes the scripts to slurm/ and submits them (with --dry_run: prints them only)."""
  first, branches = plan_submission(sweep_dir, skip)
  if not first and not branches:
    stream.write('nothing to submit: every run is done, queued or running\n')
    return EXIT_OK
  if not dry_run and shutil.which('sbatch') is None:
    raise SlurmError('sbatch is not on PATH: run on a SLURM login node, or use --dry_run to see '
                     'the scripts')
  folder = sweep_dir.slurm_dir()
  jobs = job_ids(sweep_dir)
  # Branches wait for the arrays of their stable runs: queued earlier, or submitted now.
  waits = {jobs[r.branch_of].split('_')[0] for r in branches
           if r.branch_of in jobs and not sweep_dir.is_done(r.branch_of) and r.branch_of not in
           {x.name for x in first}}
  for phase, runs in (('runs', first), ('branches', branches)):
    if not runs:
      continue
    text = script(sweep_dir, runs, opts, phase)
    path = sweep_dir.sbatch_path(phase)
    dep = [f'--dependency=afterany:{":".join(sorted(waits))}'] if phase == 'branches' and (
        waits) else []
    if dry_run:
      stream.write(f'# ---- {path} (--dry_run: neither written nor submitted)\n{text}')
      stream.write(f'# submit with: sbatch --parsable {" ".join(dep + [path])}\n')
      waits.add('<job id of the runs array>')
      continue
    os.makedirs(folder, exist_ok=True)
    write_text(path, text)
    out = subprocess.run(['sbatch', '--parsable', *dep, path], check=False, capture_output=True,
                         text=True)
    if out.returncode:
      raise SlurmError(f'sbatch {path} failed: {(out.stderr or out.stdout).strip()[:300]}')
    array = out.stdout.strip().split(';')[0]
    waits.add(array)
    jobs.update({r.name: f'{array}_{i}' for i, r in enumerate(runs)})
    write_json(sweep_dir.jobs_path(), jobs)
    stream.write(f'submitted {phase}: job array {array} with {len(runs)} task(s)\n')
  return EXIT_OK


def job_ids(sweep_dir):
  """{run name: array task id} of the runs submitted so far."""
  return read_json(sweep_dir.jobs_path()) or {}
