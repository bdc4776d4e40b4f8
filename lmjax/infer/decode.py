"""Decoding from a trained model: samplers, cached and uncached generation, and beam search.

`Decoder(model, ...)` compiles one generation program for its settings and runs it on a batch
of prompts of different lengths (token id arrays, each starting with the tokenizer's separator as
documents do in training). With the KV cache (lmjax/infer/kv_cache.py) the prompts are run through
the model once (prefill) and then one token per step in a `lax.while_loop`; without it, every step
runs the full forward pass over the tokens so far (the reference the cache is tested against).
A row stops after `end_id` (the separator: the document is over) or `max_new_tokens`; the loop
stops when every row has. The same seed gives the same samples: the draw of step i uses the key
fold_in(PRNGKey(seed), i).

Samplers act on the next-token logits (`Sampler`; HF transformers' order: temperature, then the
truncations, each keeping at least the most likely token):
- greedy: temperature 0;
- ancestral sampling from softmax(logits / temperature);
- top-k (Fan et al. 2018): the k most likely tokens;
- top-p, nucleus (Holtzman et al. 2020): the smallest set of most likely tokens whose probability
  adds up to at least p;
- min-p (Nguyen et al. 2024): tokens with probability at least min_p times the largest;
- epsilon (Hewitt et al. 2022): tokens with probability at least epsilon.
The log-probabilities reported with each token are the model's own (temperature 1, before any
truncation), whatever sampled it.

Beam search (`BeamSearch`) keeps the `beam` best partial sequences by summed log-probability; a
finished beam keeps its score, and the returned sequence is the best by score / length^alpha
(length normalisation; alpha = 0 ranks by the sum, 1 by the mean log-probability per token).
Diverse beam search (Vijayakumar et al. 2018, "Diverse Beam Search", AAAI, Alg. 1, Hamming
diversity): `groups` G split the beams into G groups of beam / G, each a beam search of its own
from the prompt; at every step the groups choose in turn, group g by summed log-probability
minus `diversity` × the number of times each token was just chosen by groups 0..g−1 (a penalty
on this step's choice only: the scores kept are the log-probabilities, as in the paper's
objective). Each group's best sequence is returned beside the overall best.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.core.errors import LmjaxError
from lmjax.infer import kv_cache

PAD = -1  # the token of a row after it has finished, in returned arrays


class DecodeError(LmjaxError, ValueError):
  """A decoding setting or prompt out of range; one line naming the setting."""


@dataclasses.dataclass(frozen=True)
class Sampler:
  temperature: float = 1.0   # 0: greedy
  top_k: int = 0             # 0: off
  top_p: float = 1.0         # 1: off
  min_p: float = 0.0         # 0: off
  epsilon: float = 0.0       # 0: off

  def check(self, prefix='') -> 'Sampler':
    """Itself; raises DecodeError naming the field of a value outside its range."""
    rules = {'temperature': (self.temperature >= 0, '>= 0 (0 is greedy)'),
             'top_k': (self.top_k >= 0, 'an integer >= 0 (0 is off)'),
             'top_p': (0 < self.top_p <= 1, 'in (0, 1] (1 is off)'),
             'min_p': (0 <= self.min_p <= 1, 'in [0, 1] (0 is off)'),
             'epsilon': (0 <= self.epsilon < 1, 'in [0, 1) (0 is off)')}
    for name, (ok, allowed) in rules.items():
      if not ok:
        raise DecodeError(f'{prefix}{name}={getattr(self, name)} is not allowed: {allowed}')
    return self


def truncate(logits_BxV, sampler: Sampler):
  """The logits divided by the temperature, with the tokens each truncation leaves out at -inf.
  Every row keeps at least its most likely token."""
  logits = logits_BxV.astype(jnp.float32)
  if sampler.temperature > 0:
    logits = logits / sampler.temperature
  out = jnp.full_like(logits, -jnp.inf)
  keep = jnp.ones(logits.shape, bool)
  probs = jax.nn.softmax(logits, axis=-1)
  p_max = probs.max(-1, keepdims=True)
  # Ties are broken by token id (the sort below is stable), so a truncation keeps exactly its
  # share of a flat distribution.
  rows = jnp.arange(keep.shape[0])[:, None]
  if sampler.top_k:
    top = jax.lax.top_k(logits, min(sampler.top_k, logits.shape[-1]))[1]
    keep &= jnp.zeros_like(keep).at[rows, top].set(True)
  if sampler.top_p < 1:
    order = jnp.argsort(-logits, axis=-1)
    sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
    before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs   # mass of the tokens ahead
    in_nucleus_sorted = before < sampler.top_p
    in_nucleus = jnp.zeros_like(keep).at[rows, order].set(in_nucleus_sorted)
    keep &= in_nucleus
  if sampler.min_p > 0:
    keep &= probs >= sampler.min_p * p_max
  if sampler.epsilon > 0:
    keep &= probs >= sampler.epsilon
  best = jnp.argmax(logits, axis=-1)[:, None]  # the most likely token always stays
  keep = keep.at[rows, best].set(True)
  return jnp.where(keep, logits, out)


def choose(logits_BxV, sampler: Sampler, rng):
  """The next token of each row: the argmax for temperature 0, else a draw from the truncated
  distribution."""
  if sampler.temperature == 0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  return jax.random.categorical(rng, truncate(logits_BxV, sampler), axis=-1).astype(jnp.int32)


class Generated(NamedTuple):
  tokens: np.ndarray     # (B, max_new_tokens) int32, PAD after a row's end
  logprobs: np.ndarray   # (B, max_new_tokens) float32, the model's log-probability of each token
  lengths: np.ndarray    # (B,) tokens generated per row (its end token included)


def pad_prompts(prompts, width=None) -> tuple[np.ndarray, np.ndarray]:
  """(B, P) int32 prompts padded on the right with 0, and their lengths (B,); P is the longest
  prompt's length, or `width` where that is more (a fixed shape: one compiled program)."""
  if not len(prompts) or any(len(p) == 0 for p in prompts):
    raise DecodeError('every prompt needs at least one token (the separator that starts a '
                     'document)')
  lengths = np.asarray([len(p) for p in prompts], np.int32)
  out = np.zeros((len(prompts), max(lengths.max(), width or 0)), np.int32)
  for i, p in enumerate(prompts):
    out[i, :len(p)] = p
  return out, lengths


