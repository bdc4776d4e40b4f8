"""Preference losses (lmjax/train/preference.py): their values at the start (policy = reference),
a hand computation of each form from given log-probabilities, and DPO training a small policy
until every synthetic pair is ranked right."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmjax.train import preference

LOGPS = dict(policy_chosen=np.array([-12.0, -30.5, -7.25]),
             policy_rejected=np.array([-14.0, -29.0, -9.0]),
             ref_chosen=np.array([-12.5, -31.0, -7.0]),
             ref_rejected=np.array([-13.0, -30.0, -8.0]))


@pytest.mark.parametrize('loss_type, smoothing, start', [
    ('sigmoid', 0.0, math.log(2)), ('sigmoid', 0.2, math.log(2)), ('ipo', 0.0, 1 / (4 * 0.1 ** 2)),
    ('hinge', 0.0, 1.0)])
def test_each_loss_takes_its_starting_value_when_the_policy_is_the_reference(loss_type, smoothing,
                                                                             start):
  same = LOGPS['policy_chosen'], LOGPS['policy_rejected']
  loss, m = preference.losses(*same, *same, beta=0.1, loss_type=loss_type,
                              label_smoothing=smoothing)
  np.testing.assert_allclose(loss, start, rtol=1e-6)
  np.testing.assert_allclose(m['reward_margin'], 0.0)


def _log_sigmoid(z):
  return -math.log1p(math.exp(-z)) if z > 0 else z - math.log1p(math.exp(z))


@pytest.mark.parametrize('loss_type, smoothing', [('sigmoid', 0.0), ('sigmoid', 0.1),
                                                  ('ipo', 0.0), ('hinge', 0.0)])
def test_losses_equal_a_hand_computation(loss_type, smoothing):
  beta = 0.5
  loss, m = preference.losses(*(jnp.asarray(v) for v in LOGPS.values()), beta=beta,
                              loss_type=loss_type, label_smoothing=smoothing)
  for i in range(3):
    r_w = LOGPS['policy_chosen'][i] - LOGPS['ref_chosen'][i]
    r_l = LOGPS['policy_rejected'][i] - LOGPS['ref_rejected'][i]
    h = r_w - r_l
    expected = {'sigmoid': -(1 - smoothing) * _log_sigmoid(beta * h)
                           - smoothing * _log_sigmoid(-beta * h),
                'ipo': (h - 1 / (2 * beta)) ** 2,
                'hinge': max(0.0, 1 - beta * h)}[loss_type]
    assert float(loss[i]) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert float(m['reward_chosen'][i]) == pytest.approx(beta * r_w)
    assert float(m['reward_accuracy'][i]) == float(r_w > r_l)
  # Pairs 0 and 2: the policy moved towards the chosen side; pair 1: towards the rejected one.
  assert m['reward_accuracy'].tolist() == [1.0, 0.0, 1.0]


def test_dpo_ranks_every_synthetic_pair_right():
  """A policy of logits over 8 tokens for 16 contexts, the reference its start; each context's
  pair prefers one token to another. Adam on the mean DPO loss ranks every pair right."""
  rng = np.random.default_rng(0)
  ref = jnp.asarray(rng.normal(size=(16, 8)))
  chosen = jnp.asarray(rng.integers(0, 8, 16))
  rejected = (chosen + 1 + jnp.asarray(rng.integers(0, 7, 16))) % 8
  rows = jnp.arange(16)

  def logps(logits):
    lp = jax.nn.log_softmax(logits, -1)
    return lp[rows, chosen], lp[rows, rejected]

  def objective(logits):
    loss, m = preference.losses(*logps(logits), *logps(ref), beta=0.1)
    return loss.mean(), m

  opt = optax.adam(0.1)
  params, state = ref, opt.init(ref)
  _, m = objective(params)
  assert float(m['reward_accuracy'].mean()) == 0.0  # all ties at the start
  for _ in range(50):
    (loss, m), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, state = opt.update(grads, state)
    params = optax.apply_updates(params, updates)
  _, m = objective(params)
  assert float(m['reward_accuracy'].mean()) == 1.0 and float(loss) < math.log(2)


def test_sequence_logprobs_sum_the_masked_targets():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 5)), jnp.float32)
  targets = jnp.asarray([[1, 2, 3, 4], [0, 0, 1, 1]])
  mask = jnp.asarray([[0, 1, 1, 0], [1, 1, 1, 1]], jnp.float32)
  lp = np.asarray(jax.nn.log_softmax(logits, -1))
  expected = [lp[0, 1, 2] + lp[0, 2, 3], sum(lp[1, t, int(targets[1, t])] for t in range(4))]
  np.testing.assert_allclose(preference.sequence_logprobs(logits, targets, mask), expected,
                             rtol=1e-6)


@pytest.mark.parametrize('args, message', [
    (('kto', 0.1), "config.dpo.loss_type='kto' is not allowed: one of sigmoid, ipo, hinge"),
    (('sigmoid', 0.0), 'config.dpo.beta=0.0 is not allowed: a number > 0'),
    (('sigmoid', 0.1, 0.5), 'config.dpo.label_smoothing=0.5 is not allowed: in [0, 0.5)'),
    (('ipo', 0.1, 0.1), 'label_smoothing applies to loss_type sigmoid only')])
def test_bad_settings_are_one_line(args, message):
  with pytest.raises(preference.PreferenceError, match=None) as e:
    preference.check(*args)
  assert str(e.value) == message or message in str(e.value)
