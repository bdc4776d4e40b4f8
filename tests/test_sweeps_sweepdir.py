import dataclasses
import json
import os

import pytest

from lmjax import sweeps
from lmjax.core.errors import EXIT_NONFINITE, EXIT_PREEMPTED
from lmjax.sweeps.sweepdir import SweepDir, SweepDirError, run_dir
from tests.sweeps_testing import TINY, one_line_error
NO_SUCH_PID = 2 ** 22 + 1  # above Linux's largest pid_max


def _run(name, design='grid', steps=10, branch_of=None, branch_step=None, **overrides):
  return sweeps.Run(name, {'train.steps': steps, **overrides}, 1, 1, 1, 100.0, 1.0, 0, design,
                    None, branch_of, branch_step)


STABLE = _run('st', 'stable', 8, **{'checkpoint.keep_steps': (8,)})
BRANCH = _run('br', branch_of='st', branch_step=8)
OTHER = _run('q7z')
SWEEP = sweeps.Sweep('s', TINY, (STABLE, BRANCH, OTHER))


def _error(fn):
  return one_line_error(fn, SweepDirError)


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(obj if isinstance(obj, str) else json.dumps(obj))


def test_open_creates_the_directory_and_its_plan(tmp_path):
  path = tmp_path / 'sweep'
  d = SweepDir.open(str(path), SWEEP, create=False)  # a dry run or status: nothing written
  assert not path.exists() and d.path == str(path)
  d = SweepDir.open(str(path), SWEEP)
  assert sorted(os.listdir(path)) == ['jax_cache', 'logs', 'runs', 'status', 'sweep.json']
  with open(d.sweep_json_path()) as f:
    text = f.read()
  assert text == json.dumps({**SWEEP.to_json(), 'fingerprint': SWEEP.fingerprint()}, indent=1)
  again = SweepDir.open(str(path), SWEEP)
  assert again.runs == d.runs and list(d.runs) == ['st', 'br', 'q7z']
  relative = os.path.relpath(path)
  assert SweepDir.open(relative, SWEEP).path == str(path)  # launchers use absolute paths


def test_open_refuses_another_sweep_and_changed_or_dropped_runs(tmp_path):
  path = str(tmp_path / 'sweep')
  SweepDir.open(path, SWEEP)
  before = sorted(os.listdir(path))
  assert "holds sweep 's', not 't'" in _error(
      lambda: SweepDir.open(path, dataclasses.replace(SWEEP, name='t')))
  assert 'planned on base config' in _error(
      lambda: SweepDir.open(path, dataclasses.replace(SWEEP, base_config='other.py')))
  changed = dataclasses.replace(OTHER, overrides={**OTHER.overrides, 'optim.lr': 1.0})
  assert 'changes run(s) q7z' in _error(
      lambda: SweepDir.open(path, sweeps.Sweep('s', TINY, (STABLE, BRANCH, changed))))
  assert 'drops run(s) q7z' in _error(
      lambda: SweepDir.open(path, sweeps.Sweep('s', TINY, (STABLE, BRANCH))))
  assert sorted(os.listdir(path)) == before


def test_open_accepts_added_runs_and_saves_them(tmp_path):
  path = str(tmp_path / 'sweep')
  SweepDir.open(path, SWEEP)
  more = sweeps.Sweep('s', TINY, (*SWEEP.runs, _run('new')))
  d = SweepDir.open(path, more)
  assert 'new' in d.runs
  with open(d.sweep_json_path()) as f:
    assert json.load(f)['fingerprint'] == more.fingerprint() != SWEEP.fingerprint()


def test_open_refuses_a_file_a_stray_directory_or_a_broken_plan(tmp_path):
  (tmp_path / 'file').write_text('x')
  assert 'is a file' in _error(lambda: SweepDir.open(str(tmp_path / 'file'), SWEEP))
  _write(str(tmp_path / 'stray' / 'notes.txt'), 'mine')
  assert 'holds no sweep.json' in _error(lambda: SweepDir.open(str(tmp_path / 'stray'), SWEEP))
  _write(str(tmp_path / 'broken' / 'sweep.json'), '{"name": ')
  assert 'sweep.json is unreadable' in _error(
      lambda: SweepDir.open(str(tmp_path / 'broken'), SWEEP))


