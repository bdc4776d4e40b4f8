"""Platform compiler flags: added where the user has not set them, before any backend starts, and
accepted by the XLA and libtpu this project pins."""
import os
import subprocess
import sys

import pytest

from lmjax.train import platform_flags
from lmjax.train.platform_flags import GPU_XLA_FLAGS, TPU_LIBTPU_ARGS, apply, detect_platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_fill_in_only_what_the_user_left_unset():
  env = {'XLA_FLAGS': '--xla_gpu_enable_latency_hiding_scheduler=false --xla_dump_to=/x'}
  platform, variable, added = apply('gpu', env)
  assert (platform, variable) == ('gpu', 'XLA_FLAGS')
  assert added == list(GPU_XLA_FLAGS[1:])  # the user's latency-hiding setting stays
  assert env['XLA_FLAGS'].split() == ['--xla_gpu_enable_latency_hiding_scheduler=false',
                                      '--xla_dump_to=/x', *GPU_XLA_FLAGS[1:]]
  assert apply('gpu', env)[2] == []  # a second call adds nothing
  env = {}
  assert apply('tpu', env)[2] == list(TPU_LIBTPU_ARGS)
  assert env == {'LIBTPU_INIT_ARGS': ' '.join(TPU_LIBTPU_ARGS)}
  for choice, environ in (('none', {}), ('auto', {'JAX_PLATFORMS': 'cpu'})):
    assert apply(choice, environ)[2] == [] and set(environ) <= {'JAX_PLATFORMS'}
  with pytest.raises(ValueError, match='--xla_defaults=gpus: one of auto, gpu, tpu, none'):
    apply('gpus', {})


@pytest.mark.parametrize('jax_platforms, expected', [
    ('cpu', 'cpu'), ('cuda', 'gpu'), ('cuda,cpu', 'gpu'), ('tpu', 'tpu'), ('rocm', 'gpu')])
def test_jax_platforms_decides_the_platform(jax_platforms, expected):
  assert detect_platform({'JAX_PLATFORMS': jax_platforms}) == expected


def test_too_late_once_a_backend_started():
  import jax
  jax.devices()
  with pytest.raises(RuntimeError, match='after a JAX backend started'):
    apply('auto')  # the process's own environment, which XLA has read already
  assert apply('none') == ('none', '', [])  # adds nothing: fine at any time (studies' runs)


@pytest.mark.slow
def test_launch_train_applies_gpu_flags_xla_accepts_and_keeps_the_users(tmp_path):
  """On CPU, --xla_defaults=gpu puts the GPU set in XLA_FLAGS before the backend starts: XLA
  parses all of it (an unknown flag is fatal) and the run trains; the user's flag keeps its
  value; with --xla_defaults=none nothing is added."""
  user = '--xla_gpu_all_gather_combine_threshold_bytes=1234'
  # The user's XLA_FLAGS also keep the suite's LLVM optimisations off (tests/xla.py).
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'{user} --xla_backend_optimization_level=0')
  base = [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
          '--config.train.steps=2', '--config.optim.warmup_steps=1']
  out = subprocess.run([*base, f'--workdir={tmp_path}/gpu', '--xla_defaults=gpu'], cwd=ROOT,
                       env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  line, = [x for x in out.stdout.splitlines() if x.startswith('platform flags')]
  expected = [f for f in GPU_XLA_FLAGS if not f.startswith(user.split('=')[0])]
  assert line.endswith('XLA_FLAGS += ' + ' '.join(expected)) and len(expected) == 7, line
  out = subprocess.run([*base, f'--workdir={tmp_path}/none', '--xla_defaults=none'], cwd=ROOT,
                       env=env, capture_output=True, text=True)
  assert out.returncode == 0 and 'platform flags: none (--xla_defaults=none)' in out.stdout


TPU_COMPILE = """
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from lmjax.train import topology
for name in sys.argv[1:]:
  mesh = Mesh(np.array(topology.tpu_devices(name)), ('fsdp',))
  w = NamedSharding(mesh, P('fsdp'))
  f = jax.jit(lambda x, y: jnp.tanh(x @ y.T) @ y, in_shardings=(w, w), out_shardings=w)
  s = jax.ShapeDtypeStruct((1024, 512), jnp.bfloat16, sharding=w)
  f.lower(s, s).compile()  # all-gathers of the FSDP weight
  print('compiled', name)
"""


@pytest.mark.slow
def test_libtpu_accepts_the_tpu_set_on_each_tpu_generation():
  """libtpu parses LIBTPU_INIT_ARGS when it starts and refuses unknown flags and combinations
  a chip does not support: compile an FSDP matmul for each generation with the TPU set."""
  pytest.importorskip('libtpu')
  names = ['v4:2x2x1', 'v5e:2x2', 'v5p:2x2x1', 'v6e:2x2']
  env = dict(os.environ, JAX_PLATFORMS='cpu', LIBTPU_INIT_ARGS=' '.join(TPU_LIBTPU_ARGS))
  out = subprocess.run([sys.executable, '-c', TPU_COMPILE, *names], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split('\n')[:-1] == [f'compiled {n}' for n in names]
  assert platform_flags.DEFAULTS['tpu'] == ('LIBTPU_INIT_ARGS', TPU_LIBTPU_ARGS)
