"""A run directory's layout and files: metrics rows read whole, truncation, summaries of every
lmjax version, creating (one-line errors, nothing left behind) and locking."""
import json
import os

import pytest

from lmjax.core.rundir import RunDir, RunDirError, read_metrics, remove_created


def test_a_torn_last_line_is_skipped(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_bytes(b'{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
  assert [r['step'] for r in read_metrics(path)] == [1, 2]
  assert RunDir(tmp_path).read_metrics() == read_metrics(path)
  assert RunDir(tmp_path / 'none').read_metrics() == []


def test_truncate_keeps_rows_up_to_the_step_and_drops_a_torn_line(tmp_path):
  run = RunDir(tmp_path)
  rows = [{'step': s, 'loss': 1.0 / s} for s in (1, 2, 3, 4)] + [{'step': 4, 'eval_loss': 0.5}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows)
                                          + '{"step": 5')
  assert run.truncate_metrics(2) == 3
  assert run.read_metrics() == rows[:2]
  assert (tmp_path / 'metrics.jsonl').read_text().endswith('\n')
  assert sorted(os.listdir(tmp_path)) == ['metrics.jsonl']  # no temporary left behind
  assert RunDir(tmp_path / 'missing').truncate_metrics(2) == 0


def test_summaries_of_older_runs_read_with_todays_names(tmp_path):
  run = RunDir(tmp_path)
  assert run.read_summary() is None and not run.is_finished()
  (tmp_path / 'summary.json').write_text(json.dumps(
      {'params': 10, 'params_non_embedding': 4, 'eval_loss': 2.0}))
  assert run.read_summary() == {'N': 10, 'N_no_emb': 4, 'eval_loss': 2.0} and run.is_finished()
  run.write_summary({'N': 11, 'N_no_emb': 5})
  assert run.read_summary() == {'N': 11, 'N_no_emb': 5}


def test_an_unreadable_config_is_one_line(tmp_path):
  run = RunDir(tmp_path)
  assert run.read_config() is None and not run.is_run()
  (tmp_path / 'config.json').write_text('{"model": ')
  with pytest.raises(RunDirError, match='config.json is unreadable'):
    run.read_config()
  assert run.is_run()


def test_a_directory_that_cannot_be_made_is_one_line_and_leaves_nothing(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(RunDirError, match='is a file, not a directory'):
    RunDir(tmp_path / 'file').create()
  with pytest.raises(RunDirError, match=r'cannot be created \(.*\)'):
    RunDir('/proc/lmjax/run').create()
  os.chmod(tmp_path, 0o500)
  try:
    if not os.access(tmp_path, os.W_OK):  # root writes anywhere
      with pytest.raises(RunDirError, match='cannot be created'):
        RunDir(tmp_path / 'a' / 'b').create()
  finally:
    os.chmod(tmp_path, 0o700)
  made = RunDir(tmp_path / 'x' / 'y' / 'run').create()
  assert made == [str(tmp_path / 'x'), str(tmp_path / 'x' / 'y'), str(tmp_path / 'x' / 'y' / 'run')]
  remove_created(made)
  assert sorted(os.listdir(tmp_path)) == ['file']


def test_one_writer_at_a_time(tmp_path):
  run = RunDir(tmp_path)
  held = run.lock()
  with pytest.raises(RunDirError, match='another launch.train is running on it'):
    run.lock()
  held.close()
  run.lock().close()


def test_checkpoints_count_once_orbax_has_committed_them(tmp_path):
  run = RunDir(tmp_path)
  assert not run.has_checkpoints() and not run.has_checkpoint(4)
  os.makedirs(run.checkpoint(4))
  assert run.has_checkpoints() and not run.has_checkpoint(4)
  (tmp_path / 'checkpoints' / '4' / '_CHECKPOINT_METADATA').write_text('{}')
  assert run.has_checkpoint(4)