def _check_length(model, prompt_len, max_new_tokens):
  cfg = model.cfg
  if cfg.position == 'learned' and prompt_len + max_new_tokens > cfg.max_seq_len:
    raise DecodeError(f'the longest prompt ({prompt_len} tokens) plus max_new_tokens='
                     f'{max_new_tokens} exceeds model.max_seq_len={cfg.max_seq_len}, the '
                     'positions a learned position embedding has')


class Decoder:
  """Generation for one model and settings; compiled once per prompt batch shape."""

  def __init__(self, model, max_new_tokens: int, sampler: Sampler = Sampler(), end_id=None,
               cache: bool = True):
    if max_new_tokens < 1:
      raise DecodeError(f'max_new_tokens={max_new_tokens} is not allowed: at least 1')
    self.model, self.max_new, self.sampler = model, max_new_tokens, sampler.check()
    self.end_id = -1 if end_id is None else int(end_id)
    self._run = jax.jit(self._cached if cache else self._uncached)

  def __call__(self, params, prompts, seed: int = 0, width=None) -> Generated:
    tokens_BxP, lengths_B = pad_prompts(prompts, width)
    _check_length(self.model, tokens_BxP.shape[1], self.max_new)
    out = self._run(params, tokens_BxP, lengths_B, jax.random.PRNGKey(seed))
    return Generated(*jax.device_get(out))

  def _step(self, i, logits_BxV, rng, out):
    """Chooses step i's tokens from the logits and records them; returns (tokens, out)."""
    tokens_B, logprobs_BxN, done_B, n_B = out
    tok_B = choose(logits_BxV, self.sampler, jax.random.fold_in(rng, i))
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxV.astype(jnp.float32), -1),
                                 tok_B[:, None], axis=-1)[:, 0]
    tokens_B = tokens_B.at[:, i].set(jnp.where(done_B, PAD, tok_B))
    logprobs_BxN = logprobs_BxN.at[:, i].set(jnp.where(done_B, 0.0, logp_B))
    n_B = n_B + (~done_B).astype(jnp.int32)
    done_B = done_B | (tok_B == self.end_id)
    return tok_B, (tokens_B, logprobs_BxN, done_B, n_B)

  def _empty(self, b):
    return (jnp.full((b, self.max_new), PAD, jnp.int32), jnp.zeros((b, self.max_new)),
            jnp.zeros((b,), bool), jnp.zeros((b,), jnp.int32))

  def _loop(self, body, carry):
    """Runs body(i, carry) for i = 0, 1, ... until max_new_tokens or every row is done."""
    def cond(state):
      i, carry = state
      return (i < self.max_new) & ~jnp.all(carry[-1][2])
    return jax.lax.while_loop(cond, lambda s: (s[0] + 1, body(*s)), (0, carry))[1]

  def _cached(self, params, tokens_BxP, lengths_B, rng):
    b, p = tokens_BxP.shape
    cache = kv_cache.init(self.model.cfg, b, p + self.max_new)
    logits_BxPxV, cache = self.model.apply({'params': params}, tokens_BxP, kv=cache)
    last_BxV = logits_BxPxV[jnp.arange(b), lengths_B - 1]
    cache = cache.replace(index=lengths_B)

    def body(i, carry):
      last_BxV, cache, out = carry
      tok_B, out = self._step(i, last_BxV, rng, out)
      logits_Bx1xV, cache = self.model.apply({'params': params}, tok_B[:, None], kv=cache)
      return logits_Bx1xV[:, 0], cache, out
    return self._finish(self._loop(body, (last_BxV, cache, self._empty(b)))[-1])

  def _uncached(self, params, tokens_BxP, lengths_B, rng):
    b, p = tokens_BxP.shape
    buffer_BxS = jnp.zeros((b, p + self.max_new), jnp.int32).at[:, :p].set(tokens_BxP)

    def body(i, carry):
      buffer_BxS, out = carry
      logits_BxSxV = self.model.apply({'params': params}, buffer_BxS)
      tok_B, out = self._step(i, logits_BxSxV[jnp.arange(b), lengths_B + i - 1], rng, out)
      return buffer_BxS.at[jnp.arange(b), lengths_B + i].set(tok_B), out
    return self._finish(self._loop(body, (buffer_BxS, self._empty(b)))[-1])

  @staticmethod
  def _finish(out):
    tokens_B, logprobs_BxN, _, n_B = out
    return tokens_B, logprobs_BxN, n_B


