"""Tokenizers: byte-level (the default), SentencePiece (BPE or unigram) trained by lmjax, and a
Hugging Face tokenizer.json (`HFTokenizer`, for imported models; the `tokenizers` package).

Every tokenizer has a separator id, put at the start of each document when documents are packed,
and `token_bytes()`: the raw UTF-8 bytes each id stands for (0 for specials), so that bits per
byte divide by the bytes of the text itself and are comparable across tokenizers.

SentencePiece (Kudo & Richardson 2018) is trained without normalisation, without a dummy prefix
and without whitespace removal, with byte fallback: decode(encode(text)) == text for any text,
and the pieces of a text add up to exactly its UTF-8 bytes.
"""
from __future__ import annotations

import io
import os

import numpy as np

from lmjax.core.atomic import write_bytes
from lmjax.core.errors import one_line

SP_SPECIALS = ('<unk>', '<sep>')  # ids 0 and 1; byte-fallback pieces <0x00>..<0xFF> follow


def configured_vocab_size(data_config) -> int:
  """The vocabulary size config.data asks for: the byte tokenizer's, a tokenizer.json's, or
  the SentencePiece size to train (a small corpus may give fewer pieces; never more)."""
  if data_config.tokenizer == 'byte':
    return ByteTokenizer.vocab_size
  if data_config.tokenizer == 'hf':
    return HFTokenizer(data_config.hf_tokenizer, data_config.hf_sep_token).vocab_size
  return int(data_config.vocab_size)


class ByteTokenizer:
  """ids 0..255 are the bytes of the UTF-8 text; 256 separates documents."""
  name = 'byte'
  vocab_size = 257
  sep_id = 256

  def encode(self, text) -> np.ndarray:
    data = text if isinstance(text, bytes) else text.encode('utf-8')
    return np.frombuffer(data, np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    ids = np.asarray(ids)
    return bytes(ids[ids < 256].astype(np.uint8)).decode('utf-8', errors='replace')

  def token_bytes(self) -> np.ndarray:
    out = np.zeros(self.vocab_size, np.int32)
    out[:256] = 1
    return out

  def piece(self, i: int) -> bytes:
    """The raw bytes token `i` stands for (b'' for the separator)."""
    return bytes([i]) if i < 256 else b''


class SentencePieceTokenizer:
  """A trained SentencePiece model; `path` is its .model file."""

  def __init__(self, path):
    import sentencepiece as spm
    self.path = path
    self.sp = spm.SentencePieceProcessor(model_file=path)
    self.name = os.path.basename(path)
    self.vocab_size = self.sp.get_piece_size()
    self.sep_id = self.sp.piece_to_id('<sep>')

  def encode(self, text) -> np.ndarray:
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    return np.asarray(self.sp.encode(text), np.int32)

  def decode(self, ids) -> str:
    return self.sp.decode([int(i) for i in ids if i != self.sep_id])

  def token_bytes(self) -> np.ndarray:
    return np.asarray([len(self.piece(i)) for i in range(self.vocab_size)], np.int32)

  def piece(self, i: int) -> bytes:
    """The raw bytes token `i` stands for (b'' for specials)."""
    if self.sp.is_byte(i):
      return bytes([int(self.sp.id_to_piece(i)[3:5], 16)])  # '<0xAB>'
    if self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.is_unused(i):
      return b''
    return self.sp.id_to_piece(i).replace('\u2581', ' ').encode('utf-8')


def _training_chunks(texts, max_bytes, lines_per_chunk=8):
  """Sentences for SentencePiece: runs of a few lines (newlines kept), up to `max_bytes` total."""
  seen = 0
  for text in texts:
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), lines_per_chunk):
      chunk = ''.join(lines[i:i + lines_per_chunk])
      if chunk.strip() and len(chunk) < 4000:
        yield chunk
        seen += len(chunk)
        if seen >= max_bytes:
          return


def train_sentencepiece(texts, path, vocab_size, model_type='bpe', max_bytes=8_000_000):
  """Trains on the first `max_bytes` of `texts` (an iterable of str) and writes `path` atomically.

  Raises ValueError when the vocabulary cannot hold the 256 byte pieces and the specials.
  """
  import sentencepiece as spm
  minimum = 256 + len(SP_SPECIALS) + 1
  if vocab_size < minimum:
    raise ValueError(f'config.data.vocab_size={vocab_size} is too small for a SentencePiece '
                     f'tokenizer with byte fallback: at least {minimum}')
  model = io.BytesIO()
  try:
    _train(spm, texts, model, vocab_size, model_type, max_bytes)
  except RuntimeError as e:
    raise ValueError(f'training a {model_type} SentencePiece tokenizer of '
                     f'config.data.vocab_size={vocab_size} failed: '
                     f'{one_line(e)}') from None
  write_bytes(path, model.getvalue())
  return SentencePieceTokenizer(path)


