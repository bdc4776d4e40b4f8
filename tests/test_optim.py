import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import default_config
from lmjax.train import optim


def _optim(**kw):
  o = default_config().optim
  o.update({'lr': 1.0, 'min_lr_ratio': 0.1, 'warmup_steps': 10, **kw})
  return o


def test_warmup_then_cosine():
  f = optim.schedule(_optim(schedule='cosine'), 110)
  assert float(f(0)) == 0.0
  assert float(f(5)) == pytest.approx(0.5)
  assert float(f(10)) == pytest.approx(1.0)
  assert float(f(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-6)  # halfway: mean of lr, min
  assert float(f(110)) == pytest.approx(0.1, rel=1e-6)


def test_linear_and_constant():
  f = optim.schedule(_optim(schedule='linear'), 110)
  assert float(f(60)) == pytest.approx(0.55, rel=1e-6)
  assert float(f(110)) == pytest.approx(0.1, rel=1e-6)
  g = optim.schedule(_optim(schedule='constant'), 110)
  assert [float(g(s)) for s in (10, 50, 109)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize('shape, mid', [
    ('linear', 0.55), ('cosine', 0.55), ('1-sqrt', 1 - 0.9 * math.sqrt(0.5))])
def test_wsd(shape, mid):
  # 110 steps, 10 warmup, decay_fraction 0.2 -> 22 decay steps starting at step 88.
  f = optim.schedule(_optim(schedule='wsd', decay_fraction=0.2, decay_shape=shape), 110)
  assert float(f(10)) == pytest.approx(1.0)
  assert float(f(88)) == pytest.approx(1.0)
  assert float(f(99)) == pytest.approx(mid, rel=1e-5)
  assert float(f(110)) == pytest.approx(0.1, rel=1e-5)


def test_no_warmup_starts_at_peak():
  f = optim.schedule(_optim(schedule='cosine', warmup_steps=0), 100)
  assert float(f(0)) == pytest.approx(1.0)


def test_decay_mask():
  params = {'embed': 0, 'final_norm': {'scale': 0, 'bias': 0},
            'block_0': {'attn': {'query': 0, 'query_bias': 0}, 'attn_norm': {'scale': 0}}}
  mask = optim.decay_mask(params, _optim())
  assert mask == {'embed': True, 'final_norm': {'scale': False, 'bias': False},
                  'block_0': {'attn': {'query': True, 'query_bias': False},
                              'attn_norm': {'scale': False}}}
  mask = optim.decay_mask(params, _optim(decay_embeddings=False, decay_biases=True))
  assert mask['embed'] is False and mask['block_0']['attn']['query_bias'] is True


def test_adamw_decays_only_masked_leaves():
  o = _optim(schedule='constant', warmup_steps=0, weight_decay=0.5, grad_clip=0.0, lr=0.1)
  params = {'w': jnp.ones(3), 'attn_norm': {'scale': jnp.ones(3)}}
  tx = optim.optimizer(o, 10)
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], -0.1 * 0.5 * np.ones(3), rtol=1e-6)
  np.testing.assert_allclose(updates['attn_norm']['scale'], 0.0)


@pytest.mark.parametrize('kind', ['cosine', 'linear', 'constant', 'wsd'])
@pytest.mark.parametrize('shape', ['linear', 'cosine', '1-sqrt'])
@pytest.mark.parametrize('warmup, min_ratio, steps', [(0, 0.0, 37), (10, 0.1, 110), (1, 0.0, 1)])
def test_runtime_schedule_matches_the_optax_schedule(kind, shape, warmup, min_ratio, steps):
  # lr_at(count, schedule_params) is what the train step uses; optim.schedule is optax's.
  o = _optim(schedule=kind, decay_shape=shape, warmup_steps=warmup, min_lr_ratio=min_ratio,
             decay_fraction=0.2)
  reference, params = optim.schedule(o, steps), optim.schedule_params(o, steps)
  for count in range(steps + 3):
    want = float(reference(count))
    assert float(optim.lr_at(count, params)) == pytest.approx(want, rel=2e-5, abs=1e-10), count


def test_schedule_is_an_argument_so_runs_of_one_shape_share_the_compiled_step():
  import jax
  from lmjax.config import default_config, resolve
  from lmjax.train.steps import build_model_and_optimizer, init_state, make_train_step, schedule_arg
  texts = []
  for schedule, steps in (('constant', 40), ('wsd', 50), ('cosine', 7)):
    c = default_config()
    c.optim.schedule, c.train.steps, c.optim.warmup_steps = schedule, steps, 5
    c = resolve(c)
    model, tx = build_model_and_optimizer(c)
    state = jax.eval_shape(lambda: init_state(model, tx, c))
    batch = {k: jax.ShapeDtypeStruct((c.data.batch_size, c.data.seq_len), 'int32')
             for k in ('inputs', 'targets')}
    texts.append(make_train_step(model, tx, c).lower(state, batch, schedule_arg(c)).as_text())
  assert texts[0] == texts[1] == texts[2]
