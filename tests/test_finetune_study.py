"""The fine-tuning study's command (experiments/finetune.py) end to end at its mini scale: the
stdlib instruction pairs split by file as the corpus is, a base, every SFT variant and DPO, and
the report's tables."""
import json
import os
import subprocess
import sys

import pytest

from experiments import finetune_data
from lmjax.data import datasets

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_pairs_are_split_by_file_as_the_corpus_and_corrupted_by_reversing():
  assert finetune_data.corrupted('a = 1\nreturn a\n') == 'return a\na = 1\n'
  assert finetune_data.corrupted('return 1\n') is None
  pairs = finetune_data.pairs(200, max_files=300)
  for split, rows in pairs.items():
    assert rows and all(len((r['prompt'] + r['completion']).encode()) <= 200 for r in rows)
    assert all(datasets.is_validation(r['file'], 5) == (split == 'validation') for r in rows)
    assert all(r['prompt'].startswith(('def ', 'async def ', '@')) for r in rows)


def test_the_mini_study_runs_every_stage_and_reports(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'experiments.finetune', f'--workdir={tmp_path}',
                        '--scale=mini', '--seeds=1'], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / 'results.json').read_text())
  assert set(results['sft']) == {f'd32_{v}_s0' for v in
                                 ('full', 'full_nomask', 'lora_r4', 'lora_r16')}
  lora = results['sft']['d32_lora_r4_s0']
  assert lora['N_trainable'] < results['sft']['d32_full_s0']['N_trainable']
  assert 0 <= results['dpo']['d32_dpo_s0']['eval_reward_accuracy'] <= 1
  table = (tmp_path / 'results.md').read_text()
  assert '| d32 | lora_r16 |' in table and 'held-out reward accuracy' in table
