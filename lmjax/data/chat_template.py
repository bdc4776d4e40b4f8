"""A Hugging Face tokenizer's own chat template (Jinja), for supervised fine-tuning with
`data.tokenizer=hf`: the template is read from beside the tokenizer.json (tokenizer_config.json's
`chat_template`, or a chat_template.jinja file, as transformers saves them) and rendered as
transformers' `apply_chat_template` renders it (a sandboxed Jinja environment with trim_blocks and
lstrip_blocks, `raise_exception`, the tokenizer's bos/eos tokens, `add_generation_prompt`).

Which characters an assistant wrote is found by rendering prefixes: assistant message i spans
from the end of render(messages[:i], add_generation_prompt=True) to the end of
render(messages[:i + 1]), so the span holds the content and whatever the template closes the turn
with (ChatML's `<|im_end|>`): the tokens the model must learn to write, the end token included.
A template under which a conversation's renderings are not prefixes of one another cannot be
masked this way and is refused in one line.
"""
from __future__ import annotations

import json
import os

from lmjax.core.errors import LmjaxError


class ChatTemplateError(LmjaxError, ValueError):
  """A chat template that is missing or cannot be used; one line."""


def find(tokenizer_json: str) -> str | None:
  """The chat template saved beside `tokenizer_json` (None: there is none)."""
  folder = os.path.dirname(os.path.abspath(tokenizer_json))
  jinja = os.path.join(folder, 'chat_template.jinja')
  if os.path.isfile(jinja):
    with open(jinja, encoding='utf-8') as f:
      return f.read()
  path = os.path.join(folder, 'tokenizer_config.json')
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    template = json.load(f).get('chat_template')
  if isinstance(template, list):  # named templates: the default one
    template = next((t.get('template') for t in template if t.get('name') == 'default'), None)
  return template if isinstance(template, str) else None


def special_tokens(tokenizer_json: str) -> dict:
  """{'bos_token': ..., 'eos_token': ...} as strings, from tokenizer_config.json ('' if unset)."""
  path = os.path.join(os.path.dirname(os.path.abspath(tokenizer_json)), 'tokenizer_config.json')
  config = {}
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      config = json.load(f)
  out = {}
  for name in ('bos_token', 'eos_token'):
    value = config.get(name) or ''
    out[name] = value.get('content', '') if isinstance(value, dict) else value
  return out


class Template:
  """A compiled chat template and the variables it is rendered with."""

  def __init__(self, source: str, **variables):
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
      raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=['jinja2.ext.loopcontrols'])
    env.filters['tojson'] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False,
                                                                   indent=indent)
    env.globals['raise_exception'] = raise_exception
    try:
      self.template = env.from_string(source)
    except TemplateError as e:
      raise ChatTemplateError(f'the chat template does not compile: {e}') from None
    self.variables = variables

  def render(self, messages, add_generation_prompt=False) -> str:
    from jinja2 import TemplateError
    try:
      return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                  **self.variables)
    except TemplateError as e:
      raise ChatTemplateError(f'the chat template refused the conversation: {e}') from None

  def pieces(self, messages, where='example'):
    """[(text, learned?)] of a conversation: the assistant messages' spans learned (module
    doc); ChatTemplateError naming the example where renderings are not prefixes."""
    whole = self.render(messages)
    out, done = [], 0
    for i, m in enumerate(messages):
      if m['role'] != 'assistant':
        continue
      before = self.render(messages[:i], add_generation_prompt=True)
      through = self.render(messages[:i + 1])
      if not (through.startswith(before) and whole.startswith(through) and len(before) >= done):
        raise ChatTemplateError(f'{where}: the chat template does not render message {i} as an '
                                'extension of the messages before it, so its assistant tokens '
                                'cannot be found; use data.chat_template=plain')
      out += [(whole[done:len(before)], False), (whole[len(before):len(through)], True)]
      done = len(through)
    out.append((whole[done:], False))
    return [(text, learned) for text, learned in out if text]


def load(tokenizer_json: str) -> Template:
  """The template saved beside `tokenizer_json`; ChatTemplateError when there is none."""
  source = find(tokenizer_json)
  if source is None:
    raise ChatTemplateError(f'config.data.chat_template=tokenizer: no chat template beside '
                            f'{tokenizer_json} (tokenizer_config.json "chat_template" or '
                            'chat_template.jinja); use data.chat_template=plain')
  return Template(source, **special_tokens(tokenizer_json))
