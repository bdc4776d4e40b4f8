"""Scaling-law formulas and published constants; pure float64 functions.

- Kaplan et al. 2020, Eqs. 1.1-1.3: L(N) = (N_c/N)^α_N, L(D) = (D_c/D)^α_D,
  L(C) = (C_c/C)^α_C, optionally plus an irreducible loss E (L = E + ..., as in Henighan et
  al. 2020).
- Hoffmann et al. 2022, Eq. 2: L(N, D) = E + A/N^α + B/D^β.
- Compute-optimal allocation under C = 6ND (Hoffmann et al. 2022, Eq. 4):
  N_opt(C) = G·(C/6)^a, D_opt(C) = G⁻¹·(C/6)^b, G = (αA/(βB))^(1/(α+β)), a = β/(α+β),
  b = α/(α+β).
All evaluated in log space (log-sum-exp), so N^α with N ~ 1e12 never over- or underflows.
"""
from __future__ import annotations

import numpy as np

# Hoffmann et al. 2022, App. D.2: the Approach-3 fit, rounded as printed.
CHINCHILLA_APPROACH3 = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Hoffmann et al. 2022, Table 2: N_opt ∝ C^a, D_opt ∝ C^b per approach (Approach 3 from
# unrounded constants).
CHINCHILLA_EXPONENTS = {'approach1': (0.50, 0.50), 'approach2': (0.49, 0.51),
                        'approach3': (0.46, 0.54)}
# Besiroglu et al. 2024 (Epoch AI), Table 1: their refit of Approach 3 on 240 points
# of Chinchilla's Fig. 4 (Huber likelihood), and bootstrap standard errors (4,000 replicates of
# the summed-Huber fit), to the digits their analysis notebook prints.
EPOCH_APPROACH3 = dict(E=1.81686, A=482.00572, B=2085.43420, alpha=0.34781, beta=0.36585)
EPOCH_APPROACH3_SE = dict(E=0.02566, A=124.52232, B=1293.28410, alpha=0.01540, beta=0.02060)
# Kaplan et al. 2020, Table 6 and Fig. 14: N_opt = 1.3e9·C_min^0.73, C_min in PF-days and N
# without embeddings.
KAPLAN_N_OPT = dict(coef=1.3e9, exponent=0.73, c_unit=1e15 * 86400.0)
# Kaplan et al. 2020, Table 5 (Eqs. 1.1-1.3): fitted constants (N without embeddings, tokens,
# C_min in PF-days).
KAPLAN_2020 = dict(alpha_N=0.076, N_c=8.8e13, alpha_D=0.095, D_c=5.4e13, alpha_C=0.050,
                   C_c_pf_days=3.1e8)


def kaplan_loss(x, x_c, alpha, e=0.0):
  """E + (x_c/x)^α (Kaplan et al. 2020, Eqs. 1.1-1.3), computed as exp(α·(log x_c − log x))."""
  x = np.asarray(x, np.float64)
  return e + np.exp(alpha * (np.log(x_c) - np.log(x)))


def chinchilla_log_loss(n, d, e, a, b, alpha, beta):
  """log(E + A/N^α + B/D^β) in log-sum-exp form, with a = log A, b = log B, e = log E."""
  n = np.asarray(n, np.float64)
  d = np.asarray(d, np.float64)
  with np.errstate(invalid='ignore'):  # inf − inf in a degenerate replicate: NaN
    return np.logaddexp(np.logaddexp(a - alpha * np.log(n), b - beta * np.log(d)), e)


def chinchilla_loss(n, d, E, A, B, alpha, beta):
  """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Eq. 2)."""
  with np.errstate(divide='ignore', invalid='ignore'):  # E = 0 (a degenerate replicate): log 0
    return np.exp(chinchilla_log_loss(n, d, np.log(E), np.log(A), np.log(B), alpha, beta))


def allocation_exponents(alpha, beta):
  """(a, b) = (β/(α+β), α/(α+β)): N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022, Eq. 4)."""
  alpha = np.asarray(alpha, np.float64)
  beta = np.asarray(beta, np.float64)
  return beta / (alpha + beta), alpha / (alpha + beta)


def allocation_g(A, B, alpha, beta):
  """G = (αA/(βB))^(1/(α+β)) (Hoffmann et al. 2022, Eq. 4)."""
  A, B, alpha, beta = (np.asarray(v, np.float64) for v in (A, B, alpha, beta))
  with np.errstate(divide='ignore', invalid='ignore'):  # a replicate with α or β <= 0: NaN
    return np.exp((np.log(alpha * A) - np.log(beta * B)) / (alpha + beta))


def compute_optimal(c, A, B, alpha, beta):
  """(N_opt, D_opt) at FLOPs c under C = 6ND (Hoffmann et al. 2022, Eq. 4).

  Broadcasts: c (..., m) against parameter arrays (..., 1) gives (..., m).
  """
  c = np.asarray(c, np.float64)
  a, b = allocation_exponents(alpha, beta)
  g = allocation_g(A, B, alpha, beta)
  log_c6 = np.log(c / 6.0)
  return g * np.exp(a * log_c6), np.exp(b * log_c6) / g


def kaplan_n_opt(c):
  """Kaplan et al. 2020 (Table 6): N_opt = 1.3e9·(C/PF-day)^0.73, non-embedding parameters."""
  k = KAPLAN_N_OPT
  return k['coef'] * (np.asarray(c, np.float64) / k['c_unit']) ** k['exponent']


def power_law_fit(log_x, log_y, weights=None):
  """Least squares of log y = log k + p·log x: returns (p, log k); weights per point."""
  log_x = np.asarray(log_x, np.float64)
  log_y = np.asarray(log_y, np.float64)
  w = np.ones_like(log_x) if weights is None else np.asarray(weights, np.float64)
  xm = np.sum(w * log_x) / np.sum(w)
  ym = np.sum(w * log_y) / np.sum(w)
  p = np.sum(w * (log_x - xm) * (log_y - ym)) / np.sum(w * (log_x - xm) ** 2)
  return float(p), float(ym - p * xm)
