"""Tokenizers: byte and SentencePiece round trips, bytes per token, vocabulary sizes."""
import numpy as np
import pytest

from conftest import TEXTS
from lmjax.config import ConfigError, default_config, resolve
from lmjax.data import tokenizers


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


def byte_level_tokenizer_json(path, specials=('<|endoftext|>',)):
  """A byte-level BPE tokenizer.json (GPT-2's kind) trained here on TEXTS, offline."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(TEXTS * 5, trainer)
  tok.save(str(path))
  return str(path)


def test_hf_byte_level_tokenizer_round_trips_and_counts_bytes_exactly(tmp_path):
  tok = tokenizers.HFTokenizer(byte_level_tokenizer_json(tmp_path / 'tokenizer.json'))
  assert tok.sep_id == tok.tok.token_to_id('<|endoftext|>') and tok.byte_level
  table = tok.token_bytes()
  assert table[tok.sep_id] == 0
  for text in TEXTS + ['\x00\x01 control bytes\n\r\t', 'ÿ þ ¡ ¬ ® soft\u00adhyphen']:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b''.join(tok.piece(i) for i in ids) == text.encode('utf-8')
    assert table[ids].sum() == len(text.encode('utf-8'))


def test_hf_tokenizer_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match='config.data.hf_tokenizer=.*no such tokenizer.json'):
    tokenizers.HFTokenizer(str(tmp_path / 'missing.json'))
  path = byte_level_tokenizer_json(tmp_path / 'tokenizer.json', specials=('<pad>',))
  with pytest.raises(ValueError, match='config.data.hf_sep_token'):
    tokenizers.HFTokenizer(path)
  assert tokenizers.HFTokenizer(path, '<pad>').sep_id == 0
  c = default_config()
  c.data.tokenizer, c.data.hf_tokenizer = 'hf', str(tmp_path / 'missing.json')
  with pytest.raises(ConfigError, match='hf_tokenizer'):
    resolve(c)
  c.data.hf_tokenizer, c.data.hf_sep_token = path, '<pad>'
  assert resolve(c).model.vocab_size == tokenizers.HFTokenizer(path, '<pad>').vocab_size
