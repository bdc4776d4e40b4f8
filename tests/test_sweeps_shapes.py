import copy

import pytest

from lmjax import sweeps
from lmjax.config import default_config, default_d_ff, resolve
from lmjax.model import flops
from lmjax.model.spec import ModelConfig
from tests.sweeps_testing import TINY, one_line_error


@pytest.mark.parametrize('preset', ['vaswani', 'llama', 'gpt2'])
def test_ladder_shapes_are_valid_and_near_target(preset):
  base = default_config()
  base.model.preset = preset
  targets = [1e7, 1e8, 1e9]
  for shape in sweeps.ladder(targets, base, aspect=64, head_dim=64):
    config = copy.deepcopy(base)
    for k, v in shape.overrides().items():
      config.model[k.split('.')[1]] = v
    resolved = resolve(config)  # every shape passes validation
    mcfg = ModelConfig.from_config(resolved.model)
    counts = flops.param_counts(mcfg)
    assert shape.d_model == shape.n_heads * 64 and shape.n_kv_heads == shape.n_heads
    assert shape.d_ff == default_d_ff(shape.d_model, resolved.model.activation)
    assert (shape.N, shape.N_no_emb) == (counts.N, counts.N_no_emb)
    assert shape.flops_per_token == flops.exact_flops_per_token(mcfg, base.data.seq_len)
    assert abs(shape.N_no_emb / shape.target - 1) < 0.15
    assert 24 <= shape.d_model / shape.n_layers <= 160  # the aspect rule, within rounding


@pytest.mark.parametrize('preset', ['vaswani', 'llama', 'gpt2'])
def test_ladder_tiny_shapes_and_gqa_for_every_preset(preset):
  base = default_config()
  base.model.preset = preset
  shapes = sweeps.ladder([4e3, 1.5e4, 5e4], base, aspect=24, head_dim=8, kv_group=2)
  assert [s.N_no_emb for s in shapes] == sorted(s.N_no_emb for s in shapes)
  assert all(s.n_heads == 2 * s.n_kv_heads and s.d_model % 16 == 0 for s in shapes)


def test_ladder_errors():
  assert 'same shape' in one_line_error(lambda: sweeps.ladder([1e7, 1.01e7], TINY))
  assert 'positive' in one_line_error(lambda: sweeps.ladder([0], TINY))
  # rope needs an even head_dim: the shape fails at plan time, named
  assert 'head_dim' in one_line_error(lambda: sweeps.ladder(1e4, TINY, head_dim=7))
