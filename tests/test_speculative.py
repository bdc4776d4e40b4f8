"""Speculative decoding (lmjax/infer/speculative.py): greedy output equal to plain greedy
decoding token for token; the acceptance step's output distributed as the target's (a
chi-squared test on a small vocabulary); sampled text from two trained models with the target's
exact two-token distribution; launch.sample --draft, and bad drafts and settings in one line."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lmjax.config import default_config, resolve
from lmjax.infer.decode import Decoder, DecodeError, Sampler
from lmjax.infer.speculative import Speculative, accept, probabilities
from lmjax.train import loop, trained

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(d_model, steps, **data):
  c = default_config()
  c.model.d_model, c.train.steps, c.optim.warmup_steps = d_model, steps, 2
  c.data.seq_len, c.checkpoint.async_save = 64, False
  for k, v in data.items():
    c.data[k] = v
  return resolve(c)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('speculative')
  loop.train(_config(64, 30), str(tmp / 'target'))
  loop.train(_config(32, 12), str(tmp / 'draft'))
  return tmp, trained.load(str(tmp / 'target')), trained.load(str(tmp / 'draft'))


def _prompts():
  return [np.asarray([256, *b'def f(x):\n    return'], np.int32),
          np.asarray([256, *b'import '], np.int32), np.asarray([256], np.int32)]


@pytest.mark.parametrize('k', [1, 4])
def test_greedy_speculative_output_is_plain_greedy_output(models, k):
  _, target, draft = models
  plain = Decoder(target.model, 48, Sampler(0.0), end_id=256)(target.params, _prompts())
  spec = Speculative(target.model, draft.model, 48, k, Sampler(0.0), end_id=256)(
      target.params, draft.params, _prompts())
  np.testing.assert_array_equal(spec.tokens, plain.tokens)
  np.testing.assert_array_equal(spec.lengths, plain.lengths)
  np.testing.assert_allclose(spec.logprobs, plain.logprobs, atol=1e-5)
  assert (spec.accepted <= spec.drafted).all() and (spec.rounds <= 48).all()
  # A draft that is the target accepts every token: k + 1 tokens per target call.
  same = Speculative(target.model, target.model, 48, k, Sampler(0.0))(
      target.params, target.params, _prompts())
  np.testing.assert_array_equal(same.tokens, plain.tokens)
  full = plain.lengths == 48  # rows that ran to max_new_tokens: ceil(48 / (k + 1)) calls
  assert (same.accepted == same.drafted).all()
  assert (same.rounds[full] == -(-48 // (k + 1))).all()


def test_the_acceptance_step_draws_from_the_target_distribution():
  """Context-free p_j and q_j over 5 tokens, k = 3, 40,000 rows: the first token of a round is
  distributed as p_0, the second (in rounds that kept x_0) as p_1, and x_0 is kept with
  probability Σ_v min(p_0, q_0) (Leviathan et al., Sec. 3.3)."""
  rng = np.random.default_rng(0)
  b, k, v = 40_000, 3, 5
  p = rng.dirichlet(np.ones(v), k + 1).astype(np.float32)
  q = rng.dirichlet(np.ones(v), k).astype(np.float32)
  key_x, key_a = jax.random.split(jax.random.PRNGKey(1))
  drafted = jax.random.categorical(key_x, jnp.log(jnp.asarray(q))[None].repeat(b, 0), axis=-1)
  r, tokens = jax.jit(accept)(jnp.broadcast_to(p, (b, k + 1, v)),
                              jnp.broadcast_to(q, (b, k, v)), drafted.astype(jnp.int32), key_a)
  r, tokens = np.asarray(r), np.asarray(tokens)
  expect = lambda probs, count: probs.astype(np.float64) / probs.sum(dtype=np.float64) * count
  first = np.bincount(tokens[:, 0], minlength=v)
  assert stats.chisquare(first, expect(p[0], b)).pvalue > 1e-3
  second = np.bincount(tokens[r >= 1, 1], minlength=v)
  assert stats.chisquare(second, expect(p[1], second.sum())).pvalue > 1e-3
  kept = np.minimum(p[0], q[0]).sum()
  assert abs((r >= 1).mean() - kept) < 4 * np.sqrt(kept * (1 - kept) / b)


def test_sampled_text_follows_the_targets_distribution(models):
  """3,000 samples of two tokens (top-3, temperature 1) from one prompt: the nine pairs'
  frequencies against the target's exact probabilities p(x0)·p(x1 | x0)."""
  _, target, draft = models
  sampler, prompt = Sampler(1.0, top_k=3), np.asarray([256, *b'def '], np.int32)
  n = 3000
  spec = Speculative(target.model, draft.model, 2, 2, sampler)(
      target.params, draft.params, [prompt] * n, seed=7)
  assert 0 < spec.accepted.sum() < spec.drafted.sum()  # the draft is not the target
  first_probs = np.asarray(probabilities(
      target.model.apply({'params': target.params}, prompt[None])[:, -1], sampler))[0]
  support = np.flatnonzero(first_probs)
  expected, observed = [], []
  for x0 in support:
    row = np.append(prompt, x0)[None]
    second = np.asarray(probabilities(
        target.model.apply({'params': target.params}, row)[:, -1], sampler))[0]
    for x1 in np.flatnonzero(second):
      expected.append(first_probs[x0] * second[x1] * n)
      observed.append(np.sum((spec.tokens[:, 0] == x0) & (spec.tokens[:, 1] == x1)))
  assert sum(observed) == n and len(expected) == 9
  expected = np.asarray(expected, np.float64)
  assert stats.chisquare(observed, expected * n / expected.sum()).pvalue > 1e-3


