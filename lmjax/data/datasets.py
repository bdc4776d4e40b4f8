"""Text datasets through TFDS, prepared once into array_record files for random access.

- `local_text`: any directory or glob of text files, one document per file or per line.
- `python_stdlib`: the default corpus, every `*.py` file of the running interpreter's standard
  library (`sysconfig` stdlib, site-packages and dist-packages excluded): `local_text` with fixed
  settings, so it exists wherever Python does.
- any other name: a TFDS catalogue dataset (`lm1b`, `tiny_shakespeare`, `c4/en`, ...), prepared
  in the TFDS data dir (needs the network the first time, and for some datasets TensorFlow).

Split of the local builders: a document goes to validation when
int(sha1(key).hexdigest(), 16) % 100 < val_percent, key being its path relative to the root
(posix), with `:line` appended for one document per line. TFDS prepares into a temporary
directory and renames it when complete, so a killed or repeated prepare never leaves a dataset
that a later run would read half-written.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import pathlib
import re
import sysconfig
from typing import Any, NamedTuple

from absl import logging
import tensorflow_datasets as tfds

from lmjax.core.errors import LmjaxError, one_line

tfds.disable_progress_bar()

LOCAL = ('python_stdlib', 'local_text')


class DataError(LmjaxError, ValueError):
  """A dataset that cannot be used as configured; the message names the cause."""


def is_validation(key: str, val_percent: int) -> bool:
  return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100 < val_percent


class LocalTextConfig(tfds.core.BuilderConfig):
  """Which files, how they split into documents, and what to do with files that are not UTF-8."""

  def __init__(self, *, root, patterns, doc_per='file', val_percent=5, non_utf8='skip',
               exclude_dirs=(), name=None):
    settings = dict(root=str(root), patterns=list(patterns), doc_per=doc_per,
                    val_percent=val_percent, non_utf8=non_utf8, exclude_dirs=list(exclude_dirs))
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    super().__init__(name=name or f'h{digest}', version=LocalText.VERSION,
                     description=json.dumps(settings, sort_keys=True))
    self.settings = settings


class LocalText(tfds.core.GeneratorBasedBuilder):
  """Local text files as a TFDS dataset with `train` and `validation` splits of {'text', 'path'},
  `path` the file's path relative to the root (evaluation groups documents by it)."""
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'text', '1.1.0': 'the path of each document'}

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({'text': tfds.features.Text(),
                                             'path': tfds.features.Text()}),
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager
    s = self.builder_config.settings
    docs = {'train': [], 'validation': []}
    skipped = 0
    for path, rel in _list_files(s):
      data = path.read_bytes()
      try:
        text = data.decode('utf-8')
      except UnicodeDecodeError:
        if s['non_utf8'] == 'fail':
          raise DataError(f'{path} is not UTF-8 (config.data.non_utf8=fail; set it to skip '
                          'to leave such files out)') from None
        skipped += 1
        continue
      units = ([(rel, text)] if s['doc_per'] == 'file' else
               [(f'{rel}:{i}', line) for i, line in enumerate(text.splitlines())])
      for key, doc in units:
        if doc.strip():
          docs['validation' if is_validation(key, s['val_percent']) else 'train'].append(
              (key, rel, doc))
    self.info.metadata['skipped_non_utf8'] = skipped
    for split, items in docs.items():
      if not items:
        raise DataError(f'the {split} split of {s["root"]} ({", ".join(s["patterns"])}) is '
                        f'empty: no non-empty UTF-8 documents (config.data.val_percent='
                        f'{s["val_percent"]})')
    return {split: self._generate_examples(items) for split, items in docs.items()}

  def _generate_examples(self, items):
    for key, rel, text in items:
      yield key, {'text': text, 'path': rel}


class PythonStdlib(LocalText):
  """The default corpus (registered as `python_stdlib`)."""


def _glob_regex(pattern: str) -> re.Pattern:
  """A glob pattern relative to the root as a regex over posix relative paths, with glob's
  recursive meaning: '**/' any directories (none included), '*' and '?' within one name."""
  out, i = [], 0
  while i < len(pattern):
    if pattern.startswith('**/', i):
      out.append('(?:.*/)?')
      i += 3
    elif pattern.startswith('**', i):
      out.append('.*')
      i += 2
    elif pattern[i] == '*':
      out.append('[^/]*')
      i += 1
    elif pattern[i] == '?':
      out.append('[^/]')
      i += 1
    else:
      out.append(re.escape(pattern[i]))
      i += 1
  return re.compile(''.join(out) + r'\Z')


