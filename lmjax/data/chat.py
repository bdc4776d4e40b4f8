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


def _pieces(example, where):
  """[(text or None for the separator, learned?)] of one example."""
  if not isinstance(example, dict):
    raise ChatDataError(f'{where}: expected a JSON object with "messages" or "prompt" and '
                        '"completion"')
  if 'messages' in example:
    messages = example['messages']
    if not isinstance(messages, list) or not messages:
      raise ChatDataError(f'{where}: "messages" must be a non-empty list')
    out, last = [], len(messages) - 1
    for i, m in enumerate(messages):
      role = m.get('role') if isinstance(m, dict) else None
      content = m.get('content') if isinstance(m, dict) else None
      if role not in ROLES:
        raise ChatDataError(f'{where}: message {i} has role {role!r}; allowed: '
                            f'{", ".join(ROLES)}')
      if not isinstance(content, str):
        raise ChatDataError(f'{where}: message {i} has no "content" string')
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
    return out
  if 'prompt' in example or 'completion' in example:
    prompt, completion = example.get('prompt'), example.get('completion')
    if not isinstance(prompt, str) or not isinstance(completion, str):
      raise ChatDataError(f'{where}: "prompt" and "completion" must both be strings')
    if not completion.strip():
      raise ChatDataError(f'{where}: the completion is empty; nothing to learn')
    return [(prompt, False), (completion, True), (None, True)]
  raise ChatDataError(f'{where}: expected "messages" or "prompt" and "completion"; has '
                      f'{", ".join(sorted(example)) or "no fields"}')


def render(example, tokenizer, seq_len, where='example') -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32, mask int8) of one example, the separator first (module doc)."""
  tokens, mask, text = [int(tokenizer.sep_id)], [0], ''
  for piece, learned in _pieces(example, where):
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


def read_jsonl(path, tokenizer, seq_len) -> list[tuple[np.ndarray, np.ndarray]]:
  """Every example of a JSONL file rendered; ChatDataError naming the first bad line."""
  out = []
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
        example = json.loads(line)
      except ValueError:
        raise ChatDataError(f'{where}: not JSON') from None
      out.append(render(example, tokenizer, seq_len, where))
  if not out:
    raise ChatDataError(f'{path}: no examples')
  return out


def to_store(examples):
  """Rendered examples [(tokens, mask)] concatenated into one masked stream
  (token_store.ArrayStore) that the pipeline packs like any other: each example a document."""
  from lmjax.data.token_store import ArrayStore
  if not examples:
    raise ChatDataError('no examples')
  lengths = np.asarray([len(t) for t, _ in examples])
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  return ArrayStore(np.concatenate([t for t, _ in examples]), starts,
                    np.concatenate([m for _, m in examples]))
