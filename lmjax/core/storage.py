"""Where run and sweep directories may live: a local path, or object storage through fsspec
(`gs://bucket/path` with gcsfs; `memory://` for tests). Jax-free.

Object storage has objects, not files: no directories (a prefix exists once an object is under
it), no appends, no renames, no locks. So a file is written whole, in one upload, which a
reader sees entirely or not at all (what the local path gets from a temporary file renamed
into place, lmjax/core/atomic.py); a file that grows (metrics.jsonl) is uploaded whole again
when it is flushed. Checkpoints do not come through here: Orbax and tensorstore write them
(tensorstore's own gcs driver; TENSORSTORE_GCS_HTTP_URL points it at an emulator).

`s3://` is refused at start-up (`check_scheme`): Orbax's S3 support is an open question
upstream (google/orbax#359, marin-community/marin#8120).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath

from lmjax.core import atomic
from lmjax.core.errors import LmjaxError

SCHEMES = ('gs', 'memory')


class StorageError(LmjaxError, ValueError):
  """A path on object storage that cannot be used; one line naming it."""


def is_remote(path) -> bool:
  return '://' in os.fspath(path)


def check_scheme(path, field='--workdir'):
  """StorageError for a URL whose scheme lmjax does not write to."""
  path = os.fspath(path)
  if not is_remote(path):
    return
  scheme = path.split('://', 1)[0]
  if scheme == 's3':
    raise StorageError(f'{field}={path}: s3:// is not supported (Orbax cannot yet write '
                       'checkpoints there: google/orbax#359); use gs://, or a local or mounted '
                       'path')
  if scheme not in SCHEMES:
    raise StorageError(f'{field}={path}: the scheme {scheme}:// is not supported; use a '
                       f'local path or one of {", ".join(s + "://" for s in SCHEMES)}')


def _fs(path):
  import fsspec
  # Listings are not cached: another process (a run, a sweep's task) writes these prefixes.
  fs, _ = fsspec.core.url_to_fs(os.fspath(path), use_listings_cache=False)
  return fs


def join(path, *names) -> str:
  path = os.fspath(path)
  return posixpath.join(path, *names) if is_remote(path) else os.path.join(path, *names)


def exists(path) -> bool:
  return _fs(path).exists(path) if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
  return _fs(path).isfile(path) if is_remote(path) else os.path.isfile(path)


def isdir(path) -> bool:
  """A local directory, or a prefix with objects under it."""
  return _fs(path).isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path) -> list[str]:
  """The names under `path` ([] where there is nothing)."""
  if not is_remote(path):
    return os.listdir(path) if os.path.isdir(path) else []
  fs = _fs(path)
  try:
    return sorted(posixpath.basename(p.rstrip('/')) for p in fs.ls(path, detail=False))
  except FileNotFoundError:
    return []


def open_file(path, mode='r'):
  """A file to read (local or remote)."""
  return _fs(path).open(path, mode) if is_remote(path) else open(path, mode)  # noqa: SIM115


def write_bytes(path, data: bytes):
  """`data` into `path`, whole or not at all: a local temporary renamed into place, or one
  upload."""
  if is_remote(path):
    _fs(path).pipe_file(os.fspath(path), data)
  else:
    atomic.write_bytes(path, data)
  return path


def write_text(path, text: str):
  return write_bytes(path, text.encode())


@contextlib.contextmanager
def text_writer(path):
  """`with text_writer(path) as f: f.write(...)`: `path` appears whole when the block ends."""
  buffer = io.StringIO()
  yield buffer
  write_text(path, buffer.getvalue())


def move_tree(source, dest):
  """Moves a directory (object storage: every object under a prefix, copied then deleted)."""
  if is_remote(source):
    _fs(source).mv(source, dest, recursive=True)
  else:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(source, dest)


def put_tree(local_dir, remote_dir):
  """Uploads the files of `local_dir` (TensorBoard's event files) under `remote_dir`."""
  fs = _fs(remote_dir)
  for root, _, files in os.walk(local_dir):
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), local_dir)
      fs.put_file(os.path.join(root, name), posixpath.join(remote_dir, *rel.split(os.sep)))


def check_usable(path, field='--workdir'):
  """StorageError, in one line naming `field`, when object storage at `path` cannot be read and
  written (no such bucket, no credentials, no network): checked before a run writes anything."""
  check_scheme(path, field)
  if not is_remote(path):
    return
  probe = join(path, f'.lmjax-probe-{os.getpid()}')
  quiet = logging.getLogger('gcsfs')  # it logs each failed retry, with a traceback
  level = quiet.level
  quiet.setLevel(logging.CRITICAL)
  try:
    fs = _fs(path)
    fs.pipe_file(probe, b'')
    fs.rm_file(probe)
  except ImportError as e:
    raise StorageError(f'{field}={path}: {e} (pip install -e ".[gcs]")') from None
  except Exception as e:  # noqa: BLE001  (gcsfs, google-auth and aiohttp raise many types)
    reason = ' '.join(str(e).split())[:200] or type(e).__name__
    raise StorageError(f'{field}={path} cannot be written ({type(e).__name__}: {reason})') \
        from None
  finally:
    quiet.setLevel(level)
