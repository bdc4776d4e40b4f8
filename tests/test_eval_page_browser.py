"""The per-token log-prob page (lmjax/eval/pages.py) opened in a real headless browser: Chromium
from Debian's packages (apt-get install chromium), skipped where it is not installed. The DOM the
browser builds must hold every piece of the text in order, one coloured span per piece with its
log-probability and top alternatives as the hover title, and the screenshot must show the
colours (pixels of the red scale, not only white)."""
import html
import re
import shutil
import subprocess

import numpy as np
import pytest

from lmjax.eval import pages

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
TEXT = 'def f(x):\n\treturn x + 1  # héllo ✓\n'


def _page_tokens():
  """A page of one byte-level document: nats rising along it, top alternatives per token."""
  ids = np.frombuffer(TEXT.encode(), np.uint8).astype(np.int64)
  n = len(ids)
  return dict(doc=np.zeros(n, int), token=ids, nats=np.linspace(0.01, 9.0, n),
              top_id=np.stack([ids, (ids + 1) % 256], 1),
              top_logp=np.stack([np.full(n, -0.1), np.full(n, -2.5)], 1))


def _chromium(*args, timeout=120):
  return subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
                         '--disable-dev-shm-usage', *args], capture_output=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason='needs chromium (apt-get install chromium)')
def test_the_logprob_page_renders_in_headless_chromium(tmp_path):
  page = pages.logprob_page(_page_tokens(), lambda t: bytes([t]), names=['demo.py'],
                                 title='browser check')
  path = tmp_path / 'page.html'
  path.write_text(page, encoding='utf-8')
  out = _chromium('--dump-dom', path.as_uri())
  assert out.returncode == 0, out.stderr[-2000:]
  dom = out.stdout.decode('utf-8')
  spans = re.findall(r'<span style="background:(rgb\(\d+, ?\d+, ?\d+\))" title="([^"]*)">'
                     r'([^<]*)</span>', dom)
  shown = ''.join(html.unescape(text) for _, _, text in spans)
  assert shown.replace('↵', '').replace('→', '') == TEXT  # every piece, in order
  assert len(spans) == len(TEXT)  # one span per character (é and ✓ are one piece each)
  first_title = html.unescape(spans[0][1])
  assert first_title.startswith("'d': -0.010 nats; top: 'd' -0.10, 'e' -2.50")
  assert re.search(r'<h2>demo\.py: \d+ tokens, [\d.]+ nats/token</h2>', dom)
  shot = tmp_path / 'page.png'
  out = _chromium(f'--screenshot={shot}', '--window-size=900,500', path.as_uri())
  assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
  import matplotlib.image
  rgb = (matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
  reddish = (rgb[..., 0] > 230) & (rgb[..., 1] < 140) & (rgb[..., 2] < 140)
  assert reddish.sum() > 50, 'no strongly red token backgrounds were drawn'
