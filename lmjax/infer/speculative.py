"""Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023): a small draft model proposes k tokens, the target model scores all
of them in one pass, and rejection sampling keeps a prefix of them and draws one more, so that
the output follows the target's distribution exactly (Leviathan et al., Theorem 1), whatever the
draft.

One round, per row, both models' KV caches holding the text up to the newest token `cur`:
1. the draft feeds cur and draws x_0 .. x_{k-1} from its distributions q_0 .. q_{k-1}, one token
   at a time with its cache (it also feeds x_{k-1}, so its cache is complete when all are kept);
2. the target runs [cur, x_0, .., x_{k-1}] in one call: p_0 .. p_k;
3. x_j is kept with probability min(1, p_j(x_j) / q_j(x_j)), in order, until the first refusal at
   r; the round then adds x_0 .. x_{r-1} and a draw y from norm(max(0, p_r − q_r)), or, when all
   k were kept, y from p_k: between 1 and k + 1 tokens;
4. each cache's next free slot moves back to just after the kept tokens (slots beyond are never
   attended to and are overwritten), and y is the next round's cur.
p and q are the models' distributions after the sampler's temperature and truncations
(lmjax/infer/decode.py, `truncate`), the same for both; at temperature 0 both are one-hot at
their argmax, a draft token is kept exactly when it is the target's argmax, and the output is
the target's greedy output token for token. The log-probability reported with each token is the
target's own (temperature 1), as `Decoder` reports it.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.infer import kv_cache
from lmjax.infer.decode import PAD, DecodeError, Sampler, _check_length, pad_prompts, truncate


class Speculated(NamedTuple):
  tokens: np.ndarray     # (B, max_new_tokens) int32, PAD after a row's end
  logprobs: np.ndarray   # (B, max_new_tokens) float32, the target's log-probability of each
  lengths: np.ndarray    # (B,)
  drafted: np.ndarray    # (B,) draft tokens proposed while the row was running
  accepted: np.ndarray   # (B,) of them kept
  rounds: np.ndarray     # (B,) target calls after the prefill


def probabilities(logits_NxV, sampler: Sampler):
  """The distribution a sampler draws from: one-hot at the argmax for temperature 0, else the
  softmax of the truncated, tempered logits."""
  if sampler.temperature == 0:
    return jax.nn.one_hot(jnp.argmax(logits_NxV, -1), logits_NxV.shape[-1], dtype=jnp.float32)
  return jax.nn.softmax(truncate(logits_NxV, sampler), -1)


def accept(p_BxK1xV, q_BxKxV, drafted_BxK, rng):
  """Step 3 of the module doc for a batch: (kept r (B,), the round's tokens (B, k + 1): the kept
  drafts, then y, then PAD)."""
  b, k = drafted_BxK.shape
  u_key, y_key = jax.random.split(rng)
  pick = lambda probs, tok: jnp.take_along_axis(probs, tok[..., None], -1)[..., 0]
  p_x, q_x = pick(p_BxK1xV[:, :k], drafted_BxK), pick(q_BxKxV, drafted_BxK)
  u = jax.random.uniform(u_key, (b, k))
  kept = u * q_x < p_x  # u < p/q, without dividing (q_x > 0: the draft drew x from q)
  r = jnp.sum(jnp.cumprod(kept.astype(jnp.int32), axis=1), axis=1)
  rows = jnp.arange(b)
  p_r = p_BxK1xV[rows, r]
  q_r = jnp.where((r < k)[:, None], q_BxKxV[rows, jnp.minimum(r, k - 1)], 0.0)
  residual = jnp.maximum(p_r - q_r, 0.0)
  total = residual.sum(-1, keepdims=True)
  residual = jnp.where(total > 0, residual / jnp.where(total > 0, total, 1.0), p_r)
  y = jax.random.categorical(y_key, jnp.log(residual), axis=-1).astype(jnp.int32)
  j = jnp.arange(k + 1)[None, :]
  padded = jnp.concatenate([drafted_BxK, jnp.full((b, 1), PAD, jnp.int32)], axis=1)
  tokens = jnp.where(j < r[:, None], padded, jnp.where(j == r[:, None], y[:, None], PAD))
  return r, tokens


class Speculative:
  """Speculative generation with a target and a draft model of the same vocabulary, `k` drafted
  tokens per round; compiled once per prompt batch shape."""

  def __init__(self, target, draft, max_new_tokens: int, k: int = 4,
               sampler: Sampler = Sampler(), end_id=None):
    if max_new_tokens < 1:
      raise DecodeError(f'max_new_tokens={max_new_tokens} is not allowed: at least 1')
    if k < 1:
      raise DecodeError(f'--k={k} is not allowed: at least 1 drafted token per round')
    if target.cfg.vocab_size != draft.cfg.vocab_size:
      raise DecodeError(f'--draft: its vocabulary ({draft.cfg.vocab_size}) is not the target\'s '
                        f'({target.cfg.vocab_size})')
    self.target, self.draft, self.k = target, draft, k
    self.max_new, self.sampler = max_new_tokens, sampler.check()
    self.end_id = -1 if end_id is None else int(end_id)
    self._run = jax.jit(self._generate)

  def __call__(self, params, draft_params, prompts, seed: int = 0) -> Speculated:
    tokens_BxP, lengths_B = pad_prompts(prompts)
    for model in (self.target, self.draft):
      _check_length(model, tokens_BxP.shape[1], self.max_new + self.k + 1)
    out = self._run(params, draft_params, tokens_BxP, lengths_B, jax.random.PRNGKey(seed))
    return Speculated(*jax.device_get(out))

  def _generate(self, params, draft_params, tokens_BxP, lengths_B, rng):
    (b, p), k, n = tokens_BxP.shape, self.k, self.max_new
    slots = p + n + k + 2
    apply_t = lambda toks, cache: self.target.apply({'params': params}, toks, kv=cache)
    apply_d = lambda toks, cache: self.draft.apply({'params': draft_params}, toks, kv=cache)
    # Prefill: the prompt into both caches; its last token is the first round's cur.
    _, cache_t = apply_t(tokens_BxP, kv_cache.init(self.target.cfg, b, slots))
    _, cache_d = apply_d(tokens_BxP, kv_cache.init(self.draft.cfg, b, slots))
    start = lengths_B - 1
    cur = tokens_BxP[jnp.arange(b), start]
    cache_t, cache_d = cache_t.replace(index=start), cache_d.replace(index=start)
    width = n + k + 1  # a round may write k + 1 tokens past the last kept one
    out = (jnp.full((b, width), PAD, jnp.int32), jnp.zeros((b, width), jnp.float32),
           jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool))
    stats = (jnp.zeros((b,), jnp.int32),) * 3
    rows = jnp.arange(b)

    def round_(i, carry):
      cur, cache_t, cache_d, (toks, logps, n_B, done), (drafted, accepted, rounds) = carry
      key = jax.random.fold_in(rng, i)
      # 1. k drafts, one token at a time (and the last one fed too).
      feed, qs, xs = cur, [], []
      for j in range(k + 1):
        logits, cache_d = apply_d(feed[:, None], cache_d)
        if j == k:
          break
        q = probabilities(logits[:, 0], self.sampler)
        x = jax.random.categorical(jax.random.fold_in(key, j), jnp.log(q), axis=-1)
        qs.append(q)
        xs.append(x.astype(jnp.int32))
        feed = xs[-1]
      x_BxK = jnp.stack(xs, axis=1)
      # 2. the target on [cur, x_0 .. x_{k-1}] in one call.
      logits_t, cache_t = apply_t(jnp.concatenate([cur[:, None], x_BxK], axis=1), cache_t)
      p_BxK1xV = probabilities(logits_t.reshape(b * (k + 1), -1), self.sampler).reshape(
          b, k + 1, -1)
      # 3. keep r drafts and draw y.
      r, new = accept(p_BxK1xV, jnp.stack(qs, axis=1), x_BxK, jax.random.fold_in(key, k + 1))
      logp_all = jax.nn.log_softmax(logits_t.astype(jnp.float32), -1)
      new_logp = jnp.take_along_axis(logp_all, jnp.maximum(new, 0)[..., None], -1)[..., 0]
      # A row ends at its first end token or at max_new_tokens.
      j = jnp.arange(k + 1)[None, :]
      count = r + 1
      is_end = (new == self.end_id) & (j < count[:, None])
      first_end = jnp.where(is_end.any(1), jnp.argmax(is_end, axis=1) + 1, count)
      count = jnp.minimum(first_end, n - n_B)
      write = (j < count[:, None]) & ~done[:, None]
      where = jnp.where(write, n_B[:, None] + j, width)  # out of range: dropped
      toks = toks.at[rows[:, None], where].set(new, mode='drop')
      logps = logps.at[rows[:, None], where].set(new_logp, mode='drop')
      live = ~done
      drafted = drafted + jnp.where(live, k, 0)
      accepted = accepted + jnp.where(live, r, 0)
      rounds = rounds + live.astype(jnp.int32)
      n_B = n_B + jnp.where(live, count, 0)
      done = done | is_end.any(1) | (n_B >= n)
      # 4. caches just after the kept tokens; y is the next cur.
      index = cache_t.index - (k + 1) + 1 + r  # cur and the r kept drafts are in
      y = new[rows, r]
      return (y, cache_t.replace(index=index), cache_d.replace(index=index),
              (toks, logps, n_B, done), (drafted, accepted, rounds))

    def cond(state):
      i, carry = state
      return (i < n) & ~jnp.all(carry[3][3])
    carry = (cur, cache_t, cache_d, out, stats)
    _, _, _, (toks, logps, n_B, _), (drafted, accepted, rounds) = jax.lax.while_loop(
        cond, lambda s: (s[0] + 1, round_(*s)), (0, carry))[1]
    return toks[:, :n], logps[:, :n], n_B, drafted, accepted, rounds
