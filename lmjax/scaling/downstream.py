"""Laws from loss to downstream accuracy, fitted with the user-law machinery (userlaw.py: the
batched L-BFGS from Sobol starts, bootstrap intervals over runs).

- `GADRE`: Err(L) = ε − k·exp(−γ·L), a task's top-1 error against the model's loss (Gadre et
  al. 2024, "Language models scale reliably with over-training and on downstream tasks", Eq. 4):
  the error falls from ε (chance, at high loss) as the loss falls. Fitted to error = 1 − acc.
- `SIGMOID`: Acc(L) = floor + (ceiling − floor)·σ(−s·(L − L₀)), accuracy as a sigmoid of a loss
  (the second step of Llama 3's prediction, Dubey et al. 2024, Sec. 3.2.1 and Fig. 4); `floor`
  may be fixed at chance (1/choices), and `ceiling` is fixed at 1 unless asked to be fitted:
  runs that see only the lower bend of the curve do not pin it (fitted to the main job's, it
  ran off to 10^4).
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


def fit_accuracy(law: str, loss, acc, *, chance=None, ceiling=1.0, bootstrap=1000, seed=0,
                 level=0.95, starts=256) -> LawFit:
  """`law` ('gadre' or 'sigmoid') fitted to runs' losses and accuracies (rows with a missing
  value left out). The sigmoid's floor is fixed at `chance` (1/choices) if given, its ceiling
  at `ceiling` (None: fitted). Gadre's law is fitted to the error 1 − acc, so its prediction
  is an error too."""
  if law not in LAWS:
    raise FitError(f'accuracy law {law!r}: one of {", ".join(LAWS)}')
  loss, acc = _check(loss, acc)
  target = 1.0 - acc if law == 'gadre' else acc
  fixed = None
  if law == 'sigmoid':
    fixed = {k: float(v) for k, v in (('floor', chance), ('ceiling', ceiling)) if v is not None}
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


def two_step(c, loss, acc, *, chance=None, ceiling=1.0, bootstrap=1000, seed=0, level=0.95,
             starts=256) -> TwoStep:
  """L(C) fitted to (c, loss), the sigmoid to (loss, acc); see TwoStep.predict."""
  c = np.asarray(c, np.float64).ravel()
  loss = np.asarray(loss, np.float64).ravel()
  ok = np.isfinite(c) & np.isfinite(loss) & (c > 0)
  loss_fit = fit_law(law_examples.POWER_C, {'C': c[ok]}, loss[ok], bootstrap=bootstrap,
                     seed=seed, level=level, starts=starts)
  acc_fit = fit_accuracy('sigmoid', loss, acc, chance=chance, ceiling=ceiling,
                         bootstrap=bootstrap, seed=seed, level=level, starts=starts)
  return TwoStep(loss_fit, acc_fit)


def column(t, name) -> np.ndarray:
  """A runs table's accuracy column `name` (a tag: the sweeps' collected tables hold task
  metrics as tags, 'nan' where a run has none) as floats; FitError naming it if absent."""
  if name not in t.tags:
    have = sorted(k for k in t.tags if k.startswith('tasks/'))
    raise FitError(f'--accuracy={name}: no such column in {t.source} (task columns: '
                   f'{", ".join(have) or "none; evaluate the runs with launch.harness first"})')
  try:
    return np.asarray([float(v) for v in t.tags[name]], np.float64)
  except ValueError:
    raise FitError(f'--accuracy={name}: not a column of numbers') from None


def fit_table(t, name, *, chance=None, predict_c=(), bootstrap=1000, seed=0, level=0.95) -> dict:
  """Gadre's law, the sigmoid and the two-step prediction of accuracy column `name` of runs
  table `t` against its loss and C; JSON-ready, with the predictions at `predict_c`."""
  acc = column(t, name)
  keep = np.isfinite(acc)
  if keep.sum() < 6:
    raise FitError(f'--accuracy={name}: {int(keep.sum())} runs have it; the laws need at least 6')
  loss, c, acc = t.loss[keep], t.C[keep], acc[keep]
  out = {'column': name, 'loss': 'the runs table\'s loss column', 'runs': int(keep.sum()),
         'chance': chance}
  kw = dict(bootstrap=bootstrap, seed=seed, level=level)
  gadre = fit_accuracy('gadre', loss, acc, **kw)
  sigmoid = fit_accuracy('sigmoid', loss, acc, chance=chance, **kw)
  steps = two_step(c, loss, acc, chance=chance, **kw)
  out['gadre'], out['sigmoid'], out['two_step'] = gadre.to_json(), sigmoid.to_json(), steps.to_json()
  if len(predict_c):
    p = steps.predict(np.asarray(predict_c, np.float64))
    out['predictions'] = [{'C': float(cc), 'loss': float(p['loss'][i]),
                           'accuracy': float(p['value'][i]),
                           **({'lo': float(p['lo'][i]), 'hi': float(p['hi'][i])} if 'lo' in p
                              else {})} for i, cc in enumerate(predict_c)]
  out['_fits'] = (gadre, sigmoid, steps)
  return out


def report_text(result) -> str:
  """The fits of `fit_table` as launch.fit prints them."""
  gadre, sigmoid, steps = result['_fits']
  lines = [f'accuracy {result["column"]} against the loss, {result["runs"]} runs',
           '(Gadre et al. 2024: the error 1 - acc)', gadre.text(), sigmoid.text(),
           'two-step: L(C) = E + A·C^(-alpha), then the sigmoid of L', steps.loss_fit.text()]
  for p in result.get('predictions', ()):
    iv = f' [{p["lo"]:.4f}, {p["hi"]:.4f}]' if 'lo' in p else ''
    lines.append(f'  predicted at C = {p["C"]:.3g}: loss {p["loss"]:.4f}, accuracy '
                 f'{p["accuracy"]:.4f}{iv}')
  return '\n'.join(lines)


def fit_and_write(t, names, out_dir=None, *, chance=None, predict_c=(), bootstrap=1000, seed=0,
                  level=0.95, log=print) -> list:
  """launch.fit --accuracy: each column's fits, printed, and with `out_dir` written to
  downstream.json there (whole or not at all)."""
  import json
  import os

  from lmjax.core import atomic, storage
  results = [fit_table(t, name, chance=chance, predict_c=predict_c, bootstrap=bootstrap,
                       seed=seed, level=level) for name in names]
  for r in results:
    log(report_text(r))
  if out_dir:
    doc = json.dumps([{k: v for k, v in r.items() if k != '_fits'} for r in results], indent=1)
    path = storage.join(out_dir, 'downstream.json')
    if storage.is_remote(out_dir):
      storage.write_text(path, doc)
    else:
      os.makedirs(out_dir, exist_ok=True)
      atomic.write_text(path, doc)
    log(f'wrote {path}')
  return results