def test_launch_sample_drafts_and_refuses_bad_drafts_in_one_line(models, tmp_path):
  from lmjax.data.tokenizers import byte_tokenizer_json
  from lmjax.infer.samples import SampleInputError, continue_run
  tmp, target, _ = models
  _, rows = continue_run(str(tmp / 'target'), ['def '], draft=str(tmp / 'draft'), draft_k=3,
                         sampler=Sampler(0.0), max_new_tokens=20)
  assert rows[0]['draft_proposed'] > 0 and 0 <= rows[0]['draft_accepted']
  with pytest.raises(DecodeError, match='--draft_k=0 is not allowed'):
    continue_run(str(tmp / 'target'), ['x'], draft=str(tmp / 'draft'), draft_k=0)
  (tmp_path / 'tok').mkdir()
  (tmp_path / 'tok' / 'tokenizer.json').write_text(byte_tokenizer_json())
  other = _config(32, 3, dataset='random', tokenizer='hf', hf_sep_token='<sep>',
                  hf_tokenizer=str(tmp_path / 'tok' / 'tokenizer.json'))
  loop.train(other, str(tmp_path / 'other'))
  with pytest.raises(SampleInputError, match='it reads another tokenizer'):
    continue_run(str(tmp / 'target'), ['x'], draft=str(tmp_path / 'other'))
  wide = default_config()
  wide.model.d_model, wide.model.vocab_size, wide.train.steps = 32, 320, 3
  wide.data.dataset, wide.optim.warmup_steps, wide.checkpoint.async_save = 'random', 1, False
  loop.train(resolve(wide), str(tmp_path / 'wide'))
  with pytest.raises(SampleInputError, match=r'its vocabulary \(320\) is not the target'):
    continue_run(str(tmp / 'target'), ['x'], draft=str(tmp_path / 'wide'))
  cli = subprocess.run([sys.executable, '-m', 'launch.sample', f'--workdir={tmp / "target"}',
                        '--prompt=x', f'--draft={tmp_path / "wide"}'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  lines = cli.stderr.strip().splitlines()
  assert cli.returncode == 2 and len(lines) == 1 and '--draft=' in lines[0], cli.stderr[-800:]
