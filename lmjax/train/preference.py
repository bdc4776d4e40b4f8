"""Preference losses from log-probabilities: DPO and the variants named alike elsewhere.

Given, per pair, the summed log-probabilities of the chosen completion y_w and the rejected one
y_l under the policy π and the frozen reference π_ref, with the log-ratios
r_w = log π(y_w|x) − log π_ref(y_w|x) and r_l likewise, and h = r_w − r_l:

- 'sigmoid' (DPO, Rafailov et al. 2023, Eq. 7): −log σ(β·h); with label smoothing ε (the
  "conservative" DPO of Mitchell 2023, for labels flipped with probability ε):
  −(1 − ε)·log σ(β·h) − ε·log σ(−β·h);
- 'ipo' (Azar et al. 2023, "A general theoretical paradigm...", Eq. 17): (h − 1/(2β))²;
- 'hinge' (SLiC-HF, Zhao et al. 2023): max(0, 1 − β·h).
'sigmoid' at ε = 0 and 'hinge' are TRL 1.16 DPOTrainer's `loss_type`s of those names (read
in its _compute_loss); TRL's 'ipo' divides each side's log-ratio by its completion's length,
lmjax's is Eq. 17 on summed log-probabilities; TRL's 'sigmoid' has no smoothing any more (its
'robust' is another correction). The rewards are β·r_w and β·r_l (Rafailov et al., Sec. 5);
metrics: their means, the margin β·h, and the reward accuracy, the fraction of pairs whose
chosen reward is the larger. At π = π_ref every loss is at
its start: ln 2 for 'sigmoid' (any ε), 1/(4β²) for 'ipo', 1 for 'hinge'.

Training (train.objective=dpo, lmjax/data/preference_data.py): the reference is the model the
run starts from (train.init_from); `set_reference` computes its log-probabilities of every pair
once, before the first step, and keeps them beside the pairs in memory (never checkpointed: a
resume computes them again from the same run). `dpo_sums` is the train step's objective: the
summed per-pair losses, and the metrics' sums (divided by the pairs in the step's metrics,
`metrics`); the policy's log-probabilities are over each completion's learned tokens (its mask:
the completion and the token that ends it).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lmjax.core.errors import LmjaxError
from lmjax.model import lora

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


def _logprobs(params, model, batch, rng=None):
  """Each row's summed log-probability of its learned targets, (2n,)."""
  logits = model.apply({'params': params}, batch['inputs'], batch.get('positions'),
                       batch.get('segment_ids'), deterministic=rng is None,
                       rngs=None if rng is None else {'dropout': rng})
  return sequence_logprobs(logits, batch['targets'], batch['weights'])


def dpo_sums(params, model, batch, rng=None, chunk=0, z_loss=0.0, *, beta, loss_type,
             label_smoothing):
  """(Σ pair losses, (Σ pair losses, pairs, {'dpo': the metrics' sums})) of a batch of pairs
  (rows chosen, rejected, ...; `ref_logps` the reference's), the train step's objective in
  place of the cross-entropy (`chunk` and `z_loss` do not apply)."""
  del chunk, z_loss
  if lora.has_adapters(model.cfg):  # a frozen base (as steps.loss_sums)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x if lora.is_adapter(path) else jax.lax.stop_gradient(x), params)
  policy = _logprobs(params, model, batch, rng).reshape(-1, 2)
  ref = batch['ref_logps'].reshape(-1, 2)
  loss, m = losses(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta=beta,
                   loss_type=loss_type, label_smoothing=label_smoothing)
  total = loss.sum()
  return total, (total, jnp.asarray(loss.shape[0], jnp.float32),
                 {'dpo': {k: v.sum() for k, v in m.items()}})


def metrics(sown, pairs) -> dict:
  """The step's DPO metrics: each sum over pairs divided by the pairs."""
  return {f'dpo_{k}': v / pairs for k, v in sown['dpo'].items()}


def set_reference(stores, model, params, pairs_per_batch, placement):
  """Computes and keeps each store's `ref`, the reference model's summed log-probabilities
  (P, 2) of every pair of a preference_data.PairStore, `pairs_per_batch` at a time on
  `placement` (one compiled program for all the stores)."""
  import numpy as np

  from lmjax.data import preference_data
  fn = jax.jit(lambda p, b: _logprobs(p, model, b))
  for store in stores:
    store.ref = None
    out = np.zeros((store.n_pairs, 2), np.float32)
    for first in range(0, store.n_pairs, pairs_per_batch):
      idx = np.arange(first, first + pairs_per_batch) % store.n_pairs  # the last batch wraps
      batch = {k: jax.device_put(v, placement)
               for k, v in preference_data.rows(store, idx).items()}
      values = np.asarray(jax.device_get(fn(params, batch))).reshape(-1, 2)
      keep = min(pairs_per_batch, store.n_pairs - first)
      out[first:first + keep] = values[:keep]
    store.ref = out


def make_eval_step(model, dpo_config):
  """params, batch of pairs -> the sums `steps.evaluate` reads: DPO loss ('nats'), pairs
  ('tokens'), reward accuracy ('hits') and margin."""
  def eval_fn(params, batch):
    total, (_, pairs, sown) = dpo_sums(params, model, batch, beta=dpo_config.beta,
                                       loss_type=dpo_config.loss_type,
                                       label_smoothing=dpo_config.label_smoothing)
    return {'nats': total, 'tokens': pairs, 'bytes': jnp.zeros(()),
            'hits': sown['dpo']['reward_accuracy'], 'margin': sown['dpo']['reward_margin']}
  return jax.jit(eval_fn)
