import os
import sys

import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One TFDS data dir for the whole session (python_stdlib is prepared once), never the user's.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='lmjax-tests-tfds-')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import pytest  # noqa: E402

from lmjax.config import default_config  # noqa: E402


@pytest.fixture
def tiny():
  """The tiny config (unresolved) with 30 steps."""
  c = default_config()
  c.train.steps = 30
  return c


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: end-to-end (subprocesses, kills, several processes, '
                          'simulated meshes, long training); deselect with -m "not slow"')
