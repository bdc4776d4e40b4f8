"""metrics.jsonl rows written whole, TensorBoard events, the terminal line."""
import os

from lmjax.core.rundir import RunDir
from lmjax.train.metrics import MetricsWriter


def test_rows_are_written_whole_and_read_back(tmp_path):
  writer = MetricsWriter(str(tmp_path), stream=open(os.devnull, 'w'))
  writer.write({'step': 1, 'loss': 2.5})
  writer.write({'step': 2, 'loss': float('nan'), 'eval_loss': float('inf')})
  writer.close()
  rows = RunDir(tmp_path).read_metrics()
  assert rows == [{'step': 1, 'loss': 2.5}, {'step': 2, 'loss': 'nan', 'eval_loss': 'inf'}]
  assert any(name.startswith('events') for name in os.listdir(tmp_path / 'tb'))


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
