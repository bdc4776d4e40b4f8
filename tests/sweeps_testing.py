"""What the tests of lmjax.sweeps share: the tiny base config, a recipe, three tiny shapes, and
the check that an error is one line."""
import functools

import pytest

from lmjax import sweeps

TINY = 'experiments/configs/tiny.py'
RECIPE = sweeps.Recipe(batch_size=4, seq_len=32, lr=3e-3, warmup_steps=4, warmup_fraction=0.1)


def one_line_error(fn, error=sweeps.PlanError) -> str:
  """The message of the `error` that fn() raises, checked to be one line."""
  with pytest.raises(error) as e:
    fn()
  message = str(e.value)
  assert '\n' not in message
  return message


@functools.cache
def tiny_shapes() -> tuple:
  """N ≈ 4e3, 1.5e4, 5e4: d_model 16, 32, 48 (head_dim 8) at RECIPE's seq_len."""
  return tuple(sweeps.ladder([4e3, 1.5e4, 5e4], TINY, aspect=24, head_dim=8,
                             seq_len=RECIPE.seq_len))
