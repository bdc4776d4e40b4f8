"""The local backend of launch.sweep: a pool of `parallel` launch.train subprocesses.

Runs already done are skipped; unfinished ones resume from their checkpoints (launch.train does
that on an existing workdir); a cooldown branch starts once its stable run has saved the branch
step. A failing run is recorded (exit code, log tail) and never stops the others. SIGTERM or
SIGINT to the launcher is passed on: every run saves a checkpoint and stops (exit 75), so the same
command continues later.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from lmjax.exitcodes import EXIT_FAILED, EXIT_PREEMPTED
from lmjax.sweeps.sweepdir import log_tail


def _fmt_time(s):
  return f'{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}'


class _Progress:
  """One line of counts and an ETA from the FLOPs finished so far; live on a terminal."""

  def __init__(self, sweep_dir, stream=sys.stdout):
    self.d, self.stream, self.t0 = sweep_dir, stream, time.time()
    self.tty = stream.isatty()
    self.flops_done = 0.0

  def line(self, running):
    states = {name: self.d.state(name) for name in self.d.runs}
    counts = {s: sum(v == s for v in states.values()) for s in ('done', 'failed', 'diverged')}
    todo = [r for n, r in self.d.runs.items() if states[n] != 'done']
    left = sum(self.d.spent(r) for r in todo)
    rate = self.flops_done / max(time.time() - self.t0, 1e-9)
    eta = _fmt_time(left / rate) if rate > 0 else ('0:00:00' if not todo else '?')
    return (f'sweep {self.d.sweep.name}: {counts["done"]}/{len(states)} done, {running} running, '
            f'{counts["failed"] + counts["diverged"]} failed; eta {eta}')

  def show(self, running, event=None):
    if event:
      self.stream.write(('\r\033[K' if self.tty else '') + event + '\n')
    if self.tty:
      self.stream.write('\r\033[K' + self.line(running))
    elif event:
      self.stream.write(self.line(running) + '\n')
    self.stream.flush()


def run_pool(sweep_dir, parallel, cpus_per_run=0, train_flags=(), stream=sys.stdout,
             skip=()):
  """Runs every run that is not done; returns the exit status for launch.sweep."""
  d = sweep_dir
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(d.path, 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  cores = sorted(os.sched_getaffinity(0))
  # Stable runs first: their checkpoints unblock the cooldown branches.
  order = sorted(d.runs.values(), key=lambda r: (r.design != 'stable', r.branch_of is not None))
  todo = [r for r in order if not d.is_done(r.name) and r.name not in skip]
  progress = _Progress(d, stream)
  procs = {}  # name -> (Popen, log file, slot)
  failed, stopping = [], []

  def on_signal(signum, frame):
    del frame
    stopping.append(signum)
    for p, _, _ in procs.values():
      p.send_signal(signal.SIGTERM)
  old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

  def start(run, slot):
    log = open(d.log_path(run.name), 'ab')
    argv = d.command(run, extra=train_flags)
    log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(argv)}\n'.encode())
    log.flush()
    pin = None
    if cpus_per_run:
      mine = set(cores[(slot * cpus_per_run) % len(cores):][:cpus_per_run])
      pin = lambda: os.sched_setaffinity(0, mine)
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                         env=env, cwd=os.getcwd(), preexec_fn=pin)
    attempts = d.status(run.name).get('attempts', 0) + 1
    d.set_status(run.name, state='running', pid=p.pid, host=os.uname().nodename,
                 exit_code=None, attempts=attempts, started=time.time())
    procs[run.name] = (p, log, slot)
    verb = 'resuming' if os.path.isdir(os.path.join(d.run_dir(run.name), 'checkpoints')) else (
        'starting')
    progress.show(len(procs), f'{verb} {run.name} (attempt {attempts})')

  def finish(name, code):
    _, log, _ = procs.pop(name)
    log.close()
    run = d.runs[name]
    if code == 0 and d.is_done(name):
      d.set_status(name, state='done', exit_code=0, log_tail='')
      progress.flops_done += d.spent(run)
      progress.show(len(procs), f'done {name}: eval loss {d.summary(name).get("eval_loss"):.4f}')
      return
    tail = log_tail(d.log_path(name))
    state = 'interrupted' if code == EXIT_PREEMPTED else 'failed'
    d.set_status(name, state=state, exit_code=code, log_tail=tail)
    last = tail.strip().splitlines()[-1] if tail.strip() else ''
    if state == 'failed':
      failed.append(name)
    progress.show(len(procs), f'{state} {name} (exit {code}): {last[:200]}'
                  f' [log: {d.log_path(name)}]')

  try:
    while todo or procs:
      for name, (p, _, _) in list(procs.items()):
        if p.poll() is not None:
          finish(name, p.returncode)
      if stopping:
        if not procs:
          break
        time.sleep(0.2)
        continue
      waiting_on = set(procs) | {x.name for x in todo}
      for r in [r for r in todo if r.branch_of and r.branch_of not in waiting_on
                and not d.ready(r)]:
        todo.remove(r)
        failed.append(r.name)
        d.set_status(r.name, state='failed', exit_code=None,
                     log_tail=f'its stable run {r.branch_of} has no checkpoint at step '
                     f'{r.branch_step}')
        progress.show(len(procs), f'blocked {r.name}: {r.branch_of} has no checkpoint at step '
                      f'{r.branch_step}')
      # A run still alive from a launcher that was killed is waited for, not started twice.
      elsewhere = {r.name for r in todo if d.state(r.name) == 'running'}
      free = [s for s in range(parallel) if s not in {slot for _, _, slot in procs.values()}]
      for run in [r for r in todo if d.ready(r) and r.name not in elsewhere][:len(free)]:
        todo.remove(run)
        start(run, free.pop(0))
      if not procs and not elsewhere and todo and not any(d.ready(r) for r in todo):
        break  # nothing running and nothing can start (branches whose parent is gone)
      time.sleep(0.2)
      if progress.tty:
        progress.show(len(procs))
  finally:
    for s, h in old.items():
      signal.signal(s, h)
  if progress.tty:
    stream.write('\n')
  if stopping:
    stream.write(f'stopped by signal {stopping[0]}: the runs saved checkpoints; run the same '
                 'command again to continue\n')
    return EXIT_PREEMPTED
  left = [n for n in d.runs if not d.is_done(n)]
  stream.write(progress.line(0) + '\n')
  if left:
    stream.write(f'not done: {", ".join(left)} (see launch.sweep --status)\n')
    return EXIT_FAILED
  return 0