def test_read_opens_an_existing_directory_without_writing(tmp_path):
  path = str(tmp_path / 'sweep')
  SweepDir.open(path, SWEEP)
  before = sorted(os.walk(path))
  relative = os.path.relpath(path)
  d = SweepDir.read(relative)
  assert d.sweep == SWEEP and d.path == relative  # the path as given
  assert d.run_dir('q7z') == os.path.join(relative, 'runs', 'q7z')
  assert sorted(os.walk(path)) == before
  assert _error(lambda: SweepDir.read(str(tmp_path))) == (
      f'{tmp_path}: no sweep.json (not a sweep directory?)')
  _write(str(tmp_path / 'sweep.json'), '[')
  assert 'sweep.json: unreadable or not valid JSON' in _error(
      lambda: SweepDir.read(str(tmp_path)))
  _write(str(tmp_path / 'sweep.json'), {'name': 'x', 'runs': [{'name': 'a'}]})
  assert "bad sweep JSON (KeyError: 'base_config')" in _error(
      lambda: SweepDir.read(str(tmp_path)))


def test_state_of_each_run(tmp_path):
  d = SweepDir.open(str(tmp_path / 'sweep'), SWEEP)
  assert d.state('q7z') == 'pending' and not d.run('q7z').exists()
  d.set_status('q7z', state='failed', exit_code=1, attempts=1)
  assert d.state('q7z') == 'failed'
  d.set_status('q7z', state='failed', exit_code=EXIT_NONFINITE)
  assert d.state('q7z') == 'diverged' and d.status('q7z')['attempts'] == 1  # fields merged
  d.set_status('q7z', state='interrupted', exit_code=EXIT_PREEMPTED)
  assert d.state('q7z') == 'interrupted'
  d.set_status('q7z', state='running', exit_code=None, pid=NO_SUCH_PID, host=os.uname().nodename)
  assert d.state('q7z') == 'interrupted'  # its process is gone: the launcher was killed
  d.set_status('q7z', pid=os.getpid())
  assert d.state('q7z') == 'interrupted'  # a live process, but not this run's launch.train
  d.set_status('q7z', host='another-host')
  assert d.state('q7z') == 'running'  # on another host: assumed alive
  _write(os.path.join(d.run_dir('q7z'), 'summary.json'), {'eval_loss': 2.5})
  assert d.state('q7z') == 'done' and d.is_done('q7z') and d.summary('q7z')['eval_loss'] == 2.5
  assert d.recorded_status('st') is None and d.status('st') == {}
  assert d.recorded_status('q7z')['state'] == 'running'


def test_checkpoints_and_branches(tmp_path):
  d = SweepDir.open(str(tmp_path / 'sweep'), SWEEP)
  assert d.ready(STABLE) and not d.ready(BRANCH) and not d.run('st').has_checkpoints()
  step = os.path.join(d.run_dir('st'), 'checkpoints', '8')
  os.makedirs(step)
  assert d.run('st').has_checkpoints() and not d.run('st').has_checkpoint(8)  # being written
  _write(os.path.join(step, '_CHECKPOINT_METADATA'), '{}')
  assert d.run('st').has_checkpoint(8) and d.ready(BRANCH) and not d.run('st').has_checkpoint(4)
  _write(os.path.join(d.run_dir('st'), 'checkpoints', '4', 'commit_success.txt'), '')
  assert d.run('st').has_checkpoint(4)


def test_command_of_a_branch_and_of_a_run(tmp_path):
  d = SweepDir.open(str(tmp_path / 'sweep'), SWEEP)
  argv = d.command(BRANCH, python='py', extra=['--config.train.log_every=5'])
  assert argv == ['py', '-m', 'launch.train', f'--config={sweeps.repo_path(TINY)}',
                  *sorted([*BRANCH.flags(), f'--config.train.init_from={d.path}/runs/st',
                           '--config.train.init_step=8']), '--config.train.log_every=5',
                  f'--workdir={d.path}/runs/br']
  argv = d.command(OTHER, python='py')
  assert not any('init_from' in a for a in argv) and argv[-1] == f'--workdir={d.path}/runs/q7z'
  assert d.spent(BRANCH) == pytest.approx(100.0 * 2 / 10) and d.spent(OTHER) == 100.0
  # The branch rule is written once (Run.branch_overrides): the command and the check agree.
  assert d.overrides(BRANCH)['train.init_from'] == d.run_dir('st') == run_dir(d.path, 'st')


def test_paths_stay_inside_the_directory(tmp_path):
  d = SweepDir.open(str(tmp_path / 'sweep'), SWEEP)
  paths = [d.log_path('q7z'), d.status_path('q7z'), d.jax_cache(), d.lock_path(), d.jobs_path(),
           d.sbatch_path('runs'), d.slurm_output(), d.run('q7z').config_path,
           d.run('q7z').metrics_path]
  assert all(p.startswith(d.path + os.sep) for p in paths)
  assert len(set(paths)) == len(paths)
  os.makedirs(d.run_dir('stray'))
  assert d.run_names_on_disk() == {'stray'}
