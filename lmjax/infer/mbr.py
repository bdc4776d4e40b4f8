"""Minimum Bayes risk decoding (Kumar and Byrne 2004; for sampled candidates, Eikema and Aziz
2020): of N candidates drawn from the model, choose the one with the highest expected utility
against the others, E_y[U(c, y)] estimated by (1 / (N − 1)) Σ_{j ≠ i} U(c_i, c_j), the samples
standing in for the model's distribution. Utilities by name (`UTILITIES`), each in [0, 1]:

- 'rouge1': ROUGE-1 F1 (Lin 2004), the harmonic mean of unigram precision and recall over
  tokens that are runs of lower-cased letters and digits (rouge_score's tokenisation, no
  stemming);
- 'chrf': chrF (Popović 2015), the F-score with β = 2 of character n-gram precision and recall
  averaged over the orders n = 1..6 that both strings have, whitespace removed (sacrebleu's
  default `CHRF()`, divided by 100).
Jax-free; `select` works on any strings.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from lmjax.core.errors import LmjaxError


class MbrError(LmjaxError, ValueError):
  """An MBR setting that is not allowed; one line naming the flag."""


def _words(text: str) -> list[str]:
  return re.sub(r'[^a-z0-9]+', ' ', text.lower()).split()


def rouge1(candidate: str, reference: str) -> float:
  """ROUGE-1 F1 of `candidate` against `reference` (module doc)."""
  c, r = Counter(_words(candidate)), Counter(_words(reference))
  overlap = sum((c & r).values())
  if not overlap:
    return 0.0
  precision, recall = overlap / sum(c.values()), overlap / sum(r.values())
  return 2 * precision * recall / (precision + recall)


def chrf(candidate: str, reference: str, order: int = 6, beta: float = 2.0) -> float:
  """chrF of `candidate` against `reference` in [0, 1] (module doc)."""
  c, r = ''.join(candidate.split()), ''.join(reference.split())
  precisions, recalls = [], []
  for n in range(1, order + 1):
    cn = Counter(c[i:i + n] for i in range(len(c) - n + 1))
    rn = Counter(r[i:i + n] for i in range(len(r) - n + 1))
    if cn and rn:  # the orders both strings have (sacrebleu's effective order)
      match = sum((cn & rn).values())
      precisions.append(match / sum(cn.values()))
      recalls.append(match / sum(rn.values()))
  if not precisions:
    return 0.0
  p, rec = float(np.mean(precisions)), float(np.mean(recalls))
  if p + rec == 0:
    return 0.0
  return (1 + beta ** 2) * p * rec / (beta ** 2 * p + rec)


UTILITIES = {'rouge1': rouge1, 'chrf': chrf}


def check(n: int, utility: str, beam: int = 0):
  if utility not in UTILITIES:
    raise MbrError(f'--mbr_utility={utility} is not allowed: one of {", ".join(UTILITIES)}')
  if n and n < 2:
    raise MbrError(f'--mbr={n} is not allowed: 0 (off) or at least 2 candidates')
  if n and beam:
    raise MbrError('--mbr and --beam are exclusive: MBR chooses among sampled candidates')


def expected_utilities(candidates: list[str], utility: str) -> np.ndarray:
  """(N,) each candidate's mean utility against the other N − 1."""
  u = UTILITIES[utility]
  n = len(candidates)
  scores = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if i != j:
        scores[i, j] = u(candidates[i], candidates[j])
  return scores.sum(1) / max(n - 1, 1)


def select(candidates: list[str], utility: str) -> tuple[int, np.ndarray]:
  """(the index of the candidate of highest expected utility, the first among equals; every
  candidate's expected utility)."""
  if not candidates:
    raise MbrError('no candidates to choose from')
  scores = expected_utilities(candidates, utility)
  return int(np.argmax(scores)), scores
