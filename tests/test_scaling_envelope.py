from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import envelope, laws, table

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')
P = laws.CHINCHILLA_APPROACH3


def test_lower_envelope():
  x = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
  loss = np.array([5.0, 4.0, 3.0, 3.5, 2.0, 2.0])
  assert envelope.lower_envelope(x, loss).tolist() == [True, False, True, False, True, False]


def _curves(sizes=np.geomspace(3e7, 3e10, 16), checkpoints=40):
  """Loss curves of runs that each train up to 1e23 FLOPs, losses from Chinchilla's law."""
  n, d, loss, run = [], [], [], []
  for i, size in enumerate(sizes):
    ds = np.geomspace(1e8, 1e23 / (6 * size), checkpoints)
    n += [size] * checkpoints
    d += list(ds)
    loss += list(laws.chinchilla_loss(size, ds, **P))
    run += [f'r{i}'] * checkpoints
  return table.from_columns(dict(N=n, D=d, loss=loss, run=run))


def test_approach1_recovers_the_allocation_exponent():
  t = _curves()
  fit = envelope.approach1(t, ['run'], n_grid=600)
  a, b = laws.allocation_exponents(P['alpha'], P['beta'])
  assert fit.n_runs == 16
  # Tolerance 0.03: only 16 sizes, so N_opt(C) is a staircase around the true line.
  assert fit.a == pytest.approx(a, abs=0.03)
  assert fit.b == pytest.approx(b, abs=0.03)
  assert len(set(fit.run.tolist())) >= 8


def test_approach1_errors():
  t = _curves(sizes=[1e8], checkpoints=5)
  with pytest.raises(envelope.EnvelopeError, match='1 run\\(s\\) with at least 2 checkpoints'):
    envelope.approach1(t, ['run'])
  with pytest.raises(envelope.EnvelopeError, match="no tag column 'seed'"):
    envelope.approach1(t, ['seed'])


@needs_shared
def test_misfitting_checkpoints_both_parameter_counts():
  """open_lm checkpoints (Li et al. 2025): counting embeddings moves the exponent a."""
  t = table.load_runs(str(SCALING / 'misfitting2025' / 'scaling_results.csv'))
  tags = ['sweep', 'model', 'peak_lr', 'total_steps']
  with_emb = envelope.approach1(t, tags, n_grid=300)
  without = envelope.approach1(t.with_n('N_no_emb'), tags, n_grid=300)
  assert with_emb.n_runs == without.n_runs > 100
  # Same winning runs (C is the file's, with embeddings), different N: a grows without them.
  assert (with_emb.run == without.run).all()
  assert without.a > with_emb.a + 0.1
