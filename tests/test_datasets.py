"""TFDS builders (local_text, python_stdlib): splits, preparation, bad input, a killed prepare."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import local_config
from lmjax.config import default_config, resolve
from lmjax.data import datasets, loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_stdlib_split_is_a_fixed_hash_of_the_path():
  import hashlib
  for rel in ('os.py', 'json/decoder.py', 'email/mime/text.py'):
    assert datasets.is_validation(rel, 5) == (
        int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 100 < 5)
  share = np.mean([datasets.is_validation(f'f{i}.py', 5) for i in range(4000)])
  assert 0.03 < share < 0.07


def test_local_text_prepares_both_splits_and_counts(corpus, tmp_path):
  c = local_config(corpus, tmp_path)
  d = loader.load(c)
  texts = sorted(p.read_text(encoding='utf-8') for p in corpus.iterdir())
  prepared = datasets.prepare(c.data)
  got = sorted(loader._text(src[i], 'text') for src in (prepared.source(split)
                                                      for split in ('train', 'validation'))
               for i in range(len(src)))
  assert got == texts
  assert d.stats['train']['documents'] + d.stats['eval']['documents'] == 60
  assert d.stats['train']['bytes'] + d.stats['eval']['bytes'] == sum(
      len(t.encode()) for t in texts)


def test_unknown_dataset_missing_directory_empty_corpus(tmp_path):
  c = default_config()
  c.data.data_dir = str(tmp_path / 'tfds')
  c.data.dataset = 'surely_not_a_dataset'
  with pytest.raises(datasets.DataError, match='neither one of python_stdlib, local_text'):
    loader.load(resolve(c))
  c.data.dataset, c.data.paths = 'local_text', str(tmp_path / 'missing')
  with pytest.raises(datasets.DataError, match='does not exist'):
    loader.load(resolve(c))
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'a.txt').write_text('   \n')
  c.data.paths = str(tmp_path / 'empty')
  with pytest.raises(datasets.DataError, match='split .* is empty'):
    loader.load(resolve(c))


def test_non_utf8_files_are_skipped_and_counted_or_fail(corpus, tmp_path):
  (corpus / 'latin1.txt').write_bytes('caf\xe9 cr\xe8me'.encode('latin-1'))
  c = local_config(corpus, tmp_path)
  b = datasets.prepare(c.data)
  assert b.skipped_non_utf8 == 1
  c = local_config(corpus, tmp_path / 'other', non_utf8='fail')
  with pytest.raises(datasets.DataError, match='latin1.txt is not UTF-8'):
    datasets.prepare(c.data)


def test_offline_catalogue_dataset_names_the_way_out(tmp_path):
  c = default_config()
  c.data.data_dir, c.data.dataset = str(tmp_path / 'tfds'), 'tiny_shakespeare'
  t0 = time.time()
  with pytest.raises(datasets.DataError, match='local_text'):
    datasets.prepare(resolve(c).data)
  assert time.time() - t0 < 60


@pytest.mark.slow  # a subprocess killed while preparing
def test_killed_prepare_leaves_nothing_a_later_run_reads(corpus, tmp_path):
  for i in range(400):  # enough files that preparing takes a moment
    (corpus / f'extra{i:03d}.txt').write_text(f'document {i}\n' * 200)
  c = local_config(corpus, tmp_path)
  code = ('import sys; from lmjax.data import datasets; from lmjax.config import default_config;'
          'c = default_config(); c.data.dataset = "local_text"; c.data.paths = sys.argv[1];'
          'c.data.data_dir = sys.argv[2]; c.data.val_percent = 20; datasets.prepare(c.data)')
  proc = subprocess.Popen([sys.executable, '-c', code, str(corpus), c.data.data_dir], cwd=ROOT)
  deadline = time.time() + 60
  while time.time() < deadline and proc.poll() is None:
    if any('incomplete' in name for _, dirs, _ in os.walk(c.data.data_dir) for name in dirs):
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL  # killed while preparing, not failed on its own
  assert not datasets.builder(c.data).is_prepared()
  d = loader.load(c)
  assert d.stats['train']['documents'] + d.stats['eval']['documents'] == 460