class Beams(NamedTuple):
  tokens: np.ndarray     # (B, max_new_tokens) int32: the best beam of each prompt, PAD after end
  logprobs: np.ndarray   # (B, max_new_tokens) float32
  lengths: np.ndarray    # (B,)
  scores: np.ndarray     # (B,) summed log-probability / length^alpha of the returned beam
  group_tokens: np.ndarray   # (B, G, max_new_tokens): each group's best beam (G = 1: the best)
  group_lengths: np.ndarray  # (B, G)
  group_scores: np.ndarray   # (B, G)


def diverse_top_k(scores_BxW, step_BxWxV, done_BxW, groups, diversity):
  """Diverse beam search's choice (module docstring) as (summed log-probabilities, indices
  into each row's W·V candidates), `jax.lax.top_k`'s form, W / `groups` per group in group
  order. A finished beam's continuation (token 0 at log-probability 0) is not counted as a
  choice."""
  b, w, v = step_BxWxV.shape
  size = w // groups
  counts_BxV = jnp.zeros((b, v), jnp.float32)
  tops, flats = [], []
  for g in range(groups):
    beams = slice(g * size, (g + 1) * size)
    cand_BxC = (scores_BxW[:, beams, None] + step_BxWxV[:, beams]).reshape(b, size * v)
    _, idx_BxK = jax.lax.top_k(cand_BxC - diversity * jnp.tile(counts_BxV, (1, size)), size)
    tops.append(jnp.take_along_axis(cand_BxC, idx_BxK, axis=1))
    flats.append(idx_BxK + g * size * v)
    live_BxK = ~jnp.take_along_axis(done_BxW[:, beams], idx_BxK // v, axis=1)
    counts_BxV = counts_BxV + (jax.nn.one_hot(idx_BxK % v, v) * live_BxK[..., None]).sum(1)
  return jnp.concatenate(tops, axis=1), jnp.concatenate(flats, axis=1)


class BeamSearch:
  """Beam search of width `beam` with length normalisation `alpha`, diverse with `groups` > 1
  (module docstring)."""

  def __init__(self, model, max_new_tokens: int, beam: int, alpha: float = 1.0, end_id=None,
               groups: int = 1, diversity: float = 0.0):
    if max_new_tokens < 1:
      raise DecodeError(f'max_new_tokens={max_new_tokens} is not allowed: at least 1')
    if beam < 1:
      raise DecodeError(f'beam={beam} is not allowed: at least 1')
    if alpha < 0:
      raise DecodeError(f'length_alpha={alpha} is not allowed: >= 0')
    if groups < 1 or beam % groups:
      raise DecodeError(f'beam_groups={groups} is not allowed: a divisor of beam={beam}')
    if diversity < 0 or (diversity and groups == 1):
      raise DecodeError(f'diversity={diversity} is not allowed: >= 0, and 0 unless '
                        'beam_groups > 1')
    self.model, self.max_new, self.beam, self.alpha = model, max_new_tokens, beam, alpha
    self.groups, self.diversity = groups, diversity
    self.end_id = -1 if end_id is None else int(end_id)
    self._run = jax.jit(self._search)

  def __call__(self, params, prompts) -> Beams:
    tokens_BxP, lengths_B = pad_prompts(prompts)
    _check_length(self.model, tokens_BxP.shape[1], self.max_new)
    return Beams(*jax.device_get(self._run(params, tokens_BxP, lengths_B)))

  def _search(self, params, tokens_BxP, lengths_B):
    (b, p), w, n = tokens_BxP.shape, self.beam, self.max_new
    rows = b * w
    # Each prompt's beams are rows [i·W, (i+1)·W); only each group's first is live at the start.
    cache = kv_cache.init(self.model.cfg, rows, p + n)
    logits, cache = self.model.apply({'params': params}, jnp.repeat(tokens_BxP, w, axis=0),
                                     kv=cache)
    start = jnp.repeat(lengths_B, w)
    last_RxV = logits[jnp.arange(rows), start - 1]
    cache = cache.replace(index=start)
    size = w // self.groups
    scores_BxW = jnp.where(jnp.arange(w) % size == 0, 0.0, -jnp.inf) * jnp.ones((b, 1))
    hist = (jnp.full((b, w, n), PAD, jnp.int32), jnp.zeros((b, w, n)))
    done_BxW, len_BxW = jnp.zeros((b, w), bool), jnp.zeros((b, w), jnp.int32)

    def body(i, carry):
      last_RxV, cache, scores_BxW, (tok_hist, lp_hist), done_BxW, len_BxW = carry
      logp_BxWxV = jax.nn.log_softmax(last_RxV.astype(jnp.float32), -1).reshape(b, w, -1)
      v = logp_BxWxV.shape[-1]
      # A finished beam has one continuation, token 0 at log-probability 0 (not recorded).
      stay_V = jnp.where(jnp.arange(v) == 0, 0.0, -jnp.inf)
      step_BxWxV = jnp.where(done_BxW[..., None], stay_V, logp_BxWxV)
      if self.groups == 1:
        top, flat = jax.lax.top_k((scores_BxW[..., None] + step_BxWxV).reshape(b, w * v), w)
      else:
        top, flat = diverse_top_k(scores_BxW, step_BxWxV, done_BxW, self.groups,
                                  self.diversity)
      origin_BxW, tok_BxW = flat // v, (flat % v).astype(jnp.int32)
      gather = lambda x: jnp.take_along_axis(x, origin_BxW.reshape(b, w, *[1] * (x.ndim - 2)),
                                             axis=1)
      was_done = gather(done_BxW)
      logp = jnp.take_along_axis(gather(logp_BxWxV), tok_BxW[..., None], axis=-1)[..., 0]
      tok_hist = gather(tok_hist).at[:, :, i].set(jnp.where(was_done, PAD, tok_BxW))
      lp_hist = gather(lp_hist).at[:, :, i].set(jnp.where(was_done, 0.0, logp))
      len_BxW = gather(len_BxW) + (~was_done).astype(jnp.int32)
      done_BxW = was_done | (tok_BxW == self.end_id)
      source_R = (origin_BxW + jnp.arange(b)[:, None] * w).reshape(rows)
      logits, cache = self.model.apply({'params': params}, tok_BxW.reshape(rows, 1),
                                       kv=cache.take(source_R))
      return logits[:, 0], cache, top, (tok_hist, lp_hist), done_BxW, len_BxW

    def cond(state):
      i, carry = state
      return (i < n) & ~jnp.all(carry[4])
    carry = (last_RxV, cache, scores_BxW, hist, done_BxW, len_BxW)
    _, _, scores_BxW, (tok_hist, lp_hist), _, len_BxW = jax.lax.while_loop(
        cond, lambda s: (s[0] + 1, body(*s)), (0, carry))[1]
    normed_BxW = scores_BxW / jnp.maximum(len_BxW, 1).astype(jnp.float32) ** self.alpha
    best_B = jnp.argmax(normed_BxW, axis=1)
    pick = lambda x: x[jnp.arange(b), best_B]
    # Each group's best: beam index g·size + argmax within the group.
    best_BxG = jnp.argmax(normed_BxW.reshape(b, self.groups, size), axis=2) + (
        jnp.arange(self.groups) * size)
    group = lambda x: jnp.take_along_axis(x, best_BxG.reshape(b, self.groups,
                                                             *[1] * (x.ndim - 2)), axis=1)
    return (pick(tok_hist), pick(lp_hist), pick(len_BxW), pick(normed_BxW), group(tok_hist),
            group(len_BxW), group(normed_BxW))
