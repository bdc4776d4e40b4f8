"""The checksums of checkpoint arrays (lmjax/train/digests.py): the same on any sharding, changed
by any one bit, by moving an element, in every dtype a train state holds; and a checkpoint whose
state is not the one its metadata was saved with is refused by every restore."""
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.train import checkpoint, digests
from lmjax.train.checkpoint import READ_ONLY, Checkpoints
from tests import xla


def _tree(seed=0):
  k = jax.random.PRNGKey(seed)
  x = jax.random.normal(k, (16, 24))
  return {'params': {'w': x, 'h': x[:8].astype(jnp.bfloat16)},
          'step': jnp.int32(7), 'flag': jnp.array([True, False]),
          'count': jnp.arange(6, dtype=jnp.uint8)}


SHARDED = """
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from lmjax.train import digests
x = jax.random.normal(jax.random.PRNGKey(0), (16, 24))
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ('a', 'b'))
for spec in (P('a', 'b'), P('b', None), P(None, 'a'), P()):
  print(digests.digests({'w': jax.device_put(x, NamedSharding(mesh, spec))})['w'])
"""


def test_digests_do_not_depend_on_sharding():
  """On 8 simulated devices, four shardings of one array: one digest, the one-device one."""
  out = subprocess.run([sys.executable, '-c', SHARDED], capture_output=True, text=True,
                       check=True, env=dict(os.environ, JAX_PLATFORMS='cpu',
                                            XLA_FLAGS=xla.flags(8)))
  one = digests.digests({'w': _tree()['params']['w']})['w']
  assert out.stdout.split() == [one] * 4
  assert set(digests.digests(_tree())) == {'params/w', 'params/h', 'step', 'flag', 'count'}


@pytest.mark.parametrize('path', ['params/w', 'params/h', 'step', 'flag', 'count'])
def test_one_bit_or_a_moved_element_changes_the_digest(path):
  tree = _tree()
  saved = digests.digests(tree)
  *parents, leaf = path.split('/')
  holder = tree
  for p in parents:
    holder = holder[p]
  value = np.array(holder[leaf])
  raw = value.reshape(-1).view(np.uint8 if value.dtype.itemsize == 1 else
                               np.dtype(f'uint{value.dtype.itemsize * 8}'))
  for flip in ([0, 1] if value.dtype != np.bool_ else [0]):
    bad = raw.copy()
    bad[len(bad) // 2] ^= np.array(1 << flip, raw.dtype)
    holder[leaf] = jnp.asarray(bad.view(value.dtype).reshape(value.shape))
    with pytest.raises(digests.DigestMismatch, match=f'checksum mismatch in {path}'):
      digests.verify(tree, saved)
  if value.size > 1 and value.reshape(-1)[0] != value.reshape(-1)[-1]:
    moved = value.reshape(-1).copy()
    moved[[0, -1]] = moved[[-1, 0]]
    holder[leaf] = jnp.asarray(moved.reshape(value.shape))
    assert digests.digests(tree)[path] != saved[path]


def test_a_state_that_is_not_the_one_saved_is_refused(tmp_path):
  """Two checkpoints whose state/ folders are swapped (as a torn copy could leave them): every
  file parses, only the digests tell; the full restore, the params alone and the fallback of
  restore_latest all see it. Checkpoints without digests (older lmjax) still restore."""
  run = tmp_path / 'run'
  config = READ_ONLY
  ckpts = Checkpoints(str(run), config)
  trees = {s: _tree(s) for s in (1, 2, 3)}
  for s, tree in trees.items():
    ckpts.save(s, tree, None, {'step': s})
  ckpts.close()
  a, b = run / 'checkpoints' / '2' / 'state', run / 'checkpoints' / '3' / 'state'
  shutil.move(a, tmp_path / 'x')
  shutil.move(b, a)
  shutil.move(tmp_path / 'x', b)
  abstract = checkpoint.abstract_like(trees[1])
  ckpts = Checkpoints(str(run), config, read_only=True)
  with pytest.raises(digests.DigestMismatch, match='checksum mismatch in params/'):
    ckpts.restore(3, abstract, None)
  ckpts.close()
  ckpts = Checkpoints(str(run), config, read_only=True)  # (orbax: one kind of read a manager)
  with pytest.raises(digests.DigestMismatch, match='checksum mismatch in params/'):
    ckpts.restore_params(2, abstract['params'])
  ckpts.close()
  logged = []
  ckpts = Checkpoints(str(run), config)
  restored = ckpts.restore_latest(abstract, lambda: None, log=logged.append)
  ckpts.close()
  assert restored.step == 1
  np.testing.assert_array_equal(restored.state['params']['w'], trees[1]['params']['w'])
  assert f'the checkpoint {run}/checkpoints/3 is damaged' in logged[0]
  assert sorted(os.listdir(run / 'damaged_checkpoints'))[0].startswith('2-')


def test_metadata_edited_after_saving_is_refused(tmp_path):
  run = tmp_path / 'run'
  ckpts = Checkpoints(str(run), READ_ONLY)
  ckpts.save(1, _tree(), None, {'step': 1, 'config': {'optim': {'lr': 0.001}}})
  ckpts.close()
  path = run / 'checkpoints' / '1' / 'meta' / 'metadata'
  path.write_text(path.read_text().replace('0.001', '0.002'))
  with pytest.raises(digests.DigestMismatch, match='its metadata'):
    Checkpoints(str(run), READ_ONLY, read_only=True).meta(1)
