"""Fitting objectives for power laws in log-sum-exp form, vectorised over many parameter sets.

Every parametric law here is, in log space (Hoffmann et al. 2022, Eq. 3 and App. D.2),

    log L̂ = LSE(a_1 − α_1·log x_1, ..., a_K − α_K·log x_K [, e]),

with LSE(z) = log Σ exp(z), A_k = exp(a_k), E = exp(e):
- Chinchilla L(N, D) = E + A/N^α + B/D^β: K = 2, x = (N, D), with e (Hoffmann Eq. 2);
- Kaplan L(X) = (X_c/X)^α_X: K = 1, a = α·log X_c, without e, or with e for L = E + (X_c/X)^α
  (Kaplan et al. 2020, Eqs. 1.1-1.3; the irreducible term as in Henighan et al. 2020).

Objectives, on r_i = log L_i − log L̂_i with run weights w_i (bootstrap counts, or 1):
- 'huber': Σ w_i·Huber_δ(r_i) (Hoffmann et al. 2022, Eq. 3; δ = 1e-3), Huber_δ(r) = r²/2 for
  |r| ≤ δ, δ(|r| − δ/2) beyond;
- 'huber_nll': the negative log-likelihood of r_i under the Huber density with scale σ,
  Σ w_i [Huber_δ(r_i/σ) + log σ] + Σ w_i·log Z_δ, Z_δ = √(2π)(1 − 2Φ(−δ)) + 2e^(−δ²/2)/δ
  (Besiroglu et al. 2024 and their analysis notebook), with s = log σ fitted too.
`reduction='mean'` divides by Σ w_i; it changes no optimum, only the objective's scale.

Internally the features are centred, log x_k − m_k, and a_k is replaced by a_k − α_k·m_k: the
same model, but a_k and α_k are no longer nearly collinear, which the optimiser needs. Natural
parameter vectors are [a_1..a_K, α_1..α_K, (e), (s)].
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

OBJECTIVES = ('huber', 'huber_nll')
REDUCTIONS = ('sum', 'mean')
_BLOCK_ELEMENTS = 1 << 16  # elements per block of problems in value_and_grad


def huber(r, delta):
  """Huber_δ(r) = r²/2 if |r| ≤ δ else δ(|r| − δ/2) (Huber 1964; Hoffmann et al. 2022, Eq. 3)."""
  psi = np.clip(r, -delta, delta)
  return psi * (r - 0.5 * psi)


def huber_log_normaliser(delta):
  """log Z_δ, the normaliser of the density exp(−Huber_δ(r)) (Besiroglu et al. 2024)."""
  tail = math.erfc(delta / math.sqrt(2.0))  # 2Φ(−δ)
  return math.log(math.sqrt(2 * math.pi) * (1 - tail) + 2 * math.exp(-0.5 * delta ** 2) / delta)


@dataclasses.dataclass(frozen=True)
class LseProblem:
  """Data and settings of one log-sum-exp fit; see the module doc."""
  log_x: np.ndarray            # (K, n) log of the K inputs per run
  log_loss: np.ndarray         # (n,)
  with_e: bool
  delta: float = 1e-3
  objective: str = 'huber'
  reduction: str = 'sum'

  def __post_init__(self):
    if self.objective not in OBJECTIVES:
      raise ValueError(f'objective={self.objective!r}: allowed {", ".join(OBJECTIVES)}')
    if self.reduction not in REDUCTIONS:
      raise ValueError(f'reduction={self.reduction!r}: allowed {", ".join(REDUCTIONS)}')
    if not self.delta > 0:
      raise ValueError(f'huber delta={self.delta!r}: must be > 0')
    object.__setattr__(self, 'log_x', np.atleast_2d(np.asarray(self.log_x, np.float64)))
    object.__setattr__(self, 'log_loss', np.asarray(self.log_loss, np.float64))
    object.__setattr__(self, '_center', self.log_x.mean(1))
    xc = self.log_x - self._center[:, None]
    object.__setattr__(self, '_xc', xc)
    # [1, x_j − m_j] rows: a_j − α_j·x_j for every problem is one (B, 2) @ (2, n) product.
    object.__setattr__(self, '_design', [np.stack([np.ones_like(x), x]) for x in xc])

  @property
  def k(self) -> int:
    return self.log_x.shape[0]

  @property
  def n_params(self) -> int:
    return 2 * self.k + self.with_e + (self.objective == 'huber_nll')

  def objective_floor(self) -> float:
    """The objective when every residual is 1e-12: below this, float64 cannot tell fits apart.

    Relative tolerances are taken against max(|F|, floor), so that a fit to exact data (F → 0)
    counts as converged.
    """
    if self.objective == 'huber_nll':
      return 0.0
    per_run = 0.5 * 1e-12 ** 2
    return per_run if self.reduction == 'mean' else per_run * self.log_loss.size

  def to_internal(self, theta):
    """Natural [a, α, e, s] rows to centred ones (a_k − α_k·m_k)."""
    t = np.array(theta, np.float64, ndmin=2)
    k = self.k
    t[:, :k] = t[:, :k] - t[:, k:2 * k] * self._center
    return t

  def to_natural(self, theta):
    t = np.array(theta, np.float64, ndmin=2)
    k = self.k
    t[:, :k] = t[:, :k] + t[:, k:2 * k] * self._center
    return t

  def predict_log(self, theta_natural, log_x=None):
    """log L̂ for natural parameter rows (B, P) at log inputs (K, m): (B, m)."""
    t = np.array(theta_natural, np.float64, ndmin=2)
    lx = self.log_x if log_x is None else np.atleast_2d(np.asarray(log_x, np.float64))
    k = self.k
    z = [t[:, j, None] - t[:, k + j, None] * lx[j] for j in range(k)]
    if self.with_e:
      z.append(np.broadcast_to(t[:, 2 * k, None], z[0].shape))
    return np.logaddexp.reduce(np.stack(z), axis=0) if len(z) > 1 else z[0]

  def value_and_grad(self, theta, weights=None):
    """Objective and gradient at centred parameter rows theta (B, P).

    weights: None (all 1), (n,) shared, or (B, n) one row per problem. Non-finite values mean
    the point is out of reach (the optimiser's line search steps back).
    """
    t = np.asarray(theta, np.float64)
    # Blocks of about 64k elements keep the temporaries in cache and off fresh mmap pages;
    # one (4500, 240) block is about 7x slower than 18 blocks of 256 rows on a 2-core EPYC.
    rows = max(1, _BLOCK_ELEMENTS // max(1, self.log_loss.size))
    per_row = weights is not None and np.ndim(weights) == 2
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
      if len(t) <= rows:
        return self._value_and_grad(t, weights)
      f, g = np.empty(len(t)), np.empty(t.shape)
      for i in range(0, len(t), rows):
        w = weights[i:i + rows] if per_row else weights
        f[i:i + rows], g[i:i + rows] = self._value_and_grad(t[i:i + rows], w)
      return f, g

  def _value_and_grad(self, t, weights):
    k, y, xc = self.k, self.log_loss, self._xc
    a, alpha = t[:, :k], t[:, k:2 * k]
    e = t[:, 2 * k] if self.with_e else None
    if k == 1 and e is None:  # log L̂ is linear: no log-sum-exp
      coef = np.stack([a[:, 0], -alpha[:, 0]], 1)
      pred = coef @ self._design[0]
      return self._finish(t, np.subtract(y, pred, out=pred), None, None, None, weights)
    # Each term a_j − α_j·x_j is shifted by m, the largest term over runs (or e), for a stable
    # log-sum-exp; a linear function of x is largest at an end of x's range.
    top = a - np.minimum(alpha * xc.min(1), alpha * xc.max(1))
    m = np.max(top, 1) if e is None else np.maximum(np.max(top, 1), e)
    parts = []
    for j in range(k):
      coef = np.stack([a[:, j] - m, -alpha[:, j]], 1)
      p = coef @ self._design[j]
      parts.append(np.exp(p, out=p))
    total = parts[0].copy()
    for p in parts[1:]:
      total += p
    e_part = None
    if e is not None:
      e_part = np.exp(e - m)[:, None]
      total += e_part
    lost = ~(total.min(1) > 1e-200)
    if lost.any():  # terms spread over more than ~460 nats: redo those problems per run
      return self._per_run(t, weights, lost, xc)
    pred = np.log(total)
    pred += m[:, None]
    return self._finish(t, np.subtract(y, pred, out=pred), parts, e_part, total, weights)

  def _per_run(self, t, weights, lost, xc):
    """value_and_grad with the log-sum-exp shift chosen per run (extreme parameters only)."""
    f, g = np.empty(len(t)), np.empty(t.shape)
    pick = lambda w, rows: w if w is None or np.ndim(w) == 1 else w[rows]
    ok = ~lost
    if ok.any():
      f[ok], g[ok] = self._value_and_grad(t[ok], pick(weights, ok))
    tl, k = t[lost], self.k
    z = [tl[:, j, None] - tl[:, k + j, None] * xc[j] for j in range(k)]
    if self.with_e:
      z.append(np.broadcast_to(tl[:, 2 * k, None], z[0].shape))
    m = np.max(z, axis=0)
    ex = [np.exp(zj - m) for zj in z]
    total = sum(ex)
    r = self.log_loss - (m + np.log(total))
    e_part = ex[k] if self.with_e else None
    f[lost], g[lost] = self._finish(tl, r, ex[:k], e_part, total, pick(weights, lost))
    return f, g

  def _finish(self, t, r, parts, e_part, total, weights):
    """Objective and gradient from residuals r = log L − log L̂ and the softmax parts."""
    nll = self.objective == 'huber_nll'
    if nll:
      r = r * np.exp(-t[:, -1])[:, None]  # u = r/σ
    psi = np.clip(r, -self.delta, self.delta)
    # Huber_δ(r) = ψ·(r − ψ/2) with ψ = clip(r, −δ, δ), summed as ψ·r − ψ²/2 without temporaries.
    if weights is None:
      wsum = np.full(len(t), float(r.shape[1]))
      f = np.einsum('bn,bn->b', psi, r) - 0.5 * np.einsum('bn,bn->b', psi, psi)
      c = psi
    else:
      w = np.broadcast_to(np.asarray(weights, np.float64), r.shape)
      wsum = w.sum(1)
      c = w * psi
      f = np.einsum('bn,bn->b', c, r) - 0.5 * np.einsum('bn,bn->b', c, psi)
    # c·(part/total) = −dF/dz_j, the derivative through log L̂ = log Σ exp(z_j) (σ aside).
    scale = np.exp(-t[:, -1]) if nll else np.ones(len(t))
    if total is None:
      sums = c @ self._design[0].T                                     # (B, 2): Σc, Σc·x
      grads = [-sums[:, 0] * scale, sums[:, 1] * scale]
    else:
      c = np.divide(c, total, out=total)
      sums = [np.multiply(c, p, out=p) @ self._design[j].T for j, p in enumerate(parts)]
      grads = [-sj[:, 0] * scale for sj in sums] + [sj[:, 1] * scale for sj in sums]
      if e_part is not None:
        ce = c.sum(1) * e_part[:, 0] if e_part.shape[1] == 1 else np.sum(c * e_part, 1)
        grads.append(-ce * scale)
    if nll:
      f = f + wsum * (t[:, -1] + huber_log_normaliser(self.delta))
      pu = np.einsum('bn,bn->b', psi, r) if weights is None else np.einsum('bn,bn,bn->b', w, psi, r)
      grads.append(wsum - pu)
    g = np.stack(grads, 1)
    if self.reduction == 'mean':
      f, g = f / wsum, g / wsum[:, None]
    return f, g
