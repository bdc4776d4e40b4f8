"""launch.sweep end to end: a micro-sweep killed with SIGKILL, relaunched to completion, fitted;
the SLURM script of a dry run; bad sweep files and directories."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP = """
from lmjax import sweeps
BASE = 'experiments/configs/tiny.py'

def get_sweep():
  recipe = sweeps.Recipe(batch_size=16, seq_len=64, lr=3e-3, warmup_steps=5, checkpoints=4)
  shapes = sweeps.ladder([4e3, 1.5e4, 5e4], BASE, aspect=24, head_dim=8, seq_len=64)
  runs = sweeps.grid(shapes, [4e4, 8e4], recipe=recipe, base_config=BASE, cooldown=0.2)
  return sweeps.Sweep(name=NAME, base_config=BASE, runs=tuple(runs){extra})
"""


def _sweep_file(tmp_path, name='e2e', extra='', body=None):
  path = tmp_path / f'{name}.py'
  path.write_text(body if body is not None else
                  f'NAME = {name!r}\n' + SWEEP.replace('{extra}', extra))
  return str(path)


def _sweep(*flags, **kw):
  return subprocess.run([sys.executable, '-m', 'launch.sweep', *flags], cwd=ROOT,
                        capture_output=True, text=True, **kw)


def _attempts(workdir, name):
  """How many times launch.train was started for a run (a header line per start)."""
  path = os.path.join(workdir, 'logs', f'{name}.log')
  with open(path) as f:
    return sum(line.startswith('=== ') for line in f)


def _running_with_checkpoint(workdir):
  """A running run that has saved a checkpoint short of its end, or None."""
  for name in os.listdir(os.path.join(workdir, 'runs')):
    status_path = os.path.join(workdir, 'status', f'{name}.json')
    try:
      with open(status_path) as f:
        status = json.load(f)
      steps = os.listdir(os.path.join(workdir, 'runs', name, 'checkpoints'))
    except (OSError, ValueError):
      continue
    if status.get('state') == 'running' and any(s.isdigit() for s in steps) and not (
        os.path.exists(os.path.join(workdir, 'runs', name, 'summary.json'))):
      return name
  return None


@pytest.mark.slow
def test_micro_sweep_survives_sigkill_and_is_fitted(tmp_path):
  sweep, workdir = _sweep_file(tmp_path), str(tmp_path / 'sweep')
  args = [sys.executable, '-m', 'launch.sweep', f'--sweep={sweep}', f'--workdir={workdir}',
          '--parallel=2']
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
  deadline, victim = time.time() + 300, None
  while victim is None and time.time() < deadline and proc.poll() is None:
    victim = _running_with_checkpoint(workdir) if os.path.isdir(
        os.path.join(workdir, 'runs')) else None
    time.sleep(0.005)
  assert victim is not None, proc.communicate()[0]
  os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every run with it, mid-way
  proc.wait()
  done_before = {n for n in os.listdir(os.path.join(workdir, 'runs'))
                 if os.path.exists(os.path.join(workdir, 'runs', n, 'summary.json'))}
  assert victim not in done_before

  status = _sweep(f'--sweep={sweep}', f'--workdir={workdir}', '--status')
  assert status.returncode == 1 and re.search(rf'{victim}\s+\w+\s+interrupted', status.stdout)

  again = _sweep(*args[3:])
  assert again.returncode == 0, again.stdout + again.stderr
  assert '9/9 done' in again.stdout
  for name in done_before:  # nothing that had finished ran again
    assert _attempts(workdir, name) == 1, name
    assert f'starting {name}' not in again.stdout and f'resuming {name}' not in again.stdout
  assert _attempts(workdir, victim) == 2
  with open(os.path.join(workdir, 'logs', f'{victim}.log')) as f:
    assert 'resumed from the checkpoint at step' in f.read()

  third = _sweep(*args[3:])  # everything done: nothing starts
  assert third.returncode == 0 and 'starting' not in third.stdout

  fit = subprocess.run([sys.executable, '-m', 'launch.fit', f'--sweep_dir={workdir}',
                        '--bootstrap=20', '--law=chinchilla,kaplan_n'], cwd=ROOT,
                       capture_output=True, text=True)
  assert fit.returncode == 0, fit.stderr[-2000:]
  assert 'collected 6 finished runs' in fit.stdout
  assert fit.stdout.count('stable phase (not a data point)') == 3
  with open(os.path.join(workdir, 'fits', 'fits.json')) as f:
    fits = json.load(f)
  assert fits['fits']['N']['chinchilla']['params']['alpha'] > 0
  with open(os.path.join(workdir, 'runs.csv')) as f:
    header, *rows = f.read().splitlines()
  assert len(rows) == 6 and 'cooldown_branch' in header


@pytest.mark.slow
def test_slurm_dry_run_prints_one_task_per_run_and_writes_nothing(tmp_path):
  sweep, workdir = _sweep_file(tmp_path), str(tmp_path / 'sweep')
  out = _sweep(f'--sweep={sweep}', f'--workdir={workdir}', '--backend=slurm', '--dry_run',
               '--slurm_partition=gpu', '--slurm_nodes=2', '--slurm_time=01:00:00')
  assert out.returncode == 0, out.stderr
  assert not os.path.exists(workdir)
  scripts = out.stdout.split('# ---- ')[1:]
  assert len(scripts) == 2  # the runs from scratch, then the cooldown branches
  first, branches = scripts
  assert '#SBATCH --array=0-2\n' in first and '#SBATCH --array=0-5\n' in branches
  assert '#SBATCH --partition=gpu' in first and '#SBATCH --nodes=2' in first
  assert '--dependency=afterany:<job id of the runs array>' in branches
  tasks = re.findall(r'^  (\d+)\) RUN=(\S+); CMD=\((.*)\) ;;$', first + branches, re.M)
  assert len(tasks) == 9
  for index, name, cmd in tasks:
    assert f'--workdir={workdir}/runs/{name}' in cmd and '--distributed' in cmd
    assert f'--config={ROOT}/experiments/configs/tiny.py' in cmd
    assert '--config.train.steps=' in cmd
    assert ('--config.train.init_from=' in cmd) == name.endswith('_cd0.2'), name
  assert [int(i) for i, _, _ in tasks] == [0, 1, 2, 0, 1, 2, 3, 4, 5]
  sbatch_missing = _sweep(f'--sweep={sweep}', f'--workdir={workdir}', '--backend=slurm',
                          env=dict(os.environ, PATH='/nonexistent'))
  assert sbatch_missing.returncode == 2 and 'sbatch is not on PATH' in sbatch_missing.stderr


def _one_line_error(out, *fragments):
  assert out.returncode == 2, out.stdout + out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), out.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_bad_sweep_files_and_directories(tmp_path):
  workdir = str(tmp_path / 'sweep')
  raising = _sweep_file(tmp_path, 'raising', body='def get_sweep():\n  raise KeyError("x")\n')
  _one_line_error(_sweep(f'--sweep={raising}', f'--workdir={workdir}'), 'raising.py',
                  'KeyError')
  empty = _sweep_file(tmp_path, 'empty', body='from lmjax import sweeps\n'
                      'def get_sweep():\n  return sweeps.Sweep("empty", "experiments/configs/'
                      'tiny.py", ())\n')
  _one_line_error(_sweep(f'--sweep={empty}', f'--workdir={workdir}'), 'has no runs')
  _one_line_error(_sweep(f'--sweep={tmp_path}/none.py', f'--workdir={workdir}'),
                  'no such file')
  assert not os.path.exists(workdir)

  # A run whose config fails validation is named; the other runs still run.
  bad = _sweep_file(tmp_path, 'onebad', body=(
      'import dataclasses\nfrom lmjax import sweeps\nBASE = "experiments/configs/tiny.py"\n'
      'def get_sweep():\n'
      '  recipe = sweeps.Recipe(batch_size=8, seq_len=32, lr=3e-3, warmup_steps=2)\n'
      '  shapes = sweeps.ladder([4e3], BASE, aspect=24, head_dim=8, seq_len=32)\n'
      '  good, = sweeps.l_of_n(shapes, 3e3, recipe=recipe, base_config=BASE)\n'
      '  broken = dataclasses.replace(good, name="broken", '
      'overrides={**good.overrides, "model.n_heads": 3})\n'
      '  return sweeps.Sweep("onebad", BASE, (broken, good))\n'))
  out = _sweep(f'--sweep={bad}', f'--workdir={workdir}')
  assert out.returncode == 1, out.stdout + out.stderr
  assert 'invalid run broken: config.model.n_heads=3' in out.stdout
  assert '1/2 done' in out.stdout and 'not done: broken' in out.stdout
  status = _sweep(f'--sweep={bad}', f'--workdir={workdir}', '--status')
  assert re.search(r'broken\s+l_of_n\s+failed.*n_heads=3', status.stdout)

  # The directory of another sweep is refused, untouched.
  before = sorted(os.listdir(workdir))
  other = _sweep_file(tmp_path, 'other')
  _one_line_error(_sweep(f'--sweep={other}', f'--workdir={workdir}'),
                  "holds sweep 'onebad', not 'other'")
  assert sorted(os.listdir(workdir)) == before
  stray = tmp_path / 'stray'
  stray.mkdir()
  (stray / 'notes.txt').write_text('mine')
  _one_line_error(_sweep(f'--sweep={other}', f'--workdir={stray}'), 'holds no sweep.json')
  _one_line_error(_sweep(f'--sweep={other}', f'--workdir={workdir}x', '--parallel=0'),
                  '--parallel=0')
