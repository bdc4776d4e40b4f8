from lmjax.sweeps import schedule
from lmjax.sweeps.runs import Run


def _run(name, design='grid', branch_of=None, branch_step=None):
  return Run(name, {'train.steps': 10}, 1, 1, 1, 1.0, 1.0, 0, design, None, branch_of,
             branch_step)


S1, S2 = _run('s1', 'stable'), _run('s2', 'stable')
B1, B2 = _run('b1', branch_of='s1', branch_step=5), _run('b2', branch_of='s2', branch_step=8)
A = _run('a', 'isoflop')


def _names(starts):
  return [(s.run.name, s.slot) for s in starts]


def test_order_puts_stable_runs_first_and_branches_last():
  order = schedule.order([B1, A, S1, B2, S2])
  assert [r.name for r in order] == ['s1', 's2', 'a', 'b1', 'b2']


def test_stable_runs_start_first_in_the_free_slots():
  todo = schedule.order([B1, B2, S1, S2, A])
  now = schedule.decide(todo, running=set(), elsewhere=set(), ready={'s1', 's2', 'a'},
                        free_slots=[0, 1])
  assert _names(now.start) == [('s1', 0), ('s2', 1)]
  assert now.blocked == [] and not now.stop


def test_never_more_than_the_free_slots():
  todo = [S1, S2, A]
  ready = {'s1', 's2', 'a'}
  now = schedule.decide(todo, running={'x'}, elsewhere=set(), ready=ready, free_slots=[2])
  assert _names(now.start) == [('s1', 2)]
  now = schedule.decide(todo, running={'x', 'y'}, elsewhere=set(), ready=ready, free_slots=[])
  assert now.start == [] and now.blocked == [] and not now.stop


def test_a_branch_waits_for_its_parents_checkpoint():
  # The stable run is running here: its branch is neither started nor blocked.
  now = schedule.decide([B1], running={'s1'}, elsewhere=set(), ready=set(), free_slots=[1])
  assert now.start == [] and now.blocked == [] and not now.stop
  # ... and so while it is still to run.
  now = schedule.decide([S1, B1], running=set(), elsewhere=set(), ready={'s1'},
                        free_slots=[0, 1])
  assert _names(now.start) == [('s1', 0)] and now.blocked == []
  # Once the checkpoint of the branch step exists, the branch starts.
  now = schedule.decide([B1], running={'s1'}, elsewhere=set(), ready={'b1'}, free_slots=[1])
  assert _names(now.start) == [('b1', 1)]


def test_a_branch_whose_parent_ended_without_the_checkpoint_is_blocked():
  # s1 finished or failed (neither running nor to run) and never saved step 5.
  now = schedule.decide([B1, A], running=set(), elsewhere=set(), ready={'a'},
                        free_slots=[0, 1])
  assert [(b.run.name, b.reason) for b in now.blocked] == [
      ('b1', 's1 has no checkpoint at step 5')]
  assert _names(now.start) == [('a', 0)] and not now.stop
  # With the checkpoint there, the same branch starts although its parent is gone.
  now = schedule.decide([B1], running=set(), elsewhere=set(), ready={'b1'}, free_slots=[0])
  assert _names(now.start) == [('b1', 0)] and now.blocked == []


def test_runs_alive_elsewhere_are_waited_for_not_started_twice():
  now = schedule.decide([S1, A], running=set(), elsewhere={'s1'}, ready={'s1', 'a'},
                        free_slots=[0, 1])
  assert _names(now.start) == [('a', 0)]
  now = schedule.decide([S1, B1], running=set(), elsewhere={'s1'}, ready={'s1'},
                        free_slots=[0, 1])
  assert now.start == [] and now.blocked == [] and not now.stop  # wait: s1 may still finish
  # A name alive elsewhere that is not to run here changes nothing.
  now = schedule.decide([A], running=set(), elsewhere={'zz'}, ready={'a'}, free_slots=[0])
  assert _names(now.start) == [('a', 0)]


def test_stop_when_nothing_can_ever_start():
  # c branches from b1, which is blocked: nothing runs, nothing to wait for, nothing ready.
  c = _run('c', branch_of='b1', branch_step=3)
  now = schedule.decide([B1, c], running=set(), elsewhere=set(), ready=set(), free_slots=[0])
  assert [b.run.name for b in now.blocked] == ['b1'] and now.start == [] and now.stop
  # Not while a run is running here, or alive elsewhere, or when nothing is left.
  assert not schedule.decide([c], running={'b1'}, elsewhere=set(), ready=set(),
                             free_slots=[1]).stop
  assert not schedule.decide([B1, c], running=set(), elsewhere={'c'}, ready=set(),
                             free_slots=[0]).stop
  assert not schedule.decide([], running=set(), elsewhere=set(), ready=set(),
                             free_slots=[0]).stop
