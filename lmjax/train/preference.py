"""Preference losses from log-probabilities: DPO and the variants named alike elsewhere.

Given, per pair, the summed log-probabilities of the chosen completion y_w and the rejected one
y_l under the policy π and the frozen reference π_ref, with the log-ratios
r_w = log π(y_w|x) − log π_ref(y_w|x) and r_l likewise, and h = r_w − r_l:

- 'sigmoid' (DPO, Rafailov et al. 2023, Eq. 7): −log σ(β·h); with label smoothing ε (the
  "conservative" DPO of Mitchell 2023, for labels flipped with probability ε):
  −(1 − ε)·log σ(β·h) − ε·log σ(−β·h);
- 'ipo' (Azar et al. 2023, "A general theoretical paradigm...", Eq. 17): (h − 1/(2β))²;
- 'hinge' (SLiC-HF, Zhao et al. 2023): max(0, 1 − β·h).
These are the forms TRL's DPOTrainer gives `loss_type` of the same names. The rewards are
β·r_w and β·r_l (Rafailov et al., Sec. 5); metrics: their means, the margin β·h, and the reward
accuracy, the fraction of pairs whose chosen reward is the larger. At π = π_ref every loss is at
its start: ln 2 for 'sigmoid' (any ε), 1/(4β²) for 'ipo', 1 for 'hinge'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.core.errors import LmjaxError

LOSS_TYPES = ('sigmoid', 'ipo', 'hinge')


class PreferenceError(LmjaxError, ValueError):
  """A preference-loss setting out of range; one line naming the field."""


def check(loss_type: str, beta: float, label_smoothing: float = 0.0, prefix='config.dpo.'):
  if loss_type not in LOSS_TYPES:
    raise PreferenceError(f'{prefix}loss_type={loss_type!r} is not allowed: one of '
                          f'{", ".join(LOSS_TYPES)}')
  if not beta > 0:
    raise PreferenceError(f'{prefix}beta={beta} is not allowed: a number > 0')
  if not 0 <= label_smoothing < 0.5:
    raise PreferenceError(f'{prefix}label_smoothing={label_smoothing} is not allowed: in '
                          '[0, 0.5)')
  if label_smoothing and loss_type != 'sigmoid':
    raise PreferenceError(f'{prefix}label_smoothing applies to loss_type sigmoid only')


def losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, *, beta=0.1,
           loss_type='sigmoid', label_smoothing=0.0):
  """(per-pair losses (B,), metrics dict of (B,) arrays) from summed log-probabilities (B,)."""
  r_w = policy_chosen - ref_chosen
  r_l = policy_rejected - ref_rejected
  h = r_w - r_l
  if loss_type == 'sigmoid':
    loss = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * h)
            - label_smoothing * jax.nn.log_sigmoid(-beta * h))
  elif loss_type == 'ipo':
    loss = (h - 1.0 / (2.0 * beta)) ** 2
  elif loss_type == 'hinge':
    loss = jax.nn.relu(1.0 - beta * h)
  else:
    raise PreferenceError(f'loss_type={loss_type!r}: one of {", ".join(LOSS_TYPES)}')
  reward_w, reward_l = beta * r_w, beta * r_l
  metrics = {'reward_chosen': reward_w, 'reward_rejected': reward_l,
             'reward_margin': reward_w - reward_l,
             'reward_accuracy': (reward_w > reward_l).astype(jnp.float32),
             'logp_chosen': policy_chosen, 'logp_rejected': policy_rejected}
  return loss, metrics


def sequence_logprobs(logits_BxTxV, targets_BxT, mask_BxT):
  """Summed log-probabilities of the targets where mask is 1 (a completion's tokens), from
  float32 log-softmax: (B,)."""
  logp = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), -1)
  picked = jnp.take_along_axis(logp, targets_BxT[..., None], -1)[..., 0]
  return jnp.sum(picked * mask_BxT, axis=-1)
