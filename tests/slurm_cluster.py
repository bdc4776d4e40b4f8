"""A real one-node SLURM cluster for the tests: Debian's slurmctld and slurmd (Slurm 22.05 was
checked) started as child processes on free loopback ports, configured in a temporary directory
(SLURM_CONF points the clients there), and stopped by their PIDs.

Authentication is `auth/none` (a throwaway cluster that lives as long as a test module), process
tracking `proctrack/linuxproc` and no accounting, so nothing needs systemd, cgroups, munge or a
database; `jobcomp/filetxt` records each job's end in place of sacct. Tests that need it skip with
one line where the packages or root are missing: `skip_reason()`.

To run these tests on a Debian or Ubuntu machine, as root:
  apt-get install -y --no-install-recommends slurmctld slurmd slurm-client
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

DAEMONS = ('slurmctld', 'slurmd', 'sbatch', 'srun', 'squeue', 'scontrol', 'scancel')

CONF = """\
ClusterName=lmjaxtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes={host} MaxTime=INFINITE State=UP
"""


def skip_reason() -> str | None:
  """Why a real cluster cannot start here (one line), or None."""
  missing = [d for d in DAEMONS if shutil.which(d) is None]
  if missing:
    return (f'needs Slurm ({", ".join(missing)} not on PATH): as root, apt-get install -y '
            '--no-install-recommends slurmctld slurmd slurm-client')
  if os.geteuid() != 0:
    return 'needs root to start slurmd (it runs jobs as their users)'
  return None


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(('127.0.0.1', 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


class Cluster:
  """A running one-node cluster; `env` is os.environ with SLURM_CONF set."""

  def __init__(self, root):
    self.root = str(root)
    self.env = dict(os.environ, SLURM_CONF=os.path.join(self.root, 'slurm.conf'))
    self.procs = []

  def start(self):
    os.makedirs(os.path.join(self.root, 'state'), exist_ok=True)
    os.makedirs(os.path.join(self.root, 'spool'), exist_ok=True)
    node = subprocess.run(['slurmd', '-C'], capture_output=True, text=True, check=True).stdout
    fields = dict(re.findall(r'(\w+)=(\S+)', node))
    ctld_port, d_port = _free_ports(2)
    with open(self.env['SLURM_CONF'], 'w') as f:
      f.write(CONF.format(host=socket.gethostname().split('.')[0], root=self.root,
                          ctld_port=ctld_port, d_port=d_port, cpus=fields['CPUs'],
                          memory=fields['RealMemory']))
    for argv in (['slurmctld', '-D', '-i'], ['slurmd', '-D']):
      log = open(os.path.join(self.root, f'{argv[0]}.out'), 'w')  # noqa: SIM115
      self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT))
    deadline = time.time() + 30
    while time.time() < deadline:
      out = self.run('sinfo', '-h', '-o', '%T', check=False)
      if out.returncode == 0 and out.stdout.strip() == 'idle':
        return self
      time.sleep(0.2)
    self.stop()
    raise RuntimeError(f'the test cluster did not come up: {self.log_tail()}')

  def log_tail(self):
    text = ''
    for name in ('slurmctld.out', 'slurmd.out'):
      with open(os.path.join(self.root, name), errors='replace') as f:
        text += f'{name}: ' + ' | '.join(f.read().splitlines()[-5:]) + '\n'
    return text

  def run(self, *argv, check=True, **kw):
    """A SLURM client command against this cluster (sbatch, srun, squeue, scontrol...)."""
    env = kw.pop('env', self.env)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, **kw)
    if check and out.returncode:
      raise RuntimeError(f'{" ".join(argv)}: {out.stderr.strip()}')
    return out

  def queued(self):
    """The job ids (array tasks as '12_3') squeue lists, pending or running."""
    return self.run('squeue', '-h', '-r', '-o', '%i').stdout.split()

  def job(self, job_id) -> dict:
    """`scontrol show job -o ID` as {field: value} (the first record: an array task's own)."""
    out = self.run('scontrol', 'show', 'job', '-o', str(job_id)).stdout.splitlines()[0]
    return dict(re.findall(r'(\w+(?::\w+)?)=(\S*)', out))

  def wait_idle(self, timeout=600):
    """Waits until no job is pending or running."""
    deadline = time.time() + timeout
    while self.queued():
      if time.time() > deadline:
        raise TimeoutError(f'jobs still queued after {timeout} s: {self.queued()}')
      time.sleep(0.5)

  def stop(self):
    """Cancels every job, then stops the daemons this object started."""
    if self.procs and self.procs[0].poll() is None:
      ids = self.run('squeue', '-h', '-o', '%A', check=False).stdout.split()
      if ids:
        self.run('scancel', '--signal=KILL', '--full', *ids, check=False)
        self.run('scancel', *ids, check=False)
        deadline = time.time() + 20
        while self.run('squeue', '-h', check=False).stdout.strip() and time.time() < deadline:
          time.sleep(0.2)
    for p in reversed(self.procs):
      p.terminate()
    for p in reversed(self.procs):
      try:
        p.wait(timeout=10)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    self.procs = []
