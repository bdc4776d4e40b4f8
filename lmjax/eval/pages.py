"""What launch.eval draws: the reliability diagram, the loss against position, and the per-token
log-probability page (one self-contained HTML file, no scripts or external assets).

On the page each piece of text is coloured by the log-probability the model gave it (white:
certain; red: -8 nats or less); hovering shows each token's log-probability and the model's top
alternatives. Pieces are whole UTF-8 characters: tokens whose bytes only make a character
together (a byte-level model's multi-byte characters) share one piece and their log-probabilities
add. With a second run (`other`), the colour is the difference this − other per piece (green:
this run is better, red: worse, full at ±4 nats), as Levanter's `viz_logprobs` does.
"""
from __future__ import annotations

import html

import numpy as np

from lmjax.core.figures import figure, png
from lmjax.eval.per_token import ECE_BINS

FULL_NATS, FULL_DIFF = 8.0, 4.0


def reliability_png(report: dict, title: str) -> bytes:
  """Accuracy against confidence per bin, with the diagonal of perfect calibration and each
  bin's share of tokens."""
  cal = report['calibration']
  count = np.asarray(cal['count'], float)
  edges = np.linspace(0, 1, ECE_BINS + 1)
  centers, width = (edges[:-1] + edges[1:]) / 2, 1 / ECE_BINS
  used = count > 0
  fig, (ax, ax2) = figure(width=5, height=6, nrows=2, height_ratios=(3, 1), sharex=True)
  ax.bar(centers[used], np.asarray(cal['accuracy'])[used], width=width * 0.9, color='tab:blue',
         label='accuracy')
  ax.plot(np.asarray(cal['confidence'])[used], np.asarray(cal['accuracy'])[used], 'k.',
          label='mean confidence')
  ax.plot([0, 1], [0, 1], '--', color='gray', label='perfect calibration')
  ax.set(ylabel='accuracy of the top-1 token', xlim=(0, 1), ylim=(0, 1),
         title=f'{title}\nECE {report["ece"]:.4f} ({ECE_BINS} bins)')
  ax.legend(loc='upper left', fontsize=8)
  ax2.bar(centers, count / max(count.sum(), 1), width=width * 0.9, color='gray')
  ax2.set(xlabel='confidence (top-1 probability)', ylabel='share of tokens')
  return png(fig, dpi=120)


def position_png(report: dict, title: str) -> bytes:
  """Mean loss against the token's position in its context."""
  pos = report['by_position']
  fig, (ax,) = figure(width=6, height=4)
  ax.plot(np.asarray(pos['position']) + 1, pos['loss'], '-', lw=1)
  ax.set(xscale='log', xlabel='tokens of context (position + 1)', ylabel='loss (nats/token)',
         title=title)
  ax.grid(alpha=0.3)
  return png(fig, dpi=120)


def _pieces(tokens, piece_bytes):
  """Groups of consecutive token positions whose bytes decode as whole UTF-8 characters, with
  the text of each group."""
  groups, start, raw = [], 0, b''
  for i, t in enumerate(tokens):
    raw += piece_bytes(int(t))
    try:
      text = raw.decode('utf-8')
    except UnicodeDecodeError:
      if len(raw) < 4 and i + 1 < len(tokens):
        continue  # an incomplete character: wait for its next byte
      text = raw.decode('utf-8', errors='replace')
    groups.append((start, i + 1, text))
    start, raw = i + 1, b''
  return groups


def _colour(value, full, signed):
  """Background colour: white at 0, red (or green for positive, when signed) at `full`."""
  x = min(abs(value) / full, 1.0)
  fade = int(255 * (1 - 0.75 * x))
  if signed and value > 0:
    return f'rgb({fade},255,{fade})'
  return f'rgb(255,{fade},{fade})'


def _show(text: str) -> str:
  return html.escape(text).replace('\n', '↵\n').replace('\t', '→\t')


PAGE_TOKENS = 2000  # tokens shown per document (about 1 kB of HTML each)


def logprob_page(tokens: dict, piece_bytes, names=None, title='', other_nats=None,
                 other_title='', max_tokens=PAGE_TOKENS) -> str:
  """The HTML page of the documents in `tokens` (Tally.page_tokens()), the first `max_tokens`
  of each; `other_nats` (the same tokens' nats under a second run) colours by the difference."""
  show = lambda t: repr(piece_bytes(int(t)).decode('utf-8', errors='replace'))
  parts = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
           '</title><style>body{font-family:sans-serif;margin:2em}pre{font-family:monospace;'
           'white-space:pre-wrap;line-height:1.5}pre span{border-radius:2px}'
           'h2{font-size:1em;margin-top:2em}</style></head><body>',
           f'<h1>{html.escape(title)}</h1>']
  if other_nats is not None:
    parts.append(f'<p>Colour: log-probability of this run minus {html.escape(other_title)} '
                 f'(green: this run better, red: worse; full at ±{FULL_DIFF:g} nats).</p>')
  else:
    parts.append('<p>Colour: log-probability of each piece (white: certain, red: '
                 f'{-FULL_NATS:g} nats or less). Hover for the top alternatives.</p>')
  docs = tokens.get('doc', np.zeros(0, int))
  for d in np.unique(docs):
    every = np.flatnonzero(docs == d)
    idx = every[:max_tokens]
    name = names[d] if names is not None else f'document {d}'
    shown = f'the first {len(idx)} of ' if len(idx) < len(every) else ''
    parts.append(f'<h2>{html.escape(str(name))}: {shown}{len(every)} tokens, '
                 f'{tokens["nats"][every].mean():.3f} nats/token</h2><pre>')
    for a, b, text in _pieces(tokens['token'][idx], piece_bytes):
      rows = idx[a:b]
      logp = -float(tokens['nats'][rows].sum())
      lines = []
      for r in rows:
        alts = ', '.join(f'{show(t)} {lp:.2f}' for t, lp in
                         zip(tokens['top_id'][r], tokens['top_logp'][r]))
        lines.append(f'{show(tokens["token"][r])}: {-tokens["nats"][r]:.3f} nats; top: {alts}')
      if other_nats is not None:
        diff = float(other_nats[rows].sum()) + logp
        colour = _colour(diff, FULL_DIFF, signed=True)
        lines.append(f'this − other: {diff:+.3f} nats')
      else:
        colour = _colour(logp, FULL_NATS, signed=False)
      tip = html.escape('\n'.join(lines), quote=True)
      parts.append(f'<span style="background:{colour}" title="{tip}">{_show(text)}</span>')
    parts.append('</pre>')
  parts.append('</body></html>')
  return ''.join(parts)

