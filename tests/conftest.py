import os
import shutil
import sys
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# gcsfs reads this when imported: off, it does not first ask a bucket's type over gRPC, which
# the tests' Cloud Storage emulator does not speak (tests/gcs_emulator.py).
os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
# One JAX compilation cache for the session's processes (set before pytest-xdist starts its
# workers, which inherit it): launch.train subprocesses ('auto': $JAX_COMPILATION_CACHE_DIR) and
# JAX itself load a program another test compiled. test_launch_train's cache test removes it.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='lmjax-tests-jax-'))
# LLVM's optimisations off in every test process and the subprocesses they start (tests/xla.py).
os.environ['XLA_FLAGS'] = ' '.join(f for f in (os.environ.get('XLA_FLAGS', ''),
                                               '--xla_backend_optimization_level=0') if f)
# lmjax's per-machine cache (the measured CPU peak, lmjax/model/flops.py), shared by the session.
os.environ['LMJAX_CACHE_DIR'] = tempfile.mkdtemp(prefix='lmjax-tests-cache-')
# lmjax's corpus tasks for lm-evaluation-harness, written once for the session, never the user's.
os.environ['LMJAX_TASKS_DIR'] = tempfile.mkdtemp(prefix='lmjax-tests-tasks-')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')  # the tests' tasks read local JSONL only
# One TFDS data dir for the whole session (python_stdlib is prepared once), never the user's.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='lmjax-tests-tfds-')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lmjax.config import default_config, resolve  # noqa: E402

# Small documents of every kind of text a corpus holds: code, accents, CJK, emoji, long lines.
TEXTS = ['def f(x):\n    return x + 1\n', 'héllo wörld — ünïcode ✓\n' * 3, 'a' * 700,
         'print("hi")\n', '# ' + 'ab cd ' * 50, 'x = [1, 2, 3]\n' * 9, '\u4e2d\u6587 text\n',
         'short', 'class A:\n    pass\n' * 4, 'emoji 🙂 and tabs\t\tend\n']


@pytest.fixture
def tiny():
  """The tiny config (unresolved) with 30 steps."""
  c = default_config()
  c.train.steps = 30
  return c


@pytest.fixture
def corpus(tmp_path):
  """A local corpus of 60 small UTF-8 files of varied lengths."""
  root = tmp_path / 'corpus'
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(60):
    text = ''.join(TEXTS[j] for j in rng.integers(0, len(TEXTS), rng.integers(1, 6)))
    (root / f'doc{i:02d}.txt').write_text(text, encoding='utf-8')
  return root


def local_config(corpus, tmp_path, **data_fields):
  """A resolved config training on `corpus` (local_text), its TFDS data dir under tmp_path."""
  c = default_config()
  c.data.dataset = 'local_text'
  c.data.paths = str(corpus)
  c.data.data_dir = str(tmp_path / 'tfds')
  c.data.val_percent = 20
  c.data.seq_len = 32
  c.data.batch_size = 4
  c.data.eval_batches = 2
  for k, v in data_fields.items():
    c.data[k] = v
  return resolve(c)


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: end-to-end (subprocesses, kills, several processes, '
                          'simulated meshes, long training); deselect with -m "not slow"')


def pytest_unconfigure(config):
  shutil.rmtree(os.environ['TFDS_DATA_DIR'], ignore_errors=True)
