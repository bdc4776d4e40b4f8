"""lmjax/core/figures.py: figures on the Agg canvas, PNG bytes, no pyplot."""
import subprocess
import sys

from lmjax.core import figures


def test_figures_draw_to_png_without_pyplot(tmp_path):
  fig, axes = figures.figure(2, width=3, height=2)
  assert len(axes) == 2 and fig.get_size_inches().tolist() == [6, 2]
  axes[0].plot([1, 2], [3, 4])
  assert figures.png(fig)[:8] == b'\x89PNG\r\n\x1a\n'
  path = figures.write_png(fig, tmp_path / 'f.png')
  assert open(path, 'rb').read()[:4] == b'\x89PNG'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['f.png']  # no temporary left
  _, (top, bottom) = figures.figure(width=3, height=4, nrows=2, height_ratios=(3, 1), sharex=True)
  assert top.get_position().height > 2 * bottom.get_position().height
  # Drawing never imports pyplot, so a notebook's backend and figure list stay its own.
  code = ('import sys, matplotlib; matplotlib.use("svg"); from lmjax.core import figures; '
          'figures.png(figures.figure()[0]); '
          'print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert out.stdout.split() == ['svg', 'False'], out.stderr[-2000:]
