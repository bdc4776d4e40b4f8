"""Supervised fine-tuning examples: chat or prompt/completion JSONL rendered to tokens with a
loss mask that is 1 on the tokens the model should learn to write, and 0 elsewhere.

An example is one JSON object per line, either
  {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
or
  {"prompt": "...", "completion": "..."}.
Every example is a document, so its tokens start with the separator, as in pre-training.

The plain template (byte and SentencePiece tokenizers; `TEMPLATE`): each message is its header
`<|role|>` and a newline, then its content; an assistant message ends with a newline, or, when
it is the last message, with the separator, the token that ends a document and stops decoding.
A prompt/completion pair is the two texts back to back, the completion ended by the separator.
The mask is 1 on every assistant content token and the token that ends it (the newline or the
separator), 0 on headers, system and user turns and the prompt; with a tokenizer.json run a
completion's tokens are those of the whole text split where the prompt's end (its tokens may
merge across the boundary otherwise).

`render(example, tokenizer, seq_len)` returns (tokens, mask) and refuses, in one line naming the
example, an unknown role, an empty assistant turn or completion, an example with no assistant
turn, and one whose first learned token lies at or beyond seq_len (no room for the answer in a
training window); a longer example is cut to seq_len + 1 tokens.
"""
from __future__ import annotations

import json

import numpy as np

from lmjax.core.errors import LmjaxError

ROLES = ('system', 'user', 'assistant')
TEMPLATE = '<|{role}|>\n'


class ChatDataError(LmjaxError, ValueError):
  """An SFT example that cannot be used; one line naming it and what is allowed."""


def _pieces(example, where, template=None):
  """[(text or None for the separator, learned?)] of one example; under a tokenizer's chat
  template (lmjax/data/chat_template.py) a prompt/completion pair is a user and an assistant
  message."""
  if not isinstance(example, dict):
    raise ChatDataError(f'{where}: expected a JSON object with "messages" or "prompt" and '
                        '"completion"')
  if 'messages' in example:
    messages = example['messages']
    if not isinstance(messages, list) or not messages:
      raise ChatDataError(f'{where}: "messages" must be a non-empty list')
    out, last = [], len(messages) - 1
    checked = []
    for i, m in enumerate(messages):
      role = m.get('role') if isinstance(m, dict) else None
      content = m.get('content') if isinstance(m, dict) else None
      if role not in ROLES:
        raise ChatDataError(f'{where}: message {i} has role {role!r}; allowed: '
                            f'{", ".join(ROLES)}')
      if not isinstance(content, str):
        raise ChatDataError(f'{where}: message {i} has no "content" string')
      checked.append({'role': role, 'content': content})
      out.append((TEMPLATE.format(role=role), False))
      if role == 'assistant':
        if not content.strip():
          raise ChatDataError(f'{where}: message {i} (assistant) is empty; nothing to learn')
        out.append((content, True))
        out.append((None, True) if i == last else ('\n', True))
      else:
        out.append((content + '\n', False))
    if not any(learned for _, learned in out):
      raise ChatDataError(f'{where}: no assistant message; nothing to learn')
    return template.pieces(checked, where) if template is not None else out
  if 'prompt' in example or 'completion' in example:
    prompt, completion = example.get('prompt'), example.get('completion')
    if not isinstance(prompt, str) or not isinstance(completion, str):
      raise ChatDataError(f'{where}: "prompt" and "completion" must both be strings')
    if not completion.strip():
      raise ChatDataError(f'{where}: the completion is empty; nothing to learn')
    if template is not None:
      return _pieces({'messages': [{'role': 'user', 'content': prompt},
                                   {'role': 'assistant', 'content': completion}]}, where,
                     template)
    return [(prompt, False), (completion, True), (None, True)]
  raise ChatDataError(f'{where}: expected "messages" or "prompt" and "completion"; has '
                      f'{", ".join(sorted(example)) or "no fields"}')


def render(example, tokenizer, seq_len, where='example',
           template=None) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32, mask int8) of one example, the separator first (module doc); `template`: a
  tokenizer's chat template (chat_template.Template) instead of the plain one."""
  tokens, mask, text = [int(tokenizer.sep_id)], [0], ''
  for piece, learned in _pieces(example, where, template):
    if piece is None:
      tokens.append(int(tokenizer.sep_id))
      mask.append(int(learned))
      text = ''  # a separator ends the text encoded as one
      continue
    # Encode the text so far and this piece together, keep what this piece added: a tokenizer
    # that merges across the boundary gives the merged token to this piece.
    before = len(tokenizer.encode(text)) if text else 0
    text += piece
    ids = [int(t) for t in tokenizer.encode(text)]
    start = len(tokens) - before
    tokens[start:] = ids
    mask[start:] = mask[start:start + min(before, len(ids))] + [int(learned)] * max(
        0, len(ids) - before)
  tokens, mask = np.asarray(tokens, np.int32), np.asarray(mask, np.int8)
  first = int(np.argmax(mask)) if mask.any() else len(mask)
  if first >= seq_len + 1 or first == 0:
    raise ChatDataError(f'{where}: its first learned token is token {first}, beyond the '
                        f'{seq_len} tokens of data.seq_len: no room for the answer (shorten '
                        'the prompt or raise data.seq_len)')
  return tokens[:seq_len + 1], mask[:seq_len + 1]


