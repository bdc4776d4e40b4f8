"""Published laws written as user-defined laws (userlaw.Law), and the data-constrained example.

- `KAPLAN_ND`: Kaplan et al. 2020, Eq. 1.5, L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D.
- `POWER_C`: L(C) = E + A·C^(−α), the compute law with an irreducible term E > 0; pin E with
  fixed={'E': ...} (e.g. a Chinchilla fit's) or let it float.
- `DATA_CONSTRAINED`: Muennighoff et al. 2023 (arXiv:2305.16264), Eqs. 5-7: the Chinchilla law
  with effective data D' = U_D + U_D·R_D*·(1 − exp(−R_D/R_D*)) and effective parameters
  N' = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*)), where U_D = U (unique tokens), R_D = D/U − 1
  (repetitions), U_N = min(N, N_opt(U)) and R_N = N/U_N − 1, N_opt(U) the compute-optimal size
  for U tokens under the base law (Hoffmann et al. 2022, Eq. 4). Inputs N, D, U.

The datablations example reads `datablations_runs.csv` (lmjax's copy of the runs that
huggingface/datablations' utils/parametric_fit.ipynb fits; see that file's README) and keeps the
182 runs of the notebook's "Custom data loading with outliers removed" cell: runs without a seed
or variant suffix, less the 48 it leaves out (`DATABLATIONS_LEFT_OUT`). The base constants are
those the repository's README publishes for C4 (`DATABLATIONS_BASE`), held fixed as they were.
"""
from __future__ import annotations

import csv
import math

import numpy as np

from lmjax.scaling.userlaw import Law, Param


def _kaplan_nd(p, x):
  return ((p.N_c / x.N) ** (p.alpha_N / p.alpha_D) + p.D_c / x.D) ** p.alpha_D


KAPLAN_ND = Law('kaplan_nd', _kaplan_nd, inputs=('N', 'D'),
                params=dict(N_c=Param(1e3, 1e16, log=True), D_c=Param(1e3, 1e16, log=True),
                            alpha_N=Param(0.02, 1.0), alpha_D=Param(0.02, 1.0)),
                doc='Kaplan et al. 2020, Eq. 1.5')


def _power_c(p, x):
  return p.E + p.A * x.C ** (-p.alpha)


POWER_C = Law('power_c', _power_c, inputs=('C',),
              params=dict(E=Param(0.05, 3.0, log=True), A=Param(1.0, 1e8, log=True),
                          alpha=Param(0.02, 1.0)),
              doc='L(C) = E + A·C^(-alpha)')


def n_opt_of_tokens(u, A, B, alpha, beta):
  """N_opt(U) = G·(G·U)^(β/α), the compute-optimal size for U tokens under the base law:
  N_opt(C) = G·(C/6)^(β/(α+β)) and D_opt(C) = (C/6)^(α/(α+β))/G (Hoffmann et al. 2022, Eq. 4)
  give C/6 = (G·U)^((α+β)/α) for D_opt = U."""
  g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
  return g * (g * u) ** (beta / alpha)


def _data_constrained(p, x):
  u_n = np.minimum(x.N, n_opt_of_tokens(x.U, p.A, p.B, p.alpha, p.beta))
  r_n = np.maximum(x.N / u_n - 1.0, 0.0)
  r_d = np.maximum(x.D / x.U - 1.0, 0.0)
  n_eff = u_n * (1.0 + p.R_N_star * (1.0 - np.exp(-r_n / p.R_N_star)))
  d_eff = x.U * (1.0 + p.R_D_star * (1.0 - np.exp(-r_d / p.R_D_star)))
  return p.E + p.A / n_eff ** p.alpha + p.B / d_eff ** p.beta


DATA_CONSTRAINED = Law(
    'data_constrained', _data_constrained, inputs=('N', 'D', 'U'),
    params=dict(E=Param(1.0, 3.0), A=Param(10.0, 1e4, log=True), B=Param(10.0, 1e4, log=True),
                alpha=Param(0.1, 0.8), beta=Param(0.1, 0.8),
                R_D_star=Param(1.0, 200.0, log=True), R_N_star=Param(0.5, 200.0, log=True)),
    doc='Muennighoff et al. 2023, Eqs. 5-7')

# huggingface/datablations README, "Parametric Fit": the C4 base fit (a, b, e natural logs of A,
# B, E; alpha tied to beta) and the decay constants fitted with it held fixed.
_A, _B, _E, _S = 6.255414, 7.3049974, 0.6254804, 0.3526596
DATABLATIONS_BASE = dict(A=math.exp(_A), B=math.exp(_B), E=math.exp(_E), alpha=_S, beta=_S)
DATABLATIONS_PUBLISHED = dict(R_D_star=15.387756, R_N_star=5.309743)
# The notebook's fit cell prints this minimum of its objective (summed Huber, δ = 1e-3, on log
# loss, float32) at the published constants, over 182 runs.
DATABLATIONS_NOTEBOOK_OBJECTIVE = 0.015825936570763588
# The notebook's starts for (R_D*, R_N*): np.linspace(0, 20, 4) each; those with a 0 give NaN.
DATABLATIONS_NOTEBOOK_STARTS = [dict(R_D_star=a, R_N_star=b) for a in (20 / 3, 40 / 3, 20.0)
                                for b in (20 / 3, 40 / 3, 20.0)]
# Runs without a suffix that the notebook's cell leaves out (commented out or absent there).
DATABLATIONS_LEFT_OUT = frozenset('''
2b84b4b 2b88b4b 2b812b4b 2b816b4b 2b824b4b 2b855b1b25 4b212b12b 4b224b12b 4b284b1b9 4b284b6b
2b8100m100m 14m7b5100m 14m300b100m 1b12b7100m 1b13b9100m 1b15b9100m 1b17b5100m 619m3b9100m
619m5b9100m 619m7b5100m 2b84b8100m 1b58b8100m 1b112b100m 619m22b100m 421m300b1b5 221m91b400m
221m174b400m 221m600b400m 8b712b12b 8b712b1b5 8b712b400m 8b712b100m 3b926b1b5 2b836b1b5
2b836b400m 2b836b100m 2b246b400m 2b246b100m 1b566b1b5 1b566b100m 1b191b400m 1b191b1b5
1b1250b1b5 1b5174b1b5 2b291b1b5 2b2174b1b5 8b720b1b5 2b877b1b5
'''.split())


def datablations_runs(path: str) -> tuple[dict, np.ndarray, list]:
  """The 182 runs the datablations notebook fits, from datablations_runs.csv: (inputs {N, D, U},
  val_loss, run names)."""
  with open(path, newline='') as f:
    rows = [r for r in csv.DictReader(f)
            if r['run_name'] == r['name_stripped'] and r['run_name'] not in DATABLATIONS_LEFT_OUT]
  x = {k: np.array([float(r[c]) for r in rows]) for k, c in
       (('N', 'params'), ('D', 'tokens'), ('U', 'unique_tokens'))}
  return x, np.array([float(r['val_loss']) for r in rows]), [r['run_name'] for r in rows]
