import pytest

from lmjax.core import pyfile


def _error(path, function='get_config', **kw):
  with pytest.raises(pyfile.PyFileError) as e:
    pyfile.call_function(str(path), function, **kw)
  assert '\n' not in str(e.value)
  return e.value


def test_calls_the_function(tmp_path):
  path = tmp_path / 'c.py'
  path.write_text('import sys\ndef get_config():\n  return __name__\n')
  assert pyfile.call_function(str(path), 'get_config') == 'lmjax_file_get_config'
  assert pyfile.call_function(str(path), 'get_config', module_name='mine') == 'mine'


def test_every_failure_is_one_typed_line(tmp_path):
  e = _error(tmp_path / 'none.py')
  assert (e.kind, str(e)) == (pyfile.MISSING, f'{tmp_path}/none.py: no such file')
  text = tmp_path / 'notes.txt'
  text.write_text('x')
  e = _error(text, shown_as='notes')
  assert (e.kind, str(e)) == (pyfile.NOT_PYTHON,
                              'notes: not a Python file (one defining get_config())')
  broken = tmp_path / 'broken.py'
  broken.write_text('raise ValueError("first\\nsecond")\n')
  e = _error(broken, shown_as='b')
  assert (e.kind, str(e)) == (pyfile.IMPORT, 'b: importing it raised ValueError: first')
  assert isinstance(e.cause, ValueError)
  empty = tmp_path / 'empty.py'
  empty.write_text('get_sweep = 3\n')
  e = _error(empty, shown_as='e', module_name='m')
  assert (e.kind, str(e)) == (pyfile.UNDEFINED, 'e: defines no get_config()')
  assert str(e.cause) == "module 'm' has no attribute 'get_config'"
  e = _error(empty, 'get_sweep', shown_as='e')
  assert str(e) == 'e: defines no get_sweep()' and isinstance(e.cause, TypeError)
  raising = tmp_path / 'raising.py'
  raising.write_text('def get_config():\n  raise KeyError("x")\n')
  e = _error(raising, shown_as='r')
  assert (e.kind, str(e)) == (pyfile.CALL, "r: get_config() raised KeyError: 'x'")


def test_a_file_defining_a_dataclass_under_postponed_annotations_loads(tmp_path):
  # experiments/sweeps/arch_recipes.py is such a file; dataclasses look the module up in
  # sys.modules while the class is made.
  path = tmp_path / 'with_dataclass.py'
  path.write_text('from __future__ import annotations\nimport dataclasses\n\n\n'
                  '@dataclasses.dataclass\nclass Point:\n  x: int\n\n\n'
                  'def get_config():\n  return Point(3)\n')
  assert pyfile.call_function(str(path), 'get_config').x == 3
