import json
from pathlib import Path

import numpy as np
import pytest

from lmjax.scaling import table

SCALING = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'scaling'
needs_shared = pytest.mark.skipif(not SCALING.is_dir(),
                                  reason='published scaling data not found at '
                                         '../shared/data/scaling (it lives outside the repo)')


def _csv(tmp_path, text, name='runs.csv'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _error(fn):
  with pytest.raises(table.TableError) as e:
    fn()
  message = str(e.value)
  assert '\n' not in message
  return message


def test_csv_aliases_tags_and_6nd(tmp_path):
  path = _csv(tmp_path, 'params,tokens,val_loss,config\n1e8,2e9,3.1,abc\n2e8,4e9,2.9,def\n')
  t = table.load_runs(path)
  assert len(t) == 2 and t.N.dtype == np.float64
  np.testing.assert_allclose(t.C, 6 * t.N * t.D)
  assert t.derived == ('C = 6ND',)
  assert list(t.tags['config']) == ['abc', 'def']
  assert t.meta['columns'] == {'N': 'params', 'D': 'tokens', 'loss': 'val_loss'}


def test_d_from_c_and_column_map(tmp_path):
  path = _csv(tmp_path, 'size,flop,L\n1e8,1.2e18,3.0\n')
  t = table.load_runs(path, {'n': 'size', 'c': 'flop', 'loss': 'L'})
  assert t.derived == ('D = C/(6N)',)
  np.testing.assert_allclose(t.D, 1.2e18 / 6e8)


def test_json_records_and_columns(tmp_path):
  records = tmp_path / 'r.json'
  records.write_text(json.dumps([{'N': 1e8, 'D': 2e9, 'loss': 3.0, 'run': 'a'},
                                 {'N': 2e8, 'D': 2e9, 'loss': 2.8, 'run': 'b'}]))
  columns = tmp_path / 'c.json'
  columns.write_text(json.dumps({'runs': {'N': [1e8, 2e8], 'D': [2e9, 2e9], 'loss': [3.0, 2.8]}}))
  a, b = table.load_runs(str(records)), table.load_runs(str(columns))
  np.testing.assert_array_equal(a.loss, b.loss)
  assert list(a.where(run='b').N) == [2e8]


def test_float32_input_becomes_float64():
  n = np.array([1e8, 1e9], np.float32)
  t = table.from_columns(dict(N=n, D=np.array([1e10, 1e11], np.float32), loss=[3.0, 2.5]))
  assert t.N.dtype == t.C.dtype == np.float64
  # 6ND = 6e21 is exact in float64; the product taken in float32 would round.
  assert t.C[1] == 6.0 * float(np.float32(1e9)) * float(np.float32(1e11))


@pytest.mark.parametrize('text, expect', [
    ('N,D,loss\n', 'no rows'),
    ('N,D,loss\n1e8,1e9,nan\n', 'row 1 (line 2): loss = nan'),
    ('N,D,loss\n1e8,1e9,3\n-5,1e9,3\n', 'row 2 (line 3): N = -5.0'),
    ('N,D,loss\n1e8,1e9,3\n1e8,0,3\n', 'row 2 (line 3): D = 0.0'),
    ('N,D,loss\n1e8,1e9,abc\n', "row 1 (line 2): loss = 'abc' is not a number"),
    ('N,D\n1e8,1e9\n', 'no loss column'),
    ('N,loss\n1e8,3\n', 'needs a tokens column D'),
    ('N,D,loss\n1e8,1e9\n', 'row 1 (line 2): 2 fields'),
    ('', 'empty file'),
])
def test_bad_tables_one_line_errors(tmp_path, text, expect):
  assert expect in _error(lambda: table.load_runs(_csv(tmp_path, text)))


def test_bad_paths_and_maps(tmp_path):
  assert 'no such file' in _error(lambda: table.load_runs(str(tmp_path / 'nope.csv')))
  assert 'unknown table type' in _error(lambda: table.load_runs(_csv(tmp_path, 'x', 'r.txt')))
  path = _csv(tmp_path, 'N,D,loss\n1e8,1e9,3\n')
  assert "no column 'size'" in _error(lambda: table.load_runs(path, {'n': 'size'}))
  assert "unknown field 'q'" in _error(lambda: table.load_runs(path, {'q': 'N'}))
  assert "no tag column 'run'" in _error(lambda: table.load_runs(path).where(run='a'))


def test_counting_embeddings(tmp_path):
  path = _csv(tmp_path, 'N,N_no_emb,D,loss\n1e8,6e7,1e9,3\n2e8,1.5e8,1e9,2.9\n')
  t = table.load_runs(path)
  no_emb = t.with_n('N_no_emb')
  np.testing.assert_array_equal(no_emb.N, [6e7, 1.5e8])
  np.testing.assert_allclose(no_emb.C, 6 * no_emb.N * t.D)  # C was 6ND, so it follows N
  assert 'no N_no_emb column' in _error(
      lambda: table.load_runs(_csv(tmp_path, 'N,D,loss\n1e8,1e9,3\n', 'b.csv')).with_n('N_no_emb'))


def test_drop_highest_loss():
  t = table.from_columns(dict(N=[1, 2, 3, 4], D=[1, 1, 1, 1], loss=[4.0, 1.0, 3.0, 2.0]))
  assert sorted(t.drop_highest_loss(2).loss) == [1.0, 2.0]


@needs_shared
def test_epoch_file_is_recognised():
  t = table.load_runs(str(SCALING / 'epoch_chinchilla' / 'svg_extracted_data.csv'))
  assert t.meta['format'] == 'epoch_chinchilla' and len(t) == 245
  assert t.derived == ('D = C/(6N)',)
  kept = t.drop_highest_loss(t.meta['drop_highest_loss'])
  assert len(kept) == 240  # the rows Besiroglu et al. 2024 fit
  assert kept.loss.max() < 4.0


@needs_shared
def test_other_published_files_load():
  p = table.load_runs(str(SCALING / 'porian2024' / 'porian2024_isoflop_points.csv'))
  assert len(p) == 1745 and p.meta['columns']['D'] == 't' and p.derived == ()
  m = table.load_runs(str(SCALING / 'misfitting2025' / 'scaling_results_last_ckpt_only.csv'))
  assert m.N_no_emb is not None and (m.N_no_emb < m.N).all()