def _list_files(settings):
  root = pathlib.Path(settings['root'])
  if not root.is_dir():
    raise DataError(f'config.data.paths: {root} is not a directory')
  excluded = set(settings['exclude_dirs'])
  found = set()
  if excluded and not any(c in p for p in settings['patterns'] for c in '[]'):
    # Walk once, never entering an excluded directory (the stdlib's site-packages can hold ten
    # times its files), matching each path as glob would.
    regexes = [_glob_regex(p) for p in settings['patterns']]
    for folder, dirs, names in os.walk(root):
      dirs[:] = sorted(d for d in dirs if d not in excluded and not d.startswith('.'))
      rel_folder = pathlib.Path(folder).relative_to(root).as_posix()
      for name in names:
        if name.startswith('.'):
          continue
        rel = name if rel_folder == '.' else f'{rel_folder}/{name}'
        if any(r.match(rel) for r in regexes):
          found.add(os.path.join(str(root), rel))
  else:
    for pattern in settings['patterns']:
      found.update(glob.glob(os.path.join(str(root), pattern), recursive=True))
  files = []
  for name in sorted(found):
    path = pathlib.Path(name)
    rel = path.relative_to(root)
    if path.is_file() and not (excluded & set(rel.parts[:-1])):
      files.append((path, rel.as_posix()))
  if not files:
    raise DataError(f'config.data.paths: no files match {settings["patterns"]} under {root}')
  return files


@functools.lru_cache(maxsize=None)
def stdlib_config(val_percent=5) -> LocalTextConfig:
  """The Python files of this interpreter's standard library. Builds differ: python.org and
  pyenv builds ship all of it (1,670 train documents, 30 MB for CPython 3.11.7), Debian's
  python3.11 leaves test/, idlelib/, tkinter/, distutils/ and lib2to3/ to other packages (632,
  11 MB). The name carries the Python version, a digest of the files (paths and sizes) and the
  split, so two interpreters never share a prepared corpus in one data dir."""
  import sys
  root = sysconfig.get_paths()['stdlib']
  patterns, exclude = ['**/*.py'], ['site-packages', 'dist-packages']
  listing = _list_files(dict(root=root, patterns=patterns, exclude_dirs=exclude))
  digest = hashlib.sha1('\n'.join(f'{rel} {path.stat().st_size}' for path, rel in listing)
                        .encode()).hexdigest()[:8]
  return LocalTextConfig(root=root, patterns=patterns, doc_per='file', val_percent=val_percent,
                         non_utf8='skip', exclude_dirs=exclude,
                         name=f'py{sys.version_info.major}{sys.version_info.minor}_{digest}_'
                              f'val{val_percent}')


def local_text_config(data_config) -> LocalTextConfig:
  """From config.data.paths: a directory (all files below it) or a glob, comma-separated."""
  specs = [p.strip() for p in str(data_config.paths or '').split(',') if p.strip()]
  if not specs:
    raise DataError('config.data.paths is empty: give a directory or glob of text files')
  roots, patterns = set(), []
  for spec in specs:
    spec = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(spec):
      roots.add(spec)
      patterns.append('**/*')
    elif glob.has_magic(spec):
      base = spec[:min(spec.find(c) for c in '*?[' if c in spec)]
      base = base if base.endswith(os.sep) else os.path.dirname(base)
      roots.add(base.rstrip(os.sep) or os.sep)
      patterns.append(os.path.relpath(spec, base))
    elif os.path.isfile(spec):
      roots.add(os.path.dirname(spec))
      patterns.append(os.path.basename(spec))
    else:
      raise DataError(f'config.data.paths: {spec} does not exist')
  if len(roots) > 1:
    raise DataError(f'config.data.paths: all paths must share one directory, got {sorted(roots)}')
  return LocalTextConfig(root=roots.pop(), patterns=patterns, doc_per=data_config.doc_per,
                         val_percent=data_config.val_percent, non_utf8=data_config.non_utf8)


