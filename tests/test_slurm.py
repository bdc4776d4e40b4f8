"""lmjax on a real SLURM cluster (tests/slurm_cluster.py: one node, Debian's daemons as child
processes): a sweep submitted as job arrays exactly as a user runs it, with one task cancelled,
one crashed and one requeued, then relaunched, collected and fitted, its losses those of an
uninterrupted local sweep; a task whose Python cannot import lmjax; `srun --ntasks=2` training
that finds its peers in SLURM's environment. Skipped, with the reason, where Slurm or root is
missing (.ci/run installs the packages; see README.md)."""
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lmjax.core.rundir import RunDir
from tests import slurm_cluster, xla

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(slurm_cluster.skip_reason() is not None,
                                 reason=slurm_cluster.skip_reason() or '')]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Three runs of ~300 steps (3 shapes, one data size) with a checkpoint every ~1/8 of the way,
# so that a run can be caught between its first checkpoint and its end.
SWEEP = """
from lmjax import sweeps
BASE = 'experiments/configs/tiny.py'

def get_sweep():
  recipe = sweeps.Recipe(batch_size=16, seq_len=64, lr=3e-3, warmup_steps=5, checkpoints=8)
  shapes = sweeps.ladder([1.5e4, 3e4, 5e4], BASE, aspect=24, head_dim=8, seq_len=64)
  runs = sweeps.grid(shapes, [3e5], recipe=recipe, base_config=BASE)
  return sweeps.Sweep(name='onslurm', base_config=BASE, runs=tuple(runs))
"""
SLURM_FLAGS = ['--backend=slurm', '--slurm_partition=long', '--slurm_time=00:30:00',
               '--slurm_account=lab', '--slurm_cpus_per_task=1', '--slurm_max_concurrent=2']


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
  c = slurm_cluster.Cluster(tmp_path_factory.mktemp('slurm')).start()
  yield c
  c.stop()


def _sweep(cluster, *flags):
  out = subprocess.run([sys.executable, '-m', 'launch.sweep', *flags], cwd=ROOT,
                       env=cluster.env, capture_output=True, text=True, timeout=600)
  return out


def _fit(sweep_dir, *flags):
  """launch.fit of a sweep directory: L(N) over all three runs (one data size: no envelope)."""
  return subprocess.run([sys.executable, '-m', 'launch.fit', f'--sweep_dir={sweep_dir}',
                         '--law=kaplan_n', '--nokaplan_frontier', *flags], cwd=ROOT,
                        capture_output=True, text=True)


def _train_pid(workdir):
  """The pid of the launch.train process whose --workdir is `workdir`, or None."""
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        argv = f.read().decode(errors='replace').split('\0')
    except OSError:
      continue
    if 'launch.train' in argv and f'--workdir={workdir}' in argv:
      return int(pid)
  return None


def _catch_mid_run(workdir, timeout=300):
  """Stops (SIGSTOP) the run in `workdir` once it has saved a checkpoint short of its end;
  returns its pid."""
  run, deadline = RunDir(workdir), time.time() + timeout
  while time.time() < deadline:
    pid = _train_pid(workdir)
    steps = os.listdir(run.checkpoints) if run.has_checkpoints() else []
    if pid and any(s.isdigit() and run.has_checkpoint(int(s)) for s in steps) and (
        not run.is_finished()):
      os.kill(pid, signal.SIGSTOP)
      return pid
    time.sleep(0.01)
  raise TimeoutError(f'{workdir} never ran with a checkpoint')


def _resume(pid):
  """SIGCONT to a stopped process, unless it is gone already."""
  time.sleep(0.5)
  with contextlib.suppress(ProcessLookupError):
    os.kill(pid, signal.SIGCONT)


def _table(path):
  with open(path) as f:
    return {row['name']: row for row in csv.DictReader(f)}


def _states(out):
  """{run: state} from launch.sweep --status."""
  rows = [line.split() for line in out.splitlines() if line.startswith('  ')]
  return {r[0]: r[2] for r in rows if len(r) > 2 and r[0] != 'run'}