def _train(spm, texts, model, vocab_size, model_type, max_bytes):
  # hard_vocab_limit=False: a small corpus may support fewer pieces than asked for; the model's
  # embedding (config.model.vocab_size) may be larger than the tokenizer, never smaller.
  spm.SentencePieceTrainer.train(
      sentence_iterator=_training_chunks(texts, max_bytes), model_writer=model,
      vocab_size=vocab_size, model_type=model_type, normalization_rule_name='identity',
      add_dummy_prefix=False, remove_extra_whitespaces=False, byte_fallback=True,
      split_by_whitespace=model_type != 'bpe', allow_whitespace_only_pieces=True,
      character_coverage=0.9995, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
      control_symbols=['<sep>'], num_threads=os.cpu_count() or 1, minloglevel=2,
      hard_vocab_limit=False)


def byte_level_alphabet() -> dict:
  """The characters byte-level BPE (GPT-2, Radford et al. 2019) writes for each byte: bytes that
  are printable Latin-1 stand for themselves, the others (controls, space, soft hyphen...) for
  the code points from 256 up, in byte order. Returns {character: byte}."""
  printable = [*range(ord('!'), ord('~') + 1), *range(ord('\u00a1'), ord('\u00ac') + 1),
               *range(ord('\u00ae'), ord('\u00ff') + 1)]
  out, extra = {}, 0
  for b in range(256):
    if b in printable:
      out[chr(b)] = b
    else:
      out[chr(256 + extra)] = b
      extra += 1
  return out


SEP_CANDIDATES = ('<|endoftext|>', '<|end_of_text|>', '</s>', '<eos>', '<|eos|>')


class HFTokenizer:
  """A Hugging Face tokenizer.json. The separator that starts each document is
  `data.hf_sep_token`, else the first of SEP_CANDIDATES the vocabulary has. Pieces: byte-level
  tokenizers (GPT-2, LLaMA 3) map their characters back to bytes; SentencePiece-style ones
  (a Metaspace pre-tokenizer, byte fallback) read '▁' as a space and <0xAB> as that byte; special
  tokens are 0 bytes. A tokenizer whose normaliser or pre-tokenizer prepends a space to the text
  (LLaMA 2's) counts that byte too: bits per byte are exact only without one."""

  def __init__(self, path, sep_token=''):
    import hashlib
    import json

    from tokenizers import Tokenizer
    if not path or not os.path.isfile(path):
      raise ValueError(f'config.data.hf_tokenizer={path!r}: no such tokenizer.json file')
    with open(path, 'rb') as f:
      raw = f.read()
    try:
      self.tok = Tokenizer.from_str(raw.decode('utf-8'))
    except Exception as e:  # noqa: BLE001  (tokenizers raises its own exception types)
      raise ValueError(f'config.data.hf_tokenizer={path}: not a tokenizer.json '
                       f'({one_line(e, 120)})') from None
    self.path, self.name = path, 'hf-' + hashlib.sha1(raw).hexdigest()[:12]
    self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
    spec = json.loads(raw)
    self.byte_level = 'ByteLevel' in json.dumps(spec.get('decoder') or {})
    self.special = {t['id'] for t in spec.get('added_tokens', []) if t.get('special')}
    names = (sep_token,) if sep_token else SEP_CANDIDATES
    ids = [self.tok.token_to_id(n) for n in names]
    if all(i is None for i in ids):
      raise ValueError(f'config.data.hf_sep_token={sep_token!r}: not in {path}\'s vocabulary'
                       if sep_token else f'config.data.hf_tokenizer={path}: none of '
                       f'{", ".join(SEP_CANDIDATES)} is in its vocabulary; name the token that '
                       'separates documents in config.data.hf_sep_token')
    self.sep_id = next(i for i in ids if i is not None)
    self._alphabet = byte_level_alphabet() if self.byte_level else None

  def encode(self, text) -> np.ndarray:
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, np.int32)

  def decode(self, ids) -> str:
    return self.tok.decode([int(i) for i in ids if i != self.sep_id], skip_special_tokens=False)

  def piece(self, i: int) -> bytes:
    token = self.tok.id_to_token(int(i))
    if token is None or int(i) in self.special:
      return b''
    if self.byte_level:
      return bytes(self._alphabet.get(c, 0) for c in token)
    if len(token) == 6 and token.startswith('<0x') and token.endswith('>'):
      return bytes([int(token[3:5], 16)])
    return token.replace('\u2581', ' ').encode('utf-8')

  def token_bytes(self) -> np.ndarray:
    return np.asarray([len(self.piece(i)) for i in range(self.vocab_size)], np.int32)


BYTE_SEP_TOKEN = '<sep>'  # the byte tokenizer's separator (id 256) in its tokenizer.json


def byte_tokenizer_json() -> str:
  """The byte tokenizer as a Hugging Face tokenizer.json: byte-level BPE with no merges, so each
  byte is its own token and its id is the byte's value; '<sep>' (256) is a special token that
  encoding with special tokens puts first, as every lmjax document starts with it."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
  vocab = {char: b for char, b in byte_level_alphabet().items()}
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([BYTE_SEP_TOKEN])
  tok.post_processor = processors.TemplateProcessing(
      single=f'{BYTE_SEP_TOKEN} $A', pair=f'{BYTE_SEP_TOKEN} $A {BYTE_SEP_TOKEN} $B',
      special_tokens=[(BYTE_SEP_TOKEN, ByteTokenizer.sep_id)])
  return tok.to_str()
