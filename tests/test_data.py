"""The data seam: dataset and tokenizer loaded together, fixed evaluation batches, packed rows
seen by the model."""
import os

import jax
import numpy as np
import pytest

from conftest import local_config
from lmjax.data import datasets, loader


@pytest.mark.slow  # prepares a dataset and compiles the model on it
def test_packed_rows_do_not_attend_across_documents(corpus, tmp_path):
  """A real packed row gives every document the logits it has alone."""
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  from lmjax.train.steps import build_model_and_optimizer, init_params
  model, _ = build_model_and_optimizer(c)
  params = init_params(model, c, jax.random.PRNGKey(0))
  batches = loader.train_iterator(d, c)
  # The first row holding a document boundary.
  row = next({k: v[i:i + 1] for k, v in batch.items()}
             for batch in batches for i in range(len(batch['inputs']))
             if batch['segment_ids'][i].max() > 1)
  packed = model.apply({'params': params}, row['inputs'], row['positions'], row['segment_ids'])
  seg = row['segment_ids'][0]
  checked = 0
  for s in np.unique(seg[seg > 0]):
    idx = np.where(seg == s)[0]
    alone = model.apply({'params': params}, row['inputs'][:, idx], row['positions'][:, idx])
    np.testing.assert_allclose(packed[0, idx], alone[0], rtol=2e-5, atol=2e-5)
    checked += 1
  assert checked >= 2


def test_eval_batches_are_fixed(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  first, again = loader.eval_batches(d, c), loader.eval_batches(d, c)
  assert len(first) == 2
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['targets'], b['targets'])


def test_sentencepiece_tokenizer_is_trained_once_and_reused(corpus, tmp_path):
  c = local_config(corpus, tmp_path, tokenizer='sentencepiece', vocab_size=400)
  d = loader.load(c)
  path = d.tokenizer.path
  mtime = os.path.getmtime(path)
  assert loader.load(c).tokenizer.path == path and os.path.getmtime(path) == mtime
  batch = next(loader.train_iterator(d, c))
  assert batch['inputs'].max() < 400
  assert d.stats['train']['tokens_per_byte'] < 0.9


def test_validation_split_smaller_than_one_batch(corpus, tmp_path):
  c = local_config(corpus, tmp_path).unlock()
  c.data.batch_size, c.data.seq_len = 64, 64
  c.model.max_seq_len = 64
  with pytest.raises(datasets.DataError, match='fewer tokens than one batch'):
    loader.eval_batches(loader.load(c), c)


def test_a_tokenizer_json_tokenises_the_store_with_exact_bytes(corpus, tmp_path):
  from test_tokenizers import byte_level_tokenizer_json
  path = byte_level_tokenizer_json(tmp_path / 'tokenizer.json')
  c = local_config(corpus, tmp_path, tokenizer='hf', hf_tokenizer=path)
  loaded = loader.load(c)
  assert loaded.tokenizer.name.startswith('hf-')
  for store in (loaded.train, loaded.eval):
    tokens = store.read(0, store.n_tokens)
    assert (tokens[store.starts] == loaded.tokenizer.sep_id).all()
    assert loaded.tokenizer.token_bytes()[tokens].sum() == store.stats['bytes']