def test_sweep_on_slurm_survives_scancel_crash_and_requeue(cluster, tmp_path):
  sweep_file = tmp_path / 'onslurm.py'
  sweep_file.write_text(SWEEP)
  workdir = tmp_path / 'sweep'
  args = [f'--sweep={sweep_file}', f'--workdir={workdir}']
  t0 = time.time()
  out = _sweep(cluster, *args, *SLURM_FLAGS)
  assert out.returncode == 0, out.stdout + out.stderr
  assert 'submitted runs: job array' in out.stdout and 'with 3 task(s)' in out.stdout
  jobs = json.loads((workdir / 'slurm' / 'jobs.json').read_text())
  names = sorted(jobs)
  job = cluster.job(jobs[names[0]])
  assert (job['Partition'], job['Account'], job['TimeLimit']) == ('long', 'lab', '00:30:00')
  assert job['ArrayTaskThrottle'] == '2' and job['NumCPUs'] == '1'

  # The two first tasks: one cancelled, one crashed (SIGKILL, as by the OOM killer); each is
  # first stopped mid-run so that neither can finish before it is hit.
  cancelled, crashed, requeued = names[0], names[1], names[2]
  pids = {n: _catch_mid_run(workdir / 'runs' / n) for n in (cancelled, crashed)}
  cluster.run('scancel', jobs[cancelled])
  os.kill(pids[crashed], signal.SIGKILL)
  _resume(pids[cancelled])  # (SLURM sends SIGCONT before its SIGTERM too): save and stop
  # Preemption: the third task requeued mid-run; SLURM runs its script again later (made
  # eligible at once here, in place of SLURM's delay for requeued jobs).
  pid = _catch_mid_run(workdir / 'runs' / requeued)
  cluster.run('scontrol', 'requeue', jobs[requeued])
  _resume(pid)
  deadline = time.time() + 60
  while cluster.job(jobs[requeued])['JobState'] != 'PENDING' and time.time() < deadline:
    time.sleep(0.2)
  cluster.run('scontrol', 'update', f'JobId={jobs[requeued]}', 'StartTime=now')
  cluster.wait_idle()

  status = _sweep(cluster, *args, '--status')
  assert status.returncode == 1, status.stdout
  states = _states(status.stdout)
  assert states[cancelled] == 'interrupted' and states[crashed] == 'failed', status.stdout
  assert states[requeued] == 'done', status.stdout
  log = (workdir / 'logs' / f'{requeued}.log').read_text()
  assert 'resumed from the checkpoint at step' in log, log[-2000:]

  again = _sweep(cluster, *args, *SLURM_FLAGS)  # the same command: only the two not done
  assert again.returncode == 0 and 'with 2 task(s)' in again.stdout, again.stdout + again.stderr
  cluster.wait_idle()
  for name in (cancelled, crashed):
    log = (workdir / 'logs' / f'{name}.log').read_text()
    assert 'resumed from the checkpoint at step' in log, log[-2000:]
  done = _sweep(cluster, *args, '--status')
  assert done.returncode == 0, done.stdout
  slurm_seconds = time.time() - t0

  fit = _fit(workdir, '--bootstrap=10')
  assert fit.returncode == 0, fit.stdout + fit.stderr
  assert 'collected 3 finished runs' in fit.stdout

  # The same sweep run locally without interruption: the same rows, the same losses.
  local = tmp_path / 'local'
  out = _sweep(cluster, f'--sweep={sweep_file}', f'--workdir={local}', '--parallel=2')
  assert out.returncode == 0, out.stdout + out.stderr
  assert _fit(local, '--bootstrap=0').returncode == 0
  on_slurm, uninterrupted = _table(workdir / 'runs.csv'), _table(local / 'runs.csv')
  assert sorted(on_slurm) == sorted(uninterrupted) == names
  for name in names:
    assert on_slurm[name]['loss'] == uninterrupted[name]['loss'], name
  print(f'slurm sweep with cancel, crash, requeue and relaunch: {slurm_seconds:.0f} s')


def test_a_task_whose_python_cannot_import_lmjax_fails_with_one_line(cluster, tmp_path):
  sweep_file = tmp_path / 'onslurm.py'
  sweep_file.write_text(SWEEP)
  workdir = tmp_path / 'sweep'
  bare = os.path.join(sys.base_prefix, 'bin', 'python3')  # the interpreter under the venv
  out = _sweep(cluster, f'--sweep={sweep_file}', f'--workdir={workdir}', '--backend=slurm',
               f'--slurm_python={bare}')
  assert out.returncode == 0, out.stdout + out.stderr
  cluster.wait_idle()
  status = _sweep(cluster, f'--sweep={sweep_file}', f'--workdir={workdir}', '--status')
  assert set(_states(status.stdout).values()) == {'failed'}, status.stdout
  log = (workdir / 'logs' / f'{sorted(_states(status.stdout))[0]}.log').read_text()
  lines = log.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: --slurm_python={bare} on '), log
  assert "cannot import lmjax: ModuleNotFoundError: No module named 'absl'" in lines[0], log
  assert not any((workdir / 'runs').iterdir())  # nothing trained, nothing half-written


TRAIN = ['-m', 'launch.train', '--config=experiments/configs/tiny.py', '--config.train.steps=6',
         '--config.optim.warmup_steps=2', '--config.train.log_every=1',
         '--config.model.vocab_size=264', '--config.mesh.data=2', '--config.mesh.fsdp=2',
         '--config.mesh.tensor=2']


def _losses(workdir):
  return [r['loss'] for r in RunDir(workdir).read_metrics() if 'loss' in r]


def test_srun_two_tasks_train_like_one_process(cluster, tmp_path):
  """`srun --ntasks=2 python -m launch.train` with no coordinator flags: JAX reads SLURM's
  environment. A batch script of --ntasks=2 that runs launch.train itself is one process, and
  must not wait for a peer: it is the reference."""
  env = dict(cluster.env, JAX_PLATFORMS='cpu')
  one = tmp_path / 'one'
  script = tmp_path / 'one.sbatch'
  script.write_text(f'#!/bin/bash\n#SBATCH --ntasks=2\n#SBATCH --output={tmp_path}/one.out\n'
                    f'cd {ROOT}\nexport XLA_FLAGS="{xla.flags(8)}"\n'
                    f'{sys.executable} {" ".join(TRAIN)} --workdir={one}\n')
  cluster.run('sbatch', str(script), env=env)
  two = subprocess.run(['srun', '--ntasks=2', '--kill-on-bad-exit=1', sys.executable, *TRAIN,
                        f'--workdir={tmp_path / "two"}'], cwd=ROOT, capture_output=True,
                       text=True, timeout=600,
                       env=dict(env, XLA_FLAGS=xla.flags(4)))
  assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
  assert 'over 8 devices, 2 process(es)' in two.stdout
  cluster.wait_idle()
  out = (tmp_path / 'one.out').read_text()
  assert 'over 8 devices, 1 process(es)' in out, out[-3000:]
  a, b = _losses(one), _losses(tmp_path / 'two')
  assert len(a) == len(b) == 6
  for x, y in zip(a, b):  # the same global batches and mesh; collectives may sum in another
    assert abs(x - y) <= 1e-5 * abs(x), (a, b)  # order
