"""Downstream tasks made from the default corpus's held-out files, for lm-evaluation-harness.

No download: the documents are the validation split of `python_stdlib` (lmjax/data/datasets.py,
val_percent 5, the split every run on the default corpus holds out), read from this
interpreter's standard library, and every task is drawn from them with a fixed seed, so a
machine builds the same tasks each time. `task_dir()` writes them once as standard harness task
files (YAML over JSONL, with a two-line `utils.py` for the perplexity task) under
$LMJAX_TASKS_DIR, else ~/.cache/lmjax/harness_tasks/<corpus name>; `--tasks` finds them by name.

- `stdlib_next_line` (multiple choice; chance 1/4): the up to CONTEXT bytes before a line of
  code, and four candidate next lines: the true one and three lines drawn from other held-out
  files. Its headline metric is `acc_mutual_info`, the choice whose log-likelihood the context
  raises most over the choice alone (Holtzman et al. 2021, "Surface form competition", PMI):
  the plain `acc` (summed log-likelihood) and `acc_norm` (per byte) mostly measure which line is
  the more common one, and stay at chance for the main job's models (0.22-0.25, where the
  mutual-information choice goes from 0.30 to 0.50).
- `stdlib_identifier` (multiple choice; chance 1/4): the text up to an identifier that appeared
  earlier in the same file (a cloze), and four candidates: it and three other identifiers of
  that file; `acc` is its headline metric.
- `stdlib_bpb` (loglikelihood_rolling: word_perplexity, byte_perplexity, bits_per_byte): the first
  BPB_BYTES bytes of each held-out file, at most BPB_FILES of them (88 for CPython 3.11.7).
Contexts are short (CONTEXT bytes) so that the main job's 128-byte models see most of them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile

import numpy as np

from lmjax.core import atomic

SEED = 0
CONTEXT = 96          # bytes of context before a line or identifier
ITEMS = 500           # questions per multiple-choice task (fewer if the split holds fewer)
BPB_BYTES = 2048      # bytes of each held-out file in the perplexity task
BPB_FILES = 100
TASKS = ('stdlib_next_line', 'stdlib_identifier', 'stdlib_bpb')
VERSION = 3           # bump when the tasks' construction changes (a new directory)
IDENT = re.compile(r'\b[A-Za-z_][A-Za-z0-9_]{3,}\b')
KEYWORDS = frozenset('''False None True and assert async await break class continue def del
elif else except finally for from global import lambda nonlocal pass raise return self try while
with yield cls print'''.split())

UTILS = '''"""lmjax's corpus tasks (lmjax/eval/corpus_tasks.py): the perplexity task's results."""
from lmjax.eval.corpus_tasks import process_bpb  # noqa: F401
'''


def held_out_documents() -> list[tuple[str, str]]:
  """(path, text) of the default corpus's validation documents, sorted by path."""
  from lmjax.data import datasets
  settings = datasets.stdlib_config(5).settings
  docs = []
  for path, rel in datasets._list_files(settings):  # noqa: SLF001  (the corpus's own listing)
    if datasets.is_validation(rel, settings['val_percent']):
      try:
        text = path.read_bytes().decode('utf-8')
      except UnicodeDecodeError:
        continue
      if text.strip():
        docs.append((rel, text))
  return docs


def _tail(text: str, n: int) -> str:
  """The last n bytes of text or fewer, cut at a character boundary."""
  data = text.encode('utf-8')[-n:]
  return data.decode('utf-8', errors='ignore')


def _code_line(line: str) -> bool:
  s = line.strip()
  return 8 <= len(s) <= 60 and not s.startswith(('#', '"', "'")) and s.isascii()


def next_line_items(docs, rng, n=ITEMS) -> list[dict]:
  """The `stdlib_next_line` questions (module doc)."""
  lines = [(i, j, line) for i, (_, text) in enumerate(docs)
           for j, line in enumerate(text.split('\n')) if _code_line(line)]
  items = []
  for k in rng.permutation(len(lines)):
    if len(items) == n:
      break
    i, j, line = lines[k]
    text_lines = docs[i][1].split('\n')
    context = _tail('\n'.join(text_lines[:j]) + '\n', CONTEXT)
    if j < 3 or len(context) < CONTEXT // 2:
      continue
    picks = []
    while len(picks) < 3:  # lines of other files, any indentation
      f, _, candidate = lines[int(rng.integers(len(lines)))]
      if f != i and candidate != line and candidate not in picks:
        picks.append(candidate)
    answer = int(rng.integers(4))
    choices = picks[:answer] + [line] + picks[answer:]
    items.append({'context': context, 'choices': choices, 'answer': answer,
                  'path': docs[i][0]})
  return items


