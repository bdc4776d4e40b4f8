"""The runs table: one row per training run (or checkpoint), the input of every fit.

Columns (float64), named as everywhere in lmjax (lmjax/model/flops.py):
- `N`: parameters, as the source counts them (with or without embeddings: see `n_counts`);
- `N_no_emb`: parameters without embeddings (Kaplan et al. 2020, Sec. 2.1), when the source has
  them; fits are then reported for both counts;
- `D`: training tokens; `C`: training FLOPs; `loss`: final loss (nats).
When C is absent it is taken as C = 6ND (Kaplan et al. 2020, Sec. 2.1; Hoffmann et al. 2022,
Sec. 3); when D is absent, D = C/(6N), which is how Besiroglu et al. 2024 recover tokens from
Chinchilla's Figure 4. Which of the two happened is recorded in `derived`.

Every other column is a free-form tag (strings): a grouping, a config hash, a learning rate.

Column names are matched by alias (`ALIASES`, exact then case-insensitive), or mapped by hand
(`columns={'N': 'Model Size'}`; field names in any case). Known published files are recognised by
their header (`FORMATS`), which also carries that source's conventions (the Epoch AI file drops its
5 highest-loss points and has Chinchilla's nine IsoFLOP budgets).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import numpy as np

from lmjax.core.errors import LmjaxError

FIELDS = ('N', 'N_no_emb', 'D', 'C', 'loss')
FIELD_OF = {f.lower(): f for f in FIELDS}  # a column map may name a field in any case

ALIASES = {
    'N': ('N', 'params', 'parameters', 'Model Size', 'model_size', 'num_params'),
    'N_no_emb': ('N_no_emb', 'N_non_embedding', 'non_embedding_params', 'params_no_emb',
                 'params_non_embedding'),
    'D': ('D', 'tokens', 'Training Tokens', 'train_tokens', 't'),
    'C': ('C', 'flops', 'FLOPs', 'Training FLOP', 'compute', 'budget'),
    'loss': ('loss', 'Loss', 'val_loss', 'eval_loss', 'final_loss'),
}

# Chinchilla's nine IsoFLOP budgets (Hoffmann et al. 2022, Fig. 3).
CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)

FORMATS = {
    # Besiroglu et al. 2024 (Epoch AI), reconstruction of Hoffmann et al. 2022, Fig. 4 (left).
    'epoch_chinchilla': dict(
        header=('x', 'y', 'color', 'Model Size', 'Training FLOP', 'hex_color', 'loss'),
        columns={'N': 'Model Size', 'C': 'Training FLOP', 'loss': 'loss'},
        drop_highest_loss=5, budgets=CHINCHILLA_BUDGETS, budget_rtol=0.1,
        note='Epoch AI reconstruction of Chinchilla Fig. 4: D = C/(6N); the 5 highest-loss '
             'points are dropped as Besiroglu et al. 2024 do; IsoFLOP budgets snapped to '
             'Chinchilla\'s nine (10%)'),
}


class TableError(LmjaxError, ValueError):
  """A runs table that cannot be fitted; the message is one line and names the row or column."""


@dataclasses.dataclass(frozen=True)
class RunsTable:
  N: np.ndarray
  D: np.ndarray
  C: np.ndarray
  loss: np.ndarray
  N_no_emb: np.ndarray | None = None
  tags: dict = dataclasses.field(default_factory=dict)
  rows: np.ndarray | None = None      # 1-based row number in the source, for messages
  source: str = '<arrays>'
  derived: tuple = ()                 # e.g. ('C = 6ND',) or ('D = C/(6N)',)
  meta: dict = dataclasses.field(default_factory=dict)  # format conventions, column map

  def __len__(self):
    return len(self.loss)

  def subset(self, mask_or_index) -> 'RunsTable':
    """The rows picked by a boolean mask or an index array (repeats allowed)."""
    ix = np.asarray(mask_or_index)
    if ix.dtype == bool:
      ix = np.nonzero(ix)[0]
    pick = lambda a: None if a is None else a[ix]
    return dataclasses.replace(
        self, N=self.N[ix], D=self.D[ix], C=self.C[ix], loss=self.loss[ix],
        N_no_emb=pick(self.N_no_emb), tags={k: v[ix] for k, v in self.tags.items()},
        rows=pick(self.rows))

  def where(self, **equals) -> 'RunsTable':
    """Rows whose tags equal the given strings, e.g. where(label='Cosine decay')."""
    mask = np.ones(len(self), bool)
    for key, value in equals.items():
      if key not in self.tags:
        raise TableError(f'{self.source}: no tag column {key!r} (tags: '
                         f'{", ".join(sorted(self.tags)) or "none"})')
      mask &= self.tags[key] == str(value)
    return self.subset(mask)

  def drop_highest_loss(self, k: int) -> 'RunsTable':
    """Drops the rows whose loss is >= the k-th largest (Besiroglu et al. 2024 drop 5)."""
    if k <= 0:
      return self
    if k >= len(self):
      raise TableError(f'{self.source}: cannot drop the {k} highest losses of {len(self)} rows')
    cut = np.sort(self.loss)[-k]
    return self.subset(self.loss < cut)

  def with_n(self, which: str) -> 'RunsTable':
    """The table with N kept ('N') or replaced by the count without embeddings ('N_no_emb').

    C is recomputed as 6·N_no_emb·D when it was 6ND to begin with; a C column read from the
    source is kept as it is (map C to another column to change it).
    """
    if which == 'N':
      return self
    if which != 'N_no_emb':
      raise TableError(f'N counting {which!r}: allowed N, N_no_emb')
    if self.N_no_emb is None:
      raise TableError(f'{self.source}: no N_no_emb column, cannot count N without embeddings')
    c = 6.0 * self.N_no_emb * self.D if 'C = 6ND' in self.derived else self.C
    return dataclasses.replace(self, N=self.N_no_emb, C=c)

  def describe(self) -> dict:
    return dict(source=self.source, rows=len(self), derived=list(self.derived),
                has_N_no_emb=self.N_no_emb is not None, tags=sorted(self.tags),
                **{k: v for k, v in self.meta.items() if k in ('format', 'columns', 'note')})


def _row_name(source, rows, i, line_offset):
  r = int(rows[i]) if rows is not None else i + 1
  return f'{source} row {r}' + (f' (line {r + line_offset})' if line_offset else '')


def _numeric(name, values, source, rows, line_offset):
  out = np.empty(len(values), np.float64)
  for i, v in enumerate(values):
    try:
      out[i] = float(v) if not isinstance(v, str) or v.strip() else math.nan
    except (TypeError, ValueError):
      raise TableError(f'{_row_name(source, rows, i, line_offset)}: {name} = {v!r} is not a '
                       'number') from None
  return out


def from_columns(columns: dict, *, source='<arrays>', rows=None, line_offset=0,
                 meta=None) -> RunsTable:
  """Builds and validates a table from canonical columns: N, loss, and D and/or C (float64).

  Missing c becomes 6ND, missing d becomes C/(6N). Every value must be finite and positive;
  the first that is not raises TableError naming its row and column.
  """
  cols = dict(columns)
  for need in ('N', 'loss'):
    if need not in cols or cols[need] is None:
      raise TableError(f'{source}: no {need} column (looked for {", ".join(ALIASES[need])}; '
                       f'map one with columns={{{need!r}: NAME}})')
  if cols.get('D') is None and cols.get('C') is None:
    raise TableError(f'{source}: needs a tokens column D (looked for {", ".join(ALIASES["D"])}) '
                     f'or a FLOPs column C (looked for {", ".join(ALIASES["C"])})')
  length = len(cols['loss'])
  if length == 0:
    raise TableError(f'{source}: no rows')
  numeric = {}
  for name in FIELDS:
    if cols.get(name) is not None:
      values = cols[name]
      if len(values) != length:
        raise TableError(f'{source}: column {name} has {len(values)} values, loss has {length}')
      numeric[name] = _numeric(name, list(values), source, rows, line_offset)
      bad = ~(np.isfinite(numeric[name]) & (numeric[name] > 0))
      if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise TableError(f'{_row_name(source, rows, i, line_offset)}: {name} = '
                         f'{float(numeric[name][i])!r}; N, D, C and loss must be finite and '
                         'positive')
  derived = []
  if 'C' not in numeric:
    numeric['C'] = 6.0 * numeric['N'] * numeric['D']
    derived.append('C = 6ND')
  if 'D' not in numeric:
    numeric['D'] = numeric['C'] / (6.0 * numeric['N'])
    derived.append('D = C/(6N)')
  tags = {k: np.asarray([str(x) for x in v], dtype=object) for k, v in cols.items()
          if k not in FIELDS}
  for k, v in tags.items():
    if len(v) != length:
      raise TableError(f'{source}: tag column {k} has {len(v)} values, loss has {length}')
  row_numbers = np.arange(1, length + 1) if rows is None else np.asarray(rows)
  return RunsTable(N=numeric['N'], D=numeric['D'], C=numeric['C'], loss=numeric['loss'],
                   N_no_emb=numeric.get('N_no_emb'), tags=tags, rows=row_numbers,
                   source=source, derived=tuple(derived), meta=dict(meta or {}))


def _resolve_columns(header, source, columns):
  """Maps canonical fields to the file's column names: explicit map, then aliases."""
  mapping = {}
  for given, name in (columns or {}).items():
    field = FIELD_OF.get(given.lower())
    if field is None:
      raise TableError(f'column map {given}={name}: unknown field {given!r}; allowed '
                       f'{", ".join(FIELDS)}')
    if name not in header:
      raise TableError(f'{source}: column map {field}={name}: no column {name!r} (columns: '
                       f'{", ".join(header)})')
    mapping[field] = name
  lower = {h.lower(): h for h in header}
  for field in FIELDS:
    if field in mapping:
      continue
    for alias in ALIASES[field]:
      if alias in header:
        mapping[field] = alias
        break
    else:
      for alias in ALIASES[field]:
        if alias.lower() in lower:
          mapping[field] = lower[alias.lower()]
          break
  return mapping


