"""Decoding: the KV cache against the full forward pass, samplers on hand-made distributions,
beam search against greedy and an exhaustive search."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import default_config, resolve
from lmjax.infer import decode, kv_cache
from lmjax.train.steps import (build_model_and_optimizer, init_params, init_state,
                               make_train_step, schedule_arg)

POSITIONS = ('rope', 'learned', 'sinusoidal', 'none')


def model_and_params(seed=0, **model_fields):
  c = default_config()
  c.model.update(dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                      max_seq_len=64, init_std=0.3))
  c.model.update(model_fields)
  c.data.seq_len, c.data.dataset = 64, 'random'  # random: any model.vocab_size is allowed
  c = resolve(c)
  model, _ = build_model_and_optimizer(c)
  return model, init_params(model, c, jax.random.PRNGKey(seed)), c


def prompts_of(lengths, vocab=256, seed=1):
  rng = np.random.default_rng(seed)
  return [np.concatenate([[256], rng.integers(0, vocab, n - 1)]).astype(np.int32)
          for n in lengths]


def full_logits(model, params, row):
  return np.asarray(model.apply({'params': params}, jnp.asarray(row)[None]))[0]


def fast_and_slow(cases):
  """The first case in the fast set, the others marked slow (CI runs them all)."""
  return [cases[0], *(pytest.param(*c, marks=pytest.mark.slow) for c in cases[1:])]


@pytest.mark.parametrize('position,kv_heads', fast_and_slow(
    [('rope', 2), *((p, k) for p in POSITIONS for k in (2, 1) if (p, k) != ('rope', 2))]))
def test_cached_logits_equal_the_full_forward_pass(position, kv_heads):
  # init_std 0.1: logits of order 1, whose float32 rounding differs by ~1e-6 between the two
  # summation orders (the cache's dense attention, the blocked kernel).
  model, params, _ = model_and_params(position=position, n_kv_heads=kv_heads, init_std=0.1)
  apply = jax.jit(lambda p, t, kv: model.apply({'params': p}, t, kv=kv))
  rows = prompts_of((9, 3, 14), seed=2)
  continuation = np.random.default_rng(3).integers(0, 256, (3, 6)).astype(np.int32)
  full = [full_logits(model, params, np.concatenate([r, c])) for r, c in
          zip(rows, continuation)]
  for prefill in (1, 3, 14):  # prefill the first `prefill` tokens (fewer for short rows)
    lengths = np.minimum([len(r) for r in rows], prefill)
    tokens, _ = decode.pad_prompts([r[:n] for r, n in zip(rows, lengths)])
    cache = kv_cache.init(model.cfg, 3, 32)
    logits, cache = apply(params, tokens, cache)
    got = [[np.asarray(logits)[b, :lengths[b]]] for b in range(3)]
    cache = cache.replace(index=jnp.asarray(lengths))
    # Then one token per step: each row's own next token (its prompt's, then the continuation).
    seqs = [np.concatenate([r, c]) for r, c in zip(rows, continuation)]
    for step in range(max(len(s) for s in seqs) - int(lengths.min())):
      pos = lengths + step
      nxt = np.asarray([s[p] if p < len(s) else 0 for s, p in zip(seqs, pos)], np.int32)
      logits, cache = apply(params, nxt[:, None], cache)
      for b in range(3):
        if pos[b] < len(seqs[b]):
          got[b].append(np.asarray(logits)[b])
    for b in range(3):
      np.testing.assert_allclose(np.concatenate([np.atleast_2d(g) for g in got[b]]), full[b],
                                 rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cached_logits_with_scanned_layers():
  model, params, _ = model_and_params(scan_layers=True, init_std=0.1)
  apply = jax.jit(lambda p, t, kv: model.apply({'params': p}, t, kv=kv))
  row = prompts_of((12,))[0]
  cache = kv_cache.init(model.cfg, 1, 16)
  logits, cache = apply(params, row[None, :7], cache)
  steps = [np.asarray(logits)[0]]
  for t in row[7:]:
    logits, cache = apply(params, np.asarray([[t]]), cache)
    steps.append(np.asarray(logits)[0])
  np.testing.assert_allclose(np.concatenate(steps), full_logits(model, params, row), rtol=0,
                             atol=1e-5)


def trained_tiny(**model_fields):
  """The tiny model after 60 steps on a periodic text: confident, non-uniform predictions."""
  c = default_config()
  c.model.update(model_fields)
  c.data.seq_len, c.data.batch_size = 32, 8
  c.train.steps = 60
  c.optim.lr, c.optim.warmup_steps = 1e-2, 5
  c = resolve(c)
  model, tx = build_model_and_optimizer(c)
  state, step = init_state(model, tx, c), make_train_step(model, tx, c)
  text = np.frombuffer(b'def f(x):\n    return x + 1\n' * 40, np.uint8).astype(np.int32)
  for i in range(c.train.steps):
    starts = (np.arange(8) * 7 + i * 3) % 500
    rows = np.stack([text[s:s + 33] for s in starts])
    state, metrics = step(state, {'inputs': rows[:, :-1], 'targets': rows[:, 1:]},
                          schedule_arg(c))
  assert float(metrics['loss']) < 1.0
  return model, state.params


@pytest.mark.parametrize('position,kv_heads', fast_and_slow(
    [(p, 2) for p in POSITIONS] + [('rope', 1)]))
def test_cached_greedy_equals_the_uncached_rollout(position, kv_heads):
  model, params, _ = model_and_params(position=position, n_kv_heads=kv_heads)
  prompts = prompts_of((5, 11, 2))
  greedy = decode.Sampler(temperature=0)
  cached = decode.Decoder(model, 20, greedy)(params, prompts)
  uncached = decode.Decoder(model, 20, greedy, cache=False)(params, prompts)
  np.testing.assert_array_equal(cached.tokens, uncached.tokens)
  np.testing.assert_allclose(cached.logprobs, uncached.logprobs, rtol=0, atol=1e-5)
  assert (cached.lengths == 20).all()


@pytest.mark.slow
@pytest.mark.parametrize('position,kv_heads', [('rope', 2), ('rope', 4), ('learned', 2),
                                               ('sinusoidal', 2), ('none', 2), ('rope', 1)])
def test_cached_greedy_equals_uncached_on_a_trained_model(position, kv_heads):
  model, params = trained_tiny(position=position, n_kv_heads=kv_heads)
  prompts = [np.frombuffer(p, np.uint8).astype(np.int32) for p in
             (b'def f(', b'    ret', b'x):\n')]
  prompts = [np.concatenate([[256], p]) for p in prompts]
  greedy = decode.Sampler(temperature=0)
  cached = decode.Decoder(model, 24, greedy)(params, prompts)
  uncached = decode.Decoder(model, 24, greedy, cache=False)(params, prompts)
  np.testing.assert_array_equal(cached.tokens, uncached.tokens)
  # The model learnt the text: the continuation of 'def f(' is the text itself.
  assert bytes(cached.tokens[0, :4].astype(np.uint8)) == b'x):\n'


def test_end_token_stops_a_row():
  model, params, _ = model_and_params()
  prompts = prompts_of((4, 6))
  free = decode.Decoder(model, 12, decode.Sampler(temperature=0))(params, prompts)
  end = int(free.tokens[0, 5])
  first = int(np.argmax(free.tokens[0] == end))
  out = decode.Decoder(model, 12, decode.Sampler(temperature=0), end_id=end)(params, prompts)
  assert out.lengths[0] == first + 1
  np.testing.assert_array_equal(out.tokens[0, :first + 1], free.tokens[0, :first + 1])
  assert (out.tokens[0, first + 1:] == decode.PAD).all()


# Hand-made next-token distributions: rows of log-probabilities over 6 tokens.
PROBS = np.asarray([[0.5, 0.2, 0.15, 0.1, 0.04, 0.01],
                    [0.05, 0.05, 0.6, 0.1, 0.15, 0.05],
                    [1 / 6] * 6])


def draws(sampler, n=4000, seed=0):
  logits = jnp.asarray(np.log(np.repeat(PROBS, n, axis=0)), jnp.float32)
  return np.asarray(decode.choose(logits, sampler, jax.random.PRNGKey(seed))).reshape(3, n)


def allowed(keep):
  return [set(np.flatnonzero(k)) for k in keep]


@pytest.mark.parametrize('sampler,keep', [
    (decode.Sampler(top_k=2), [[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0]]),
    (decode.Sampler(top_p=0.8), [[1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]]),
    (decode.Sampler(min_p=0.25), [[1, 1, 1, 0, 0, 0], [0, 0, 1, 0, 1, 0], [1] * 6]),
    (decode.Sampler(epsilon=0.06), [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0], [1] * 6]),
])
def test_truncation_never_leaves_its_set(sampler, keep):
  got = draws(sampler)
  for row, k in enumerate(keep):
    seen = set(np.unique(got[row]))
    # (row 2 is flat: ties go to the lower token id, so a truncation keeps exactly its share)
    assert seen <= allowed([k])[0], (row, seen)
    # and every allowed token is drawn (4000 draws, each has probability >= 0.03)
    assert seen == allowed([k])[0]


def test_truncated_distribution_is_renormalised():
  # top_p 0.8 on row 0 keeps {0, 1, 2} in proportion 0.5 : 0.2 : 0.15.
  got = draws(decode.Sampler(top_p=0.8), n=20000)[0]
  freq = np.bincount(got, minlength=6)[:3] / len(got)
  np.testing.assert_allclose(freq, np.asarray([0.5, 0.2, 0.15]) / 0.85, atol=0.015)


def test_temperature_towards_zero_is_greedy():
  got = draws(decode.Sampler(temperature=1e-3), n=500)
  assert (got[0] == 0).all() and (got[1] == 2).all()
  assert (np.asarray(decode.choose(jnp.log(jnp.asarray(PROBS)), decode.Sampler(temperature=0),
                                   None)) == [0, 2, 0]).all()


def test_same_seed_same_samples():
  model, params, _ = model_and_params()
  prompts = prompts_of((3, 7))
  sample = decode.Decoder(model, 16, decode.Sampler(temperature=1.0, top_k=20))
  a, b, c = sample(params, prompts, seed=5), sample(params, prompts, seed=5), sample(
      params, prompts, seed=6)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert (a.tokens != c.tokens).any()
  uncached = decode.Decoder(model, 16, decode.Sampler(temperature=1.0, top_k=20), cache=False)
  np.testing.assert_array_equal(uncached(params, prompts, seed=5).tokens, a.tokens)


@pytest.mark.parametrize('bad', [dict(temperature=-1), dict(top_k=-2), dict(top_p=0),
                                 dict(top_p=1.5), dict(min_p=2), dict(epsilon=1)])
def test_sampler_fields_are_checked(bad):
  with pytest.raises(ValueError, match=list(bad)[0]):
    decode.Sampler(**bad).check()


def test_beam_of_one_is_greedy():
  model, params, _ = model_and_params()
  prompts = prompts_of((5, 2, 8))
  greedy = decode.Decoder(model, 10, decode.Sampler(temperature=0))(params, prompts)
  beam = decode.BeamSearch(model, 10, beam=1)(params, prompts)
  np.testing.assert_array_equal(beam.tokens, greedy.tokens)
  np.testing.assert_allclose(beam.scores, greedy.logprobs.sum(1) / 10, rtol=1e-5)


@pytest.mark.slow
def test_beam_search_finds_the_best_sequence_of_an_exhaustive_case():
  model, params, _ = model_and_params(vocab_size=5, init_std=1.0)
  prompt = np.asarray([1, 3, 0, 2], np.int32)
  # Every continuation of 3 tokens, scored by the full forward pass.
  conts = np.asarray(list(itertools.product(range(5), repeat=3)), np.int32)
  seqs = np.concatenate([np.repeat(prompt[None], len(conts), 0), conts], axis=1)
  logp = jax.nn.log_softmax(model.apply({'params': params}, seqs), -1)
  total = sum(np.asarray(logp)[np.arange(len(conts)), 3 + j, conts[:, j]] for j in range(3))
  best = conts[np.argmax(total)]
  found = decode.BeamSearch(model, 3, beam=25, alpha=0)(params, [prompt])
  np.testing.assert_array_equal(found.tokens[0], best)
  np.testing.assert_allclose(found.scores[0], total.max(), rtol=1e-5)
  # greedy is not always best: a beam of 2 scores at least greedy
  greedy = decode.Decoder(model, 3, decode.Sampler(temperature=0))(params, [prompt])
  two = decode.BeamSearch(model, 3, beam=2, alpha=0)(params, [prompt])
  assert two.scores[0] >= greedy.logprobs.sum() - 1e-6


def _diverse_by_hand(scores, step, done, groups, diversity):
  """Vijayakumar et al. 2018's Alg. 1 step with Hamming diversity, one row at a time in plain
  Python: each group in turn takes its W/G best (beam, token) by summed log-probability minus
  diversity × how often earlier groups just chose the token (finished beams' continuations not
  counted)."""
  b, w, v = step.shape
  size = w // groups
  values, indices = np.zeros((b, w), np.float32), np.zeros((b, w), np.int64)
  for r in range(b):
    counts = np.zeros(v)
    for g in range(groups):
      cands = [(float(scores[r, k] + step[r, k, t]) - diversity * counts[t], k, t)
               for k in range(g * size, (g + 1) * size) for t in range(v)]
      chosen = sorted(cands, key=lambda c: -c[0])[:size]
      for j, (_, k, t) in enumerate(chosen):
        values[r, g * size + j] = scores[r, k] + step[r, k, t]
        indices[r, g * size + j] = k * v + t
      for _, k, t in chosen:
        counts[t] += not done[r, k]
  return values, indices


def test_the_diverse_choice_is_the_paper_s_rule():
  rng = np.random.default_rng(0)
  b, w, v = 2, 6, 5
  scores = rng.normal(size=(b, w)).astype(np.float32)
  step = np.log(rng.dirichlet(np.ones(v), size=(b, w))).astype(np.float32)
  done = np.zeros((b, w), bool)
  done[0, 1] = done[1, 4] = True  # finished beams: one continuation, token 0 at log-prob 0
  step[done] = np.where(np.arange(v) == 0, 0.0, -np.inf)
  for groups, diversity in ((3, 0.0), (3, 0.7), (2, 5.0), (6, 2.0)):
    values, indices = decode.diverse_top_k(jnp.asarray(scores), jnp.asarray(step),
                                           jnp.asarray(done), groups, diversity)
    want_values, want_indices = _diverse_by_hand(scores, step, done, groups, diversity)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(values, want_values)


def test_diverse_beam_search_groups():
  model, params, _ = model_and_params()
  prompts = prompts_of((5, 8))
  # Without diversity every group is a beam search of width W/G: each group's best is its best.
  plain = decode.BeamSearch(model, 8, beam=2)(params, prompts)
  same = decode.BeamSearch(model, 8, beam=6, groups=3)(params, prompts)
  for g in range(3):
    np.testing.assert_array_equal(same.group_tokens[:, g], plain.tokens)
  np.testing.assert_allclose(same.group_scores[:, 0], plain.scores, rtol=1e-6)
  one = decode.BeamSearch(model, 8, beam=2, groups=1)(params, prompts)
  np.testing.assert_array_equal(one.group_tokens[:, 0], one.tokens)
  # A large penalty: each group's first token is one no earlier group chose at that step, so the
  # groups' best sequences start with different tokens; the best overall is the best group's.
  diverse = decode.BeamSearch(model, 8, beam=6, groups=3, diversity=1e3)(params, prompts)
  for row in range(2):
    assert len(set(diverse.group_tokens[row, :, 0].tolist())) == 3
    best = int(np.argmax(diverse.group_scores[row]))
    np.testing.assert_array_equal(diverse.tokens[row], diverse.group_tokens[row, best])
    assert diverse.scores[row] == diverse.group_scores[row].max()
  with pytest.raises(decode.DecodeError, match='beam_groups=4 is not allowed: a divisor of'):
    decode.BeamSearch(model, 8, beam=6, groups=4)
  with pytest.raises(decode.DecodeError, match='diversity=0.5 is not allowed'):
    decode.BeamSearch(model, 8, beam=6, diversity=0.5)


@pytest.mark.parametrize('settings, message', [
    (dict(beam=0, beam_groups=2), "--beam_groups and --diversity are diverse beam search's"),
    (dict(beam=6, beam_groups=4), '--beam_groups=4 is not allowed: a divisor of --beam=6'),
    (dict(beam=6, beam_groups=3, diversity=-1.0), '--diversity=-1.0 is not allowed'),
    (dict(beam=6, diversity=0.5), '--diversity=0.5 is not allowed: >= 0, and 0 unless')])
def test_bad_diverse_beam_settings_name_their_flag(settings, message):
  from lmjax.infer import samples
  with pytest.raises(decode.DecodeError, match=message):
    samples.continue_run('/nonexistent-run', ['x'], **settings)
