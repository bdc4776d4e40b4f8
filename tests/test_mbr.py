"""Minimum Bayes risk decoding (lmjax/infer/mbr.py): the utilities equal the reference
implementations (sacrebleu's chrF, rouge_score's ROUGE-1), hand-made candidate sets give their
known winners, and launch.sample --mbr keeps the sample of highest expected utility."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from lmjax.infer import mbr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ['def', 'return', 'x', 'self', 'None', 'if', 'else', 'for', 'in', 'range(', ')', ':',
         '1', '2', 'a_b', 'Foo', 'bar', 'é', '==']


def _strings(n, seed):
  rng = random.Random(seed)
  return [' '.join(rng.choice(WORDS) for _ in range(rng.randint(0, 9))) for _ in range(n)]


def test_the_utilities_equal_sacrebleu_and_rouge_score():
  sacrebleu = pytest.importorskip('sacrebleu.metrics')
  rouge_scorer = pytest.importorskip('rouge_score.rouge_scorer')
  chrf, rouge = sacrebleu.CHRF(), rouge_scorer.RougeScorer(['rouge1'])
  for a, b in zip(_strings(300, 0), _strings(300, 1)):
    assert mbr.chrf(a, b) == pytest.approx(chrf.sentence_score(a, [b]).score / 100, abs=1e-12)
    assert mbr.rouge1(a, b) == pytest.approx(rouge.score(b, a)['rouge1'].fmeasure, abs=1e-12)


def test_hand_made_candidate_sets_give_their_known_winners():
  # Duplicates agree most: 'a b c' scores (1 + 2/3 + 0) / 3 under ROUGE-1, the first of equals.
  chosen, scores = mbr.select(['a b c', 'a b c', 'a b d', 'x y z'], 'rouge1')
  assert chosen == 0 and scores[0] == pytest.approx(5 / 9) and scores[3] == 0
  # Nested candidates of 2..5 words: F1 = 2·min/(m + n); the medoid is the 4-word one.
  nested = ['a b', 'a b c', 'a b c d', 'a b c d e']
  f = lambda m, n: 2 * min(m, n) / (m + n)
  want = [np.mean([f(m, n) for n in range(2, 6) if n != m]) for m in range(2, 6)]
  chosen, scores = mbr.select(nested, 'rouge1')
  assert chosen == 2 and np.allclose(scores, want)
  # chrF: the string nearest all others by characters, not by words.
  chosen, _ = mbr.select(['abcdef', 'abcdeg', 'abcdef', 'zzzzzz'], 'chrf')
  assert chosen == 0
  assert mbr.chrf('', 'abc') == mbr.rouge1('', 'abc') == 0.0


def test_bad_settings_are_one_line():
  with pytest.raises(mbr.MbrError, match='--mbr_utility=bleu is not allowed: one of rouge1, chrf'):
    mbr.check(4, 'bleu')
  with pytest.raises(mbr.MbrError, match='--mbr=1 is not allowed'):
    mbr.check(1, 'chrf')
  with pytest.raises(mbr.MbrError, match='--mbr and --beam are exclusive'):
    mbr.check(4, 'chrf', beam=2)


@pytest.mark.slow
def test_launch_sample_keeps_the_sample_of_highest_expected_utility(tmp_path):
  from lmjax.config import default_config, resolve
  from lmjax.infer.samples import sample_run
  from lmjax.train import loop
  c = default_config()
  c.data.dataset, c.train.steps, c.optim.warmup_steps = 'random', 4, 1
  c.checkpoint.async_save = False
  workdir = str(tmp_path / 'run')
  loop.train(resolve(c), workdir)
  out = sample_run(workdir, ['def f(', 'x = '], output=str(tmp_path / 's.jsonl'), seed=3,
                   max_new_tokens=12, mbr=5, mbr_utility='chrf', log=lambda _: None)
  import json
  rows = [json.loads(line) for line in open(out)]
  assert len(rows) == 2
  for row in rows:
    scores = mbr.expected_utilities(row['mbr_candidates'], 'chrf')
    assert len(row['mbr_candidates']) == 5 and row['mbr_chosen'] == int(np.argmax(scores))
    assert row['text'] == row['mbr_candidates'][row['mbr_chosen']]
    np.testing.assert_allclose(row['mbr_expected_utility'], scores, atol=1e-6)
  cli = subprocess.run([sys.executable, '-m', 'launch.sample', f'--workdir={workdir}',
                        '--prompt=x', '--mbr=4', '--mbr_utility=bleu'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  lines = cli.stderr.strip().splitlines()
  assert cli.returncode == 2 and len(lines) == 1 and '--mbr_utility=bleu' in lines[0]
