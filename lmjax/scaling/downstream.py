"""Laws from loss to downstream accuracy, fitted with the user-law machinery (userlaw.py: the
batched L-BFGS from Sobol starts, bootstrap intervals over runs).

- `GADRE`: Err(L) = ε − k·exp(−γ·L), a task's top-1 error against the model's loss (Gadre et
  al. 2024, "Language models scale reliably with over-training and on downstream tasks", Eq. 4):
  the error falls from ε (chance, at high loss) as the loss falls. Fitted to error = 1 − acc.
- `SIGMOID`: Acc(L) = floor + (ceiling − floor)·σ(−s·(L − L₀)), accuracy as a sigmoid of a loss
  (the second step of Llama 3's prediction, Dubey et al. 2024, Sec. 3.2.1 and Fig. 4); `floor`
  may be fixed at chance (1/choices).
- `two_step(C, loss, acc)`: compute → loss → accuracy. L(C) = E + A·C^(−α) (law_examples.
  POWER_C) fitted to the runs' (C, loss), the sigmoid fitted to their (loss, accuracy), and a
  prediction at new C that composes the two: its interval pairs the bootstrap replicates of the
  two fits, replicate i of the one with replicate i of the other. Llama 3 uses the negative
  log-likelihood of the task's correct answers as the loss; lmjax uses what the runs table holds
  (the held-out loss of the corpus by default, or a task's own column such as
  tasks/stdlib_bpb/bits_per_byte), stated in each fit.
Accuracies are fitted by least squares on the values themselves (objective 'lsq'): they are
bounded, not spread over decades as losses are.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lmjax.scaling import law_examples
from lmjax.scaling.parametric import FitError
from lmjax.scaling.userlaw import Law, LawFit, Param, fit_law


def _gadre(p, x):
  return p.eps - p.k * np.exp(-p.gamma * x.L)


def _sigmoid(p, x):
  return p.floor + (p.ceiling - p.floor) / (1.0 + np.exp(p.s * (x.L - p.L0)))


GADRE = Law('gadre', _gadre, inputs=('L',),
            params=dict(eps=Param(0.3, 1.0), k=Param(1e-2, 1e3, log=True),
                        gamma=Param(0.05, 5.0, log=True)),
            doc='Gadre et al. 2024, Eq. 4: top-1 error = eps - k exp(-gamma L)')
SIGMOID = Law('sigmoid', _sigmoid, inputs=('L',),
              params=dict(floor=Param(0.0, 0.5), ceiling=Param(0.5, 1.0),
                          s=Param(0.5, 20.0, log=True), L0=Param(0.5, 5.0)),
              doc='Llama 3 (Dubey et al. 2024), Sec. 3.2.1: accuracy = sigmoid of loss')
LAWS = {'gadre': GADRE, 'sigmoid': SIGMOID}


def _check(loss, acc):
  loss, acc = np.asarray(loss, np.float64).ravel(), np.asarray(acc, np.float64).ravel()
  if loss.shape != acc.shape:
    raise FitError(f'{loss.size} losses for {acc.size} accuracies')
  keep = np.isfinite(loss) & np.isfinite(acc)
  if (acc[keep] < 0).any() or (acc[keep] > 1).any():
    raise FitError('accuracies must lie in [0, 1]')
  return loss[keep], acc[keep]


def fit_accuracy(law: str, loss, acc, *, chance=None, bootstrap=1000, seed=0, level=0.95,
                 starts=256) -> LawFit:
  """`law` ('gadre' or 'sigmoid') fitted to runs' losses and accuracies (rows with a missing
  value left out). `chance`: the sigmoid's floor fixed at it (1/choices), else fitted. Gadre's
  law is fitted to the error 1 − acc, so its prediction is an error too."""
  if law not in LAWS:
    raise FitError(f'accuracy law {law!r}: one of {", ".join(LAWS)}')
  loss, acc = _check(loss, acc)
  target = 1.0 - acc if law == 'gadre' else acc
  fixed = {'floor': float(chance)} if law == 'sigmoid' and chance is not None else None
  if (target <= 0).any():
    raise FitError(f'law {law}: a run with {"accuracy 1" if law == "gadre" else "accuracy 0"}; '
                   'the fit needs values strictly inside (0, 1)')
  return fit_law(LAWS[law], {'L': loss}, target, objective='lsq', fixed=fixed,
                 bootstrap=bootstrap, seed=seed, level=level, starts=starts)


@dataclasses.dataclass
class TwoStep:
  """Compute → loss → accuracy (module doc)."""
  loss_fit: LawFit       # L(C)
  acc_fit: LawFit        # accuracy(L), the sigmoid

  def predict(self, c, level=None) -> dict:
    """Accuracy at compute `c`: value (m,), the loss it goes through, and lo, hi (the paired
    bootstrap interval at `level`, default the fits') when both fits were bootstrapped."""
    c = np.atleast_1d(np.asarray(c, np.float64))
    loss = self.loss_fit.predict({'C': c})['value']
    out = dict(value=self.acc_fit.predict({'L': loss})['value'], loss=loss)
    a, b = self.loss_fit.boot, self.acc_fit.boot
    if a is not None and b is not None:
      level = self.acc_fit.settings['level'] if level is None else level
      r = min(len(a['theta']), len(b['theta']))
      losses = self.loss_fit.problem.predict(a['theta'][:r], {'C': c})  # (r, m)
      samples = np.stack([self.acc_fit.problem.predict(b['theta'][i:i + 1], {'L': losses[i]})[0]
                          for i in range(r)])
      with np.errstate(invalid='ignore'):
        out['lo'], out['hi'] = np.nanpercentile(
            np.where(np.isfinite(samples), samples, np.nan),
            [50 * (1 - level), 50 * (1 + level)], axis=0)
    return out

  def to_json(self) -> dict:
    return {'loss_of_compute': self.loss_fit.to_json(), 'accuracy_of_loss': self.acc_fit.to_json()}


def two_step(c, loss, acc, *, chance=None, bootstrap=1000, seed=0, level=0.95,
             starts=256) -> TwoStep:
  """L(C) fitted to (c, loss), the sigmoid to (loss, acc); see TwoStep.predict."""
  c = np.asarray(c, np.float64).ravel()
  loss = np.asarray(loss, np.float64).ravel()
  ok = np.isfinite(c) & np.isfinite(loss) & (c > 0)
  loss_fit = fit_law(law_examples.POWER_C, {'C': c[ok]}, loss[ok], bootstrap=bootstrap,
                     seed=seed, level=level, starts=starts)
  acc_fit = fit_accuracy('sigmoid', loss, acc, chance=chance, bootstrap=bootstrap, seed=seed,
                         level=level, starts=starts)
  return TwoStep(loss_fit, acc_fit)
