import numpy as np

from lmjax import data
from lmjax.config import default_config, resolve


def test_split_is_a_fixed_hash_of_the_path():
  # The rule must not depend on the process or the machine: sha1 of the relative path.
  import hashlib
  for rel in ('os.py', 'json/decoder.py', 'email/mime/text.py'):
    expected = int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 100 < 5
    assert data.is_validation(rel, 5) == expected
  share = np.mean([data.is_validation(f'f{i}.py', 5) for i in range(4000)])
  assert 0.03 < share < 0.07


def test_corpus_splits_are_disjoint_and_complete():
  corpus = data.python_stdlib(5)
  assert corpus.n_docs['validation'] > 10 and corpus.n_docs['train'] > 10 * corpus.n_docs[
      'validation']
  for split, stream in (('train', corpus.train), ('validation', corpus.validation)):
    assert (stream == data.BYTE_EOS).sum() == corpus.n_docs[split]
    assert (stream < 256).sum() == corpus.n_bytes[split]
  h = data.unigram_entropy_bits_per_byte(corpus.train)
  assert 3.0 < h < 6.0


def test_unigram_entropy_of_uniform_bytes_is_8_bits():
  assert data.unigram_entropy_bits_per_byte(np.arange(256 * 10) % 256) == 8.0


def test_train_batches_are_a_function_of_seed_and_step():
  c = resolve(default_config())
  straight = [b for _, b in zip(range(6), data.batches(c, 'train'))]
  resumed = [b for _, b in zip(range(3), data.batches(c, 'train', start_step=3))]
  for a, b in zip(straight[3:], resumed):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert straight[0]['inputs'].shape == (c.data.batch_size, c.data.seq_len)
  np.testing.assert_array_equal(straight[0]['inputs'][:, 1:], straight[0]['targets'][:, :-1])
  assert not np.array_equal(straight[0]['inputs'], straight[1]['inputs'])


def test_validation_batches_are_fixed_and_counted():
  c = resolve(default_config())
  first = list(data.batches(c, 'validation'))
  again = list(data.batches(c, 'validation'))
  assert len(first) == c.data.eval_batches
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['targets'], b['targets'])


def test_token_bytes():
  tb = data.token_bytes('byte', 260)
  assert tb[:256].sum() == 256 and tb[256:].sum() == 0