def jsonl(path):
  """(where, object) of each non-blank line of a JSONL file, `where` naming the line for
  errors; ChatDataError for a file that cannot be read or a line that is not JSON."""
  try:
    f = open(path, encoding='utf-8')
  except OSError as e:
    raise ChatDataError(f'{path}: cannot read it ({e.strerror or e})') from None
  with f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f'{path} line {number}'
      try:
        yield where, json.loads(line)
      except ValueError:
        raise ChatDataError(f'{where}: not JSON') from None


def read_jsonl(path, tokenizer, seq_len,
               template=None) -> list[tuple[np.ndarray, np.ndarray]]:
  """Every example of a JSONL file rendered; ChatDataError naming the first bad line."""
  out = [render(example, tokenizer, seq_len, where, template) for where, example in jsonl(path)]
  if not out:
    raise ChatDataError(f'{path}: no examples')
  return out


def to_store(examples, tokenizer=None):
  """Rendered examples [(tokens, mask)] concatenated into one masked stream
  (token_store.ArrayStore) that the pipeline packs: each example a document. With the
  tokenizer, the store's `stats` count the examples, their tokens and bytes, and the learned
  (masked-in) tokens and their bytes."""
  from lmjax.data.token_store import ArrayStore
  if not examples:
    raise ChatDataError('no examples')
  lengths = np.asarray([len(t) for t, _ in examples])
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  store = ArrayStore(np.concatenate([t for t, _ in examples]), starts,
                     np.concatenate([m for _, m in examples]))
  if tokenizer is not None:
    store.stats = _stats(store, tokenizer)
  return store


def _stats(store, tokenizer) -> dict:
  """A split's statistics as token_store's (documents = examples; the unigram entropy of the
  learned bytes) and the learned tokens and bytes."""
  learned = store.tokens[store.mask > 0]
  pieces = [tokenizer.piece(int(t)) for t in store.tokens]
  text = b''.join(pieces)
  learned_text = b''.join(p for p, m in zip(pieces, store.mask) if m > 0)
  counts = np.bincount(np.frombuffer(learned_text, np.uint8), minlength=256)
  p = counts[counts > 0] / max(counts.sum(), 1)
  return {'documents': store.n_documents, 'bytes': len(text), 'tokens': store.n_tokens,
          'tokens_per_byte': store.n_tokens / max(len(text), 1),
          'learned_tokens': int(len(learned)), 'learned_bytes': len(learned_text),
          'unigram_bits_per_byte': float(-(p * np.log2(p)).sum())}


def held_out(n: int, val_percent: float, seed: int = 0) -> np.ndarray:
  """The indices of a seeded draw of ceil(val_percent %) of n examples (at least one), held out
  for evaluation: the same for every run."""
  n_eval = max(1, int(np.ceil(n * val_percent / 100)))
  if n_eval >= n:
    raise ChatDataError(f'{n} examples cannot be split into train and evaluation sets by '
                        f'data.val_percent={val_percent}; give data.eval_paths')
  return np.sort(np.random.default_rng(seed).permutation(n)[:n_eval])


def split(examples, val_percent: float, seed: int = 0):
  """(train, eval) of one list of examples (`held_out`)."""
  held = set(held_out(len(examples), val_percent, seed).tolist())
  return ([e for i, e in enumerate(examples) if i not in held],
          [e for i, e in enumerate(examples) if i in held])


def template_of(data_config):
  """The chat template config.data asks for: None (the plain one) or the tokenizer's own."""
  if data_config.chat_template == 'plain' or (
      data_config.chat_template == 'auto' and data_config.tokenizer != 'hf'):
    return None
  from lmjax.data import chat_template
  if data_config.tokenizer != 'hf':
    raise ChatDataError('config.data.chat_template=tokenizer needs data.tokenizer=hf (a '
                        'tokenizer.json with its chat template); use plain')
  if data_config.chat_template == 'auto' and not chat_template.find(data_config.hf_tokenizer):
    return None
  return chat_template.load(data_config.hf_tokenizer)


def load(data_config, tokenizer):
  """(train store, eval store) of config.data for data.dataset=chat_jsonl: data.paths' JSONL,
  evaluated on data.eval_paths' or on data.val_percent of it held out; the plain template, or
  the tokenizer's own (data.chat_template). With data.loss_mask=all every train target counts
  (the prompt's too), while evaluation stays on the completions."""
  template = template_of(data_config)
  seq_len = data_config.seq_len
  train = read_jsonl(data_config.paths, tokenizer, seq_len, template)
  if data_config.eval_paths:
    evaluation = read_jsonl(data_config.eval_paths, tokenizer, seq_len, template)
  else:
    train, evaluation = split(train, data_config.val_percent)
  if data_config.loss_mask == 'all':  # no mask in training (every target but a separator)
    train = [(t, np.ones_like(m)) for t, m in train]
  return to_store(train, tokenizer), to_store(evaluation, tokenizer)