def identifier_items(docs, rng, n=ITEMS) -> list[dict]:
  """The `stdlib_identifier` questions (module doc)."""
  items = []
  order = rng.permutation(len(docs))
  per_doc = max(1, -(-n // max(1, len(docs))) + 1)
  for i in order:
    path, text = docs[i]
    found = [(m.start(), m.group()) for m in IDENT.finditer(text) if m.group() not in KEYWORDS]
    names = sorted({name for _, name in found})
    if len(names) < 4:
      continue
    first = {}
    for pos, name in found:
      first.setdefault(name, pos)
    candidates = [(pos, name) for pos, name in found
                  if first[name] < pos - len(name) and pos >= CONTEXT]
    taken = 0
    for k in rng.permutation(len(candidates)):
      if taken == per_doc or len(items) == n:
        break
      pos, name = candidates[k]
      context = _tail(text[:pos], CONTEXT)
      if not context.isascii():
        continue
      others = [x for x in names if x != name]
      picks = [others[m] for m in rng.choice(len(others), 3, replace=False)]
      answer = int(rng.integers(4))
      items.append({'context': context, 'choices': picks[:answer] + [name] + picks[answer:],
                    'answer': answer, 'path': path})
      taken += 1
    if len(items) == n:
      break
  return items


def bpb_items(docs) -> list[dict]:
  return [{'text': text.encode('utf-8')[:BPB_BYTES].decode('utf-8', errors='ignore'),
           'path': path} for path, text in docs[:BPB_FILES]]


def process_bpb(doc, results):
  """The harness's perplexity results of one document (as its wikitext task computes them)."""
  (loglikelihood,) = results
  words = len(re.split(r'\s+', doc['text']))
  n_bytes = len(doc['text'].encode('utf-8'))
  return {'word_perplexity': (loglikelihood, words), 'byte_perplexity': (loglikelihood, n_bytes),
          'bits_per_byte': (loglikelihood, n_bytes)}


def _yaml(name, data_file, body) -> str:
  return (f'task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n'
          f'    test: {json.dumps(data_file)}\ntest_split: test\n{body}')


MULTIPLE_CHOICE = '''output_type: multiple_choice
doc_to_text: "{{context}}"
doc_to_choice: "{{choices}}"
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
  - metric: acc_mutual_info
    aggregation: mean
    higher_is_better: true
metadata:
  version: %d
'''
ROLLING = '''output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
process_results: !function utils.process_bpb
metric_list:
  - metric: word_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
metadata:
  version: %d
'''


def default_dir() -> str:
  from lmjax.data import datasets
  root = os.environ.get('LMJAX_TASKS_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'lmjax', 'harness_tasks')
  return os.path.join(root, f'{datasets.stdlib_config(5).name}_v{VERSION}')


def write_tasks(out_dir, docs=None, seed=SEED) -> str:
  """Writes the three tasks (YAML, JSONL, utils.py) into `out_dir`, whole or not at all."""
  docs = held_out_documents() if docs is None else docs
  rng = np.random.default_rng(seed)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tasks-', dir=parent)
  try:
    sets = {'stdlib_next_line': next_line_items(docs, rng),
            'stdlib_identifier': identifier_items(docs, rng),
            'stdlib_bpb': bpb_items(docs)}
    for name, rows in sets.items():
      data = os.path.join(out_dir, f'{name}.jsonl')
      with open(os.path.join(tmp, f'{name}.jsonl'), 'w', encoding='utf-8') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
      body = (ROLLING if name == 'stdlib_bpb' else MULTIPLE_CHOICE) % VERSION
      with open(os.path.join(tmp, f'{name}.yaml'), 'w') as f:
        f.write(_yaml(name, data, body))
    with open(os.path.join(tmp, 'utils.py'), 'w') as f:
      f.write(UTILS)
    digest = hashlib.sha1(json.dumps(sets, sort_keys=True).encode()).hexdigest()[:12]
    atomic.write_json(os.path.join(tmp, 'tasks.json'), {
        'seed': seed, 'version': VERSION, 'digest': digest,
        'items': {k: len(v) for k, v in sets.items()}, 'documents': len(docs)})
    try:
      os.rename(tmp, out_dir)
    except OSError:  # another process wrote it first: theirs is the same
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def task_dir() -> str:
  """The directory of the corpus tasks, written on first use."""
  path = default_dir()
  if not os.path.isfile(os.path.join(path, 'tasks.json')):
    write_tasks(path)
  return path
