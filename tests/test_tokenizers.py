"""Tokenizers: byte and SentencePiece round trips, bytes per token, vocabulary sizes."""
import numpy as np
import pytest

from conftest import TEXTS
from lmjax import tokenizers
from lmjax.config import ConfigError, default_config, resolve


@pytest.mark.parametrize('model_type', ['bpe', 'unigram'])
def test_sentencepiece_round_trips_and_counts_bytes_exactly(tmp_path, model_type):
  path = str(tmp_path / f'sp-{model_type}.model')
  texts = [TEXTS[i % len(TEXTS)] * (1 + i % 3) for i in range(200)]
  tok = tokenizers.train_sentencepiece(texts, path, 400, model_type)
  assert 300 < tok.vocab_size <= 400 and tok.sep_id == 1
  table = tok.token_bytes()
  for text in TEXTS + ['never seen: \u00e6\u00f8\u00e5 \U0001f680 \x00\x7f', '  lead and trail  ']:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert table[ids].sum() == len(text.encode('utf-8'))
  assert len(tok.encode('def f(x):\n    return x + 1\n')) < len('def f(x):\n    return x + 1\n')


def test_byte_tokenizer_bytes_per_token():
  tb = tokenizers.ByteTokenizer().token_bytes()
  assert tb[:256].sum() == 256 and tb[256] == 0


def test_vocabulary_too_small_for_sentencepiece():
  c = default_config()
  c.data.tokenizer, c.data.vocab_size = 'sentencepiece', 200
  with pytest.raises(ConfigError, match='config.data.vocab_size=200'):
    resolve(c)
  with pytest.raises(ValueError, match='too small'):
    tokenizers.train_sentencepiece(['abc'], '/nonexistent/x.model', 100)


def test_byte_tokenizer_round_trips_any_text():
  tok = tokenizers.ByteTokenizer()
  for text in TEXTS + ['', '\x00 nul', 'é' * 3]:
    ids = tok.encode(text)
    assert ids.max(initial=0) < tok.sep_id and tok.decode(ids) == text
    assert tok.token_bytes()[ids].sum() == len(text.encode('utf-8'))
  np.testing.assert_array_equal(tok.encode('ab'), [97, 98])


def test_configured_vocab_size_is_the_tokenizers():
  c = default_config()
  assert tokenizers.configured_vocab_size(c.data) == tokenizers.ByteTokenizer.vocab_size == 257
  assert resolve(c).model.vocab_size == 257
  c.data.tokenizer, c.data.vocab_size = 'sentencepiece', 512
  assert tokenizers.configured_vocab_size(c.data) == 512 == resolve(c).model.vocab_size
