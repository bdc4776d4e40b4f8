"""The local backend of a sweep: a pool of `parallel` launch.train subprocesses.

Runs already done are skipped; unfinished ones resume from their checkpoints (launch.train does
that on an existing workdir); a cooldown branch starts once its stable run has saved the branch
step. What starts when is decided by lmjax/sweeps/schedule.py; this module keeps the processes,
signals, status files and printing. A failing run is recorded (exit code, log tail) and never
stops the others. SIGTERM or SIGINT to the launcher is passed on: every run saves a checkpoint
and stops (exit 75), so the same command continues later.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from typing import NamedTuple

from lmjax.core.errors import EXIT_FAILED, EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE
from lmjax.sweeps import schedule
from lmjax.sweeps.designs import compute
from lmjax.sweeps.sweepdir import SweepDir, SweepDirError, log_tail


def _fmt_time(s):
  return f'{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}'


class _Progress:
  """One line of counts and an ETA from the FLOPs finished so far; live on a terminal."""

  def __init__(self, sweep_dir, stream=sys.stdout):
    self.sweep_dir, self.stream, self.t0 = sweep_dir, stream, time.time()
    self.tty = stream.isatty()
    self.flops_done = 0.0

  def line(self, running):
    states = {name: self.sweep_dir.state(name) for name in self.sweep_dir.runs}
    counts = {s: sum(v == s for v in states.values()) for s in ('done', 'failed', 'diverged')}
    todo = [r for n, r in self.sweep_dir.runs.items() if states[n] != 'done']
    left = sum(self.sweep_dir.spent(r) for r in todo)
    rate = self.flops_done / max(time.time() - self.t0, 1e-9)
    eta = _fmt_time(left / rate) if rate > 0 else ('0:00:00' if not todo else '?')
    return (f'sweep {self.sweep_dir.sweep.name}: {counts["done"]}/{len(states)} done, '
            f'{running} running, {counts["failed"] + counts["diverged"]} failed; eta {eta}')

  def show(self, running, event=None):
    if event:
      self.stream.write(('\r\033[K' if self.tty else '') + event + '\n')
    if self.tty:
      self.stream.write('\r\033[K' + self.line(running))
    elif event:
      self.stream.write(self.line(running) + '\n')
    self.stream.flush()


class _Proc(NamedTuple):
  popen: subprocess.Popen
  log: object   # the run's log file, open for appending
  slot: int


class _Pool:
  """The launch.train processes of this launcher: starting, pinning, polling, signalling, and
  the status file and progress line of each."""

  def __init__(self, sweep_dir, cpus_per_run, train_flags, stream):
    self.sweep_dir, self.cpus_per_run, self.train_flags = sweep_dir, cpus_per_run, train_flags
    self.env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=sweep_dir.jax_cache(),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    self.cores = sorted(os.sched_getaffinity(0))
    self.progress = _Progress(sweep_dir, stream)
    self.procs = {}     # name -> _Proc
    self.stopping = []  # the signals received

  def on_signal(self, signum, frame):
    del frame
    self.stopping.append(signum)
    for proc in self.procs.values():
      proc.popen.send_signal(signal.SIGTERM)

  def free_slots(self, parallel):
    used = {proc.slot for proc in self.procs.values()}
    return [s for s in range(parallel) if s not in used]

  def start(self, run, slot):
    sweep_dir = self.sweep_dir
    log = open(sweep_dir.log_path(run.name), 'ab')
    argv = sweep_dir.command(run, extra=self.train_flags)
    log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(argv)}\n'.encode())
    log.flush()
    pin = None
    if self.cpus_per_run:
      n = self.cpus_per_run
      mine = set(self.cores[(slot * n) % len(self.cores):][:n])
      pin = lambda: os.sched_setaffinity(0, mine)
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                         env=self.env, cwd=os.getcwd(), preexec_fn=pin)
    attempts = sweep_dir.status(run.name).get('attempts', 0) + 1
    sweep_dir.set_status(run.name, state='running', pid=p.pid, host=os.uname().nodename,
                         exit_code=None, attempts=attempts, started=time.time())
    self.procs[run.name] = _Proc(p, log, slot)
    verb = 'resuming' if sweep_dir.run(run.name).has_checkpoints() else 'starting'
    self.progress.show(len(self.procs), f'{verb} {run.name} (attempt {attempts})')

  def poll(self):
    """Records every process that has ended."""
    for name, proc in list(self.procs.items()):
      if proc.popen.poll() is not None:
        self._finish(name, proc.popen.returncode)

  def _finish(self, name, code):
    sweep_dir, progress = self.sweep_dir, self.progress
    self.procs.pop(name).log.close()
    sweep_dir.upload_log(name)
    if code == 0 and sweep_dir.is_done(name):
      sweep_dir.set_status(name, state='done', exit_code=EXIT_OK, log_tail='')
      progress.flops_done += sweep_dir.spent(sweep_dir.runs[name])
      progress.show(len(self.procs),
                    f'done {name}: eval loss {sweep_dir.summary(name).get("eval_loss"):.4f}')
      return
    tail = log_tail(sweep_dir.log_path(name))
    state = 'interrupted' if code == EXIT_PREEMPTED else 'failed'
    sweep_dir.set_status(name, state=state, exit_code=code, log_tail=tail)
    last = tail.strip().rsplit('\n', 1)[-1]
    progress.show(len(self.procs), f'{state} {name} (exit {code}): {last[:200]}'
                  f' [log: {sweep_dir.log_path(name)}]')

  def block(self, run, reason):
    """Records a run that can never start (schedule.Blocked)."""
    self.sweep_dir.set_status(run.name, state='failed', exit_code=None,
                              log_tail=f'its stable run {reason}')
    self.progress.show(len(self.procs), f'blocked {run.name}: {reason}')


def run_pool(sweep_dir, parallel, cpus_per_run=0, train_flags=(), stream=sys.stdout,
             skip=()):
  """Runs every run that is not done; returns the exit status for launch.sweep."""
  todo = [r for r in schedule.order(sweep_dir.runs.values())
          if not sweep_dir.is_done(r.name) and r.name not in skip]
  pool = _Pool(sweep_dir, cpus_per_run, train_flags, stream)
  old = {s: signal.signal(s, pool.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    while todo or pool.procs:
      pool.poll()
      if pool.stopping:
        if not pool.procs:
          break
        time.sleep(0.2)
        continue
      now = schedule.decide(
          todo, running=set(pool.procs), ready={r.name for r in todo if sweep_dir.ready(r)},
          elsewhere={r.name for r in todo if sweep_dir.state(r.name) == 'running'},
          free_slots=pool.free_slots(parallel))
      for run, reason in now.blocked:
        todo.remove(run)
        pool.block(run, reason)
      for run, slot in now.start:
        todo.remove(run)
        pool.start(run, slot)
      if now.stop:
        break  # nothing running and nothing can start (branches whose parent is gone)
      time.sleep(0.2)
      if pool.progress.tty:
        pool.progress.show(len(pool.procs))
  finally:
    for s, h in old.items():
      signal.signal(s, h)
  return _outcome(sweep_dir, pool, stream)


def _outcome(sweep_dir, pool, stream):
  """Prints how the pool ended; the exit status of launch.sweep."""
  if pool.progress.tty:
    stream.write('\n')
  if pool.stopping:
    stream.write(f'stopped by signal {pool.stopping[0]}: the runs saved checkpoints; run the '
                 'same command again to continue\n')
    return EXIT_PREEMPTED
  left = [n for n in sweep_dir.runs if not sweep_dir.is_done(n)]
  stream.write(pool.progress.line(0) + '\n')
  if left:
    stream.write(f'not done: {", ".join(left)} (see launch.sweep --status)\n')
    return EXIT_FAILED
  return EXIT_OK


def announce(sweep, sweep_dir, read_only, stream=sys.stdout) -> dict:
  """Prints the plan's size and notes, and the runs whose config does not resolve (marked
  failed unless read_only); returns those runs' reasons by name."""
  cost = compute(sweep.runs)
  stream.write(f'sweep {sweep.name}: {len(sweep.runs)} runs '
               f'({sum(r.design == "stable" for r in sweep.runs)} stable phases of cooldown '
               f'branches), {cost["spent"]:.3g} training FLOPs ({cost["saved_fraction"]:.0%} '
               f'saved by branching); {sum(sweep_dir.is_done(n) for n in sweep_dir.runs)} done '
               'already\n')
  if sweep.notes:
    stream.write(f'  {sweep.notes}\n')
  invalid = {n: m for n, m in sweep_dir.invalid_runs().items() if not sweep_dir.is_done(n)}
  for name, message in invalid.items():
    stream.write(f'invalid {message}; the other runs go on\n')
    if not read_only:
      sweep_dir.set_status(name, state='failed', exit_code=EXIT_USAGE, log_tail=message)
  return invalid


def run_locked(sweep_dir, invalid, parallel, cpus_per_run, train_flags=()) -> int:
  """run_pool under the sweep directory's lock (one launcher per directory); SweepDirError
  when another launcher holds it."""
  lock = open(sweep_dir.lock_path(), 'w')  # noqa: SIM115  (held while the pool runs)
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    lock.close()
    raise SweepDirError(f'--workdir={sweep_dir.path}: another launch.sweep is running on '
                        'it') from None
  with lock:
    return run_pool(sweep_dir, parallel, cpus_per_run, tuple(train_flags), skip=invalid)


def run_local(sweep, workdir, parallel=1, cpus_per_run=0) -> int:
  """A sweep built in Python (a study's phases) run as launch.sweep --backend=local runs a
  sweep file: the same directory, printing, resuming and exit status."""
  sweep_dir = SweepDir.open(workdir, sweep, create=True)
  return run_locked(sweep_dir, announce(sweep, sweep_dir, False), parallel, cpus_per_run)
