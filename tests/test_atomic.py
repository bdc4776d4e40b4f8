"""Atomic writes: the old file or the new one, never half of one, and no temporary left."""
import json
import os

import pytest

from lmjax.core import atomic


def test_write_json_replaces_whole(tmp_path):
  path = tmp_path / 'a.json'
  atomic.write_json(path, {'x': 1})
  atomic.write_json(path, {'x': 2, 'y': [1, 2]}, indent=1)
  assert json.loads(path.read_text()) == {'x': 2, 'y': [1, 2]}
  assert os.listdir(tmp_path) == ['a.json']


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / 'a.txt'
  atomic.write_text(path, 'old')
  with pytest.raises(RuntimeError):
    with atomic.atomic_open(path) as f:
      f.write('half of the new')
      raise RuntimeError('killed mid-write')
  assert path.read_text() == 'old' and os.listdir(tmp_path) == ['a.txt']
  with pytest.raises(TypeError):
    atomic.write_json(path, {'not json': object()})
  assert path.read_text() == 'old' and os.listdir(tmp_path) == ['a.txt']


def test_write_bytes(tmp_path):
  assert atomic.write_bytes(tmp_path / 'b', b'\x00\xff') == tmp_path / 'b'
  assert (tmp_path / 'b').read_bytes() == b'\x00\xff'