def recognise(header) -> str | None:
  """The name of a known published format whose header this is, or None."""
  for name, fmt in FORMATS.items():
    if tuple(header) == fmt['header']:
      return name
  return None


def _records_to_columns(records, source):
  header = []
  for i, rec in enumerate(records):
    if not isinstance(rec, dict):
      raise TableError(f'{source} row {i + 1}: expected an object, got {type(rec).__name__}')
    for k in rec:
      if k not in header:
        header.append(k)
  return header, {h: [rec.get(h, math.nan) for rec in records] for h in header}


def _read(path):
  if not os.path.isfile(path):
    raise TableError(f'{path}: no such file')
  if path.endswith('.json'):
    try:
      with open(path) as f:
        data = json.load(f)
    except json.JSONDecodeError as e:
      raise TableError(f'{path}: not valid JSON ({e.msg} at line {e.lineno})') from None
    if isinstance(data, dict) and 'runs' in data:
      data = data['runs']
    if isinstance(data, list):
      header, raw = _records_to_columns(data, path)
    elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
      header, raw = list(data), data
    else:
      raise TableError(f'{path}: expected a list of run objects, {{"runs": [...]}} or an object '
                       'of equal-length column lists')
    return header, raw, 0
  if not path.endswith(('.csv', '.tsv')):
    raise TableError(f'{path}: unknown table type; allowed .csv, .tsv, .json')
  with open(path, newline='') as f:
    reader = csv.reader(f, delimiter='\t' if path.endswith('.tsv') else ',')
    header = next(reader, None)
    if not header:
      raise TableError(f'{path}: empty file (no header)')
    body = [r for r in reader if r]
  for i, r in enumerate(body):
    if len(r) != len(header):
      raise TableError(f'{path} row {i + 1} (line {i + 2}): {len(r)} fields, header has '
                       f'{len(header)}')
  raw = {h: [r[j] for r in body] for j, h in enumerate(header)}
  return header, raw, 1


def load_runs(path: str, columns: dict | None = None) -> RunsTable:
  """Reads a CSV/TSV (header row) or JSON (records or columns) runs table; see module doc."""
  header, raw, line_offset = _read(path)
  fmt = recognise(header)
  meta = {}
  if fmt:
    meta = {k: v for k, v in FORMATS[fmt].items() if k != 'header'}
    meta['format'] = fmt
    columns = {**FORMATS[fmt]['columns'], **(columns or {})}
  mapping = _resolve_columns(header, path, columns)
  meta['columns'] = dict(mapping)
  used = set(mapping.values())
  cols = {field: raw[name] for field, name in mapping.items()}
  for h in header:
    if h not in used and h not in FIELDS:
      cols[h] = raw[h]
  return from_columns(cols, source=path, line_offset=line_offset, meta=meta)
