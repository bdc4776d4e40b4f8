"""metrics.jsonl: whole rows only, torn lines skipped, truncation on resume, TensorBoard."""
import json
import os

from lmjax.train.metrics import MetricsWriter, read_metrics, truncate_metrics


def test_rows_are_written_whole_and_read_back(tmp_path):
  writer = MetricsWriter(str(tmp_path), stream=open(os.devnull, 'w'))
  writer.write({'step': 1, 'loss': 2.5})
  writer.write({'step': 2, 'loss': float('nan'), 'eval_loss': float('inf')})
  writer.close()
  rows = read_metrics(tmp_path / 'metrics.jsonl')
  assert rows == [{'step': 1, 'loss': 2.5}, {'step': 2, 'loss': 'nan', 'eval_loss': 'inf'}]
  assert any(name.startswith('events') for name in os.listdir(tmp_path / 'tb'))


def test_a_torn_last_line_is_skipped(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_bytes(b'{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
  assert [r['step'] for r in read_metrics(path)] == [1, 2]


def test_truncate_keeps_rows_up_to_the_step_and_drops_a_torn_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [{'step': s, 'loss': 1.0 / s} for s in (1, 2, 3, 4)] + [{'step': 4, 'eval_loss': 0.5}]
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows) + '{"step": 5')
  assert truncate_metrics(path, 2) == 3
  assert read_metrics(path) == rows[:2]
  assert path.read_text().endswith('\n')
  assert sorted(os.listdir(tmp_path)) == ['metrics.jsonl']  # no temporary left behind
  assert truncate_metrics(tmp_path / 'missing.jsonl', 2) == 0


def test_a_live_line_is_redrawn_only_on_a_terminal(tmp_path):
  class Tty:
    def __init__(self):
      self.text = ''

    def isatty(self):
      return True

    def write(self, s):
      self.text += s

    def flush(self):
      pass
  tty = Tty()
  writer = MetricsWriter(None, stream=tty)
  writer.print('step 1', live=True)
  writer.print('step 2', live=True)
  writer.print('eval')
  assert tty.text == '\r\033[Kstep 1\r\033[Kstep 2\neval\n'
  with open(tmp_path / 'out.txt', 'w') as plain:
    writer = MetricsWriter(None, stream=plain)
    writer.print('step 1', live=True)
    writer.print('eval')
  assert (tmp_path / 'out.txt').read_text() == 'step 1\neval\n'
