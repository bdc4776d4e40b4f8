import pytest

from lmjax.core import errors
from lmjax.core.errors import LmjaxError, first_line, one_line


def test_first_line_is_the_first_line_that_is_not_blank():
  assert first_line('\n  a  \nb') == 'a'
  assert first_line('') == first_line('  \n \n') == ''
  assert first_line(ValueError('x\ny')) == 'x'


def test_one_line_never_fails_on_an_empty_message_and_cuts_long_ones():
  assert one_line(ValueError('\n a \nb')) == 'ValueError: a'
  assert one_line(KeyError()) == 'KeyError'
  assert one_line(RuntimeError('')) == 'RuntimeError'
  assert one_line(OSError('x' * 50), limit=10) == 'OSError: ' + 'x' * 10


def test_every_lmjax_error_is_one_line_with_its_exit_code():
  class Mine(LmjaxError, ValueError):
    pass
  assert Mine('bad value\nmore').one_line() == 'bad value'
  assert Mine().one_line() == 'Mine'
  assert Mine('x').exit_code == errors.EXIT_USAGE and isinstance(Mine('x'), ValueError)


@pytest.mark.parametrize('module, name, code', [
    ('lmjax.config', 'ConfigError', errors.EXIT_USAGE),
    ('lmjax.data.datasets', 'DataError', errors.EXIT_USAGE),
    ('lmjax.train.checkpoint', 'CheckpointError', errors.EXIT_USAGE),
    ('lmjax.train.log', 'NonFinite', errors.EXIT_NONFINITE),
    ('lmjax.train.loop', 'Preempted', errors.EXIT_PREEMPTED),
    ('lmjax.scaling.table', 'TableError', errors.EXIT_USAGE),
    ('lmjax.sweeps.configs', 'PlanError', errors.EXIT_USAGE),
])
def test_the_errors_of_every_room_share_the_base(module, name, code):
  import importlib
  cls = getattr(importlib.import_module(module), name)
  assert issubclass(cls, LmjaxError) and cls.exit_code == code
