"""Matplotlib figures on the Agg canvas, and their PNG bytes, for every room that draws
(lmjax.scaling's plots, lmjax.eval's pages, lmjax.analysis, the studies' figures).

No pyplot: a Figure made here is not in pyplot's figure list and drawing it never switches the
backend, so `lmjax.analysis` in a notebook leaves the notebook's matplotlib as it was, and
nothing needs closing.
"""
from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lmjax.core.atomic import write_bytes


def figure(ncols=1, width=6.4, height=4.6, **kwargs) -> tuple[Figure, list]:
  """(a Figure of `ncols` axes side by side, the axes), laid out with constrained layout;
  `kwargs` go to Figure.subplots (height_ratios, sharex, nrows, ...)."""
  fig = canvas(width * ncols, height)
  axes = fig.subplots(kwargs.pop('nrows', 1), ncols, squeeze=False, **kwargs).ravel()
  return fig, list(axes)


def canvas(width=6.4, height=4.6) -> Figure:
  """An empty Figure on the Agg canvas, with constrained layout."""
  fig = Figure(figsize=(width, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig


def png(fig: Figure, dpi=100) -> bytes:
  """The figure as PNG bytes."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi)
  return buf.getvalue()


def write_png(fig: Figure, path, dpi=100) -> str:
  """Writes the figure as a PNG file, atomically; returns the path."""
  return write_bytes(str(path), png(fig, dpi))