def data_dir(data_config) -> str:
  return os.path.expanduser(data_config.data_dir or os.environ.get('TFDS_DATA_DIR') or
                            '~/tensorflow_datasets')


@contextlib.contextmanager
def _quiet():
  """TFDS logs every custom config and prepare step as warnings; errors still show."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def builder(data_config):
  """The TFDS builder for config.data (not yet prepared)."""
  with _quiet():
    return _builder(data_config)


def _builder(data_config):
  root = data_dir(data_config)
  if data_config.dataset == 'python_stdlib':
    return PythonStdlib(config=stdlib_config(data_config.val_percent), data_dir=root,
                        file_format='array_record')
  if data_config.dataset == 'local_text':
    return LocalText(config=local_text_config(data_config), data_dir=root,
                     file_format='array_record')
  try:
    return tfds.builder(data_config.dataset, data_dir=root, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f'config.data.dataset={data_config.dataset!r} is neither one of python_stdlib, '
                    'local_text, random nor a TFDS catalogue dataset') from None


@contextlib.contextmanager
def preparing(data_config):
  """Holds an exclusive lock on the data dir while a process prepares a dataset or trains a
  tokenizer, so concurrent runs of a sweep on a fresh machine wait for the first one instead
  of racing it (TFDS's final rename fails for the second)."""
  root = data_dir(data_config)
  try:
    os.makedirs(root, exist_ok=True)
    lock = open(os.path.join(root, '.lmjax-prepare.lock'), 'w')  # noqa: SIM115
  except OSError:  # a read-only data dir: prepared elsewhere, nothing to race
    yield
    return
  with lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


class Prepared(NamedTuple):
  """A prepared dataset: what the rest of lmjax asks of it, answered once."""
  builder: Any
  train_split: str
  eval_split: str
  feature: str            # the text feature

  @property
  def data_dir(self) -> str:
    return self.builder.data_dir

  @property
  def skipped_non_utf8(self) -> int:
    """Files a local corpus left out for not being UTF-8 (config.data.non_utf8=skip)."""
    return (self.builder.info.metadata or {}).get('skipped_non_utf8') or 0

  def source(self, split):
    """Random-access records {'text': ..., ...} of one split; DataError naming the splits."""
    if split not in self.builder.info.splits:
      raise DataError(f'split {split!r} is not one of {", ".join(self.builder.info.splits)} '
                      '(config.data.train_split / eval_split)')
    return self.builder.as_data_source(split=split)


def prepare(data_config) -> Prepared:
  """Prepares the dataset if needed (call under `preparing`); DataError naming the way out when
  it cannot be, or when its text feature is not one of the dataset's."""
  b = _prepared_builder(data_config)
  train_split, eval_split = splits(data_config)
  feature = data_config.text_feature if data_config.dataset not in LOCAL else 'text'
  prepared = Prepared(b, train_split, eval_split, feature)
  first = prepared.source(train_split)[0]
  if feature not in first:
    raise DataError(f'config.data.text_feature={feature!r} is not a feature of '
                    f'{data_config.dataset}: one of {", ".join(first)}')
  return prepared


def _prepared_builder(data_config):
  """The dataset's builder, prepared."""
  b = builder(data_config)
  if data_config.dataset in LOCAL:
    with _quiet():
      b.download_and_prepare()
    return b
  if b.is_prepared():
    return b
  # TFDS retries a failed download 10 times with backoff; offline, that is minutes of waiting
  # for an answer that is already known. One retry is enough to ride out a transient error.
  from tensorflow_datasets.core.download import downloader
  retries, downloader.MAX_RETRIES = downloader.MAX_RETRIES, 1
  try:
    b.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except  (requests, TFDS and gcs errors vary)
    raise DataError(
        f'config.data.dataset={data_config.dataset!r} is not prepared in {data_dir(data_config)} '
        f'and preparing it failed ({one_line(e, 120)}); prepare it '
        'where you are online and copy the TFDS data dir here (config.data.data_dir), or train '
        'on local files with config.data.dataset=local_text and config.data.paths=DIR') from None
  finally:
    downloader.MAX_RETRIES = retries
  return b


def splits(data_config):
  """(train split name, eval split name)."""
  if data_config.dataset in LOCAL:
    return 'train', 'validation'
  return data_config.train_split, data_config.eval_split


