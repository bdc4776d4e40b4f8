"""python -m launch.memory compiles the train step for a simulated mesh or a TPU topology and
accounts for its memory (the accounting itself: tests/test_memory.py)."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                                  reason="libtpu is not installed: pip install -e '.[tpu]'")


def _memory(*flags, config='small'):
  return subprocess.run([sys.executable, '-m', 'launch.memory',
                         f'--config=experiments/configs/{config}.py', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def assert_one_error_line(out, message):
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
  assert out.stderr.startswith(message), out.stderr


@pytest.mark.slow
@pytest.mark.parametrize('mesh', ['1,8,1', '1,4,2'])
def test_state_bytes_match_the_analytic_estimate(mesh):
  out = _memory(f'--mesh={mesh}', '--config.model.vocab_size=264', '--device_memory=1GB')
  assert out.returncode == 0, out.stderr[-3000:]
  ratio = float(re.search(r'analytic params\+moments = ([0-9.]+)', out.stdout).group(1))
  assert 0.9 <= ratio <= 1.1
  assert 'verdict: needs' in out.stdout and ': fits' in out.stdout


@pytest.mark.slow
def test_a_model_too_big_for_the_memory_is_refused_with_status_1():
  out = _memory('--mesh=1,8,1', '--config.model.vocab_size=264', '--device_memory=1MB')
  assert out.returncode == 1 and 'does NOT fit' in out.stdout


@pytest.mark.parametrize('flag, message', [
    ('--mesh=1,8', 'error: --mesh=1,8: expected three positive sizes'),
    ('--mesh=1,3,1', 'error: config.mesh.fsdp=3 does not divide config.model.d_model=256'),
    ('--mesh=1,1,8', 'error: config.mesh.tensor=8 does not divide config.model.n_heads=4'),
])
@pytest.mark.slow  # launch.memory subprocesses that build the mesh
def test_bad_mesh_flags(flag, message):
  assert_one_error_line(_memory(flag, '--device_memory=1GB'), message)


def test_a_bad_memory_size():
  out = _memory('--mesh=1,8,1', '--device_memory=lots')
  assert out.returncode == 2
  assert out.stderr.strip() == 'error: --device_memory=lots: expected a size such as 80GB or 16GiB'


def test_a_mesh_with_the_rest_of_the_devices_needs_a_topology():
  assert_one_error_line(_memory('--mesh=1,-1,1'), 'error: --mesh=1,-1,1: -1 needs --topology')


# The tiny model 512 wide with 4 heads: head_dim and fsdp shards of 128, whole TPU lanes; 128
# tokens, a multiple of 128 as splash attention (the TPU's kernel) needs.
TPU_TINY = ('--config.model.d_model=512', '--config.model.n_heads=4', '--config.data.seq_len=128',
            '--config.model.max_seq_len=128')


@needs_libtpu
@pytest.mark.slow
def test_a_tpu_topology_is_compiled_by_the_tpu_compiler():
  out = _memory('--topology=v5p:2x2x1', '--mesh=1,-1,1', *TPU_TINY, config='tiny')
  assert out.returncode == 0, out.stderr[-3000:]
  assert "figures: the TPU compiler's (libtpu" in out.stdout and '4 × TPU v5 devices' in out.stdout
  assert 'mesh data×fsdp×tensor = 1×4×1' in out.stdout
  ratio = float(re.search(r'analytic params\+moments = ([0-9.]+)', out.stdout).group(1))
  assert 0.9 <= ratio <= 1.1
  assert "of 102.01 GB per device (v5p:2x2x1's HBM: 95 GiB per device): fits" in out.stdout
  assert out.stderr == ''  # libtpu kept quiet


@needs_libtpu
@pytest.mark.slow
def test_a_step_the_tpu_compiler_refuses_does_not_fit():
  """The TPU compiler checks HBM itself: 262,144 sequences on 4 v5e chips stop the compile."""
  out = _memory('--topology=v5e:2x2', '--mesh=-1,1,1', '--config.data.seq_len=128',
                '--config.model.max_seq_len=128', '--config.data.batch_size=262144', config='tiny')
  assert out.returncode == 1, out.stderr[-3000:]
  assert 'verdict: does NOT fit: the compiler refused the step: RESOURCE_EXHAUSTED' in out.stdout


@needs_libtpu
@pytest.mark.parametrize('flags, message', [
    (('--topology=nope:2x2', '--mesh=1,4,1'),
     'error: --topology=nope:2x2 is not a TPU topology libtpu can describe (INVALID_ARGUMENT'),
    (('--topology=v5p:2x2x1', '--mesh=1,8,1'),
     'error: --mesh=1,8,1: data×fsdp×tensor must come to the 4 devices of '
     '--topology=v5p:2x2x1'),
])
def test_a_bad_topology_or_a_mesh_that_does_not_match_it(flags, message):
  assert_one_error_line(_memory(*flags, config='tiny'), message)


def test_without_libtpu_a_topology_names_the_extra_to_install():
  """The launcher in a process where `import libtpu` fails (a None in sys.modules does that)."""
  run = ("import runpy, sys; sys.modules['libtpu'] = None; "
         "sys.argv = ['launch.memory', '--config=experiments/configs/tiny.py', "
         "'--topology=v5p:2x2x1', '--mesh=1,4,1']; "
         "runpy.run_module('launch.memory', run_name='__main__')")
  out = subprocess.run([sys.executable, '-c', run], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  assert out.stderr == ("error: --topology=v5p:2x2x1 needs the libtpu package: "
                        "pip install -e '.[tpu]'\n")


@needs_libtpu
@pytest.mark.slow
@pytest.mark.parametrize('name', ['llama3_8b'])
def test_the_accelerator_configs_fit_their_targets(name):
  """benchmarks/tpu_configs_fit.py for one config: its v5p slice (the TPU compiler) and 8 GPUs
  of 80 GB (XLA:CPU's stand-in), as its docstring names them; a minute or two each here. The
  largest config only, to keep the suite short: the benchmark checks all three."""
  out = subprocess.run([sys.executable, 'benchmarks/tpu_configs_fit.py', f'--only={name}'],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert out.stdout.count(': fits [') == 2
