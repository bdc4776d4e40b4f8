"""Which runs of a sweep a local launcher starts next: pure decisions on plain data.

lmjax/sweeps/local.py polls its processes, reads the sweep directory, then asks `decide` what to
do; it keeps the processes, signals, status files and printing. Stable runs go first (`order`):
their checkpoints unblock the cooldown branches. A branch starts once its stable run has saved
the branch step; it is blocked when that step can never come (the stable run is neither running
nor still to run, and left no checkpoint there). A run alive in another launcher (one killed
outright leaves its runs going) is waited for, never started twice.
"""
from __future__ import annotations

from typing import NamedTuple

from lmjax.sweeps.runs import Run


class Start(NamedTuple):
  run: Run
  slot: int     # which of the launcher's `parallel` places (and cores) it takes


class Blocked(NamedTuple):
  run: Run
  reason: str   # one line: the stable run and the checkpoint it lacks


class Decision(NamedTuple):
  start: list[Start]      # in order, at most one per free slot
  blocked: list[Blocked]  # never startable: the launcher records them as failed
  stop: bool              # nothing runs and nothing left can ever start


def order(runs) -> list[Run]:
  """The runs in the order they are started: stable runs, then other runs, then branches."""
  return sorted(runs, key=lambda r: (r.design != 'stable', r.branch_of is not None))


def decide(todo, running, elsewhere, ready, free_slots) -> Decision:
  """What to do now.

  todo: the runs not yet started here, in `order`; running: names of the runs this launcher
  runs; elsewhere: names of runs alive in another launcher; ready: names of the runs whose
  cooldown parent has the checkpoint they start from (every run that is not a branch);
  free_slots: the slot numbers free, in the order to fill them.
  """
  waiting_on = set(running) | {r.name for r in todo}
  blocked = [Blocked(r, f'{r.branch_of} has no checkpoint at step {r.branch_step}')
             for r in todo
             if r.branch_of and r.branch_of not in waiting_on and r.name not in ready]
  left = [r for r in todo if r.name not in {b.run.name for b in blocked}]
  waiting = {r.name for r in left if r.name in elsewhere}
  startable = [r for r in left if r.name in ready and r.name not in waiting]
  start = [Start(r, slot) for r, slot in zip(startable, free_slots)]
  left = [r for r in left if r.name not in {s.run.name for s in start}]
  stop = (not running and not start and not waiting and bool(left)
          and not any(r.name in ready for r in left))
  return Decision(start, blocked, stop)
