"""Instruction pairs from the Python standard library for the fine-tuning study
(experiments/finetune.py): each short function with a docstring becomes a prompt (its signature
and docstring) and a completion (its body), split by file exactly as the default corpus splits
(lmjax.data.datasets.is_validation on the file's path): a base model pre-trained on
python_stdlib never saw the held-out files' functions.

For DPO the rejected side of a pair is the body corrupted: its lines in reverse order (bodies of
at least two distinct lines). Deterministic: the same files give the same JSONL.
"""
from __future__ import annotations

import ast
import json
import os
import textwrap

from lmjax.data import datasets


def _functions(text):
  """(header, body) of each function or method with a docstring, dedented: the header is the
  source up to the docstring's end, the body the rest."""
  try:
    tree = ast.parse(text)
  except (SyntaxError, ValueError):
    return
  lines = text.splitlines(keepends=True)
  for node in ast.walk(tree):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
      continue
    doc = node.body[0]
    if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)) or len(node.body) < 2:
      continue
    first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    source = textwrap.dedent(''.join(lines[first:node.end_lineno]))
    if not source.startswith(('def ', 'async def ', '@')):  # a line indented less than the def
      continue
    split = doc.end_lineno - first
    source_lines = source.splitlines(keepends=True)
    yield ''.join(source_lines[:split]), ''.join(source_lines[split:])


def pairs(max_bytes: int, val_percent: int = 5, max_files: int = 0):
  """{'train': [...], 'validation': [...]} of {'prompt', 'completion', 'file'} for every
  function whose header and body together are at most `max_bytes` UTF-8 bytes (of the first
  `max_files` files in path order; 0: all)."""
  settings = datasets.stdlib_config(val_percent).settings
  out = {'train': [], 'validation': []}
  files = datasets._list_files(settings)
  for path, rel in files[:max_files] if max_files else files:
    try:
      text = path.read_bytes().decode('utf-8')
    except UnicodeDecodeError:
      continue
    split = 'validation' if datasets.is_validation(rel, val_percent) else 'train'
    for header, body in _functions(text):
      if body.strip() and len((header + body).encode()) <= max_bytes:
        out[split].append({'prompt': header, 'completion': body, 'file': rel})
  return out


def corrupted(body: str) -> str | None:
  """The body's lines in reverse order, or None when that changes nothing."""
  lines = [line.rstrip('\n') + '\n' for line in body.splitlines() if line.strip()]
  if len(set(lines)) < 2:
    return None
  return ''.join(reversed(lines))


def write(directory: str, max_bytes: int, max_files: int = 0) -> dict:
  """sft_{train,eval}.jsonl and dpo_{train,eval}.jsonl in `directory`; their counts."""
  os.makedirs(directory, exist_ok=True)
  counts = {}
  for split, rows in pairs(max_bytes, max_files=max_files).items():
    name = 'train' if split == 'train' else 'eval'
    sft = [{'prompt': r['prompt'], 'completion': r['completion']} for r in rows]
    dpo = [{'prompt': r['prompt'], 'chosen': r['completion'], 'rejected': bad}
           for r in rows if (bad := corrupted(r['completion']))]
    for kind, items in (('sft', sft), ('dpo', dpo)):
      path = os.path.join(directory, f'{kind}_{name}.jsonl')
      with open(path + '.tmp', 'w', encoding='utf-8') as f:
        f.writelines(json.dumps(item) + '\n' for item in items)
      os.replace(path + '.tmp', path)
      counts[f'{kind}_{name}'] = len(items)
  return counts
