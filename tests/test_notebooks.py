"""Every notebook in experiments/notebooks executes headless (nbclient) against a tiny sweep of two
recipes that this test trains (experiments/sweeps/micro_presets.py): no cell may raise, and every
cell tagged `figure` must put an image in its outputs. Notebooks are stored without outputs."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, 'experiments', 'notebooks', '*.ipynb')))


def test_notebooks_are_stored_without_outputs():
  nbformat = pytest.importorskip('nbformat')
  assert {os.path.basename(p) for p in NOTEBOOKS} >= {'scaling_analysis.ipynb',
                                                       'run_inspection.ipynb'}
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
      if cell.cell_type == 'code':
        assert not cell.outputs and cell.execution_count is None, path
    assert "'google.colab' in sys.modules" in nb.cells[1].source, f'{path}: no Colab setup cell'


@pytest.mark.slow
def test_every_notebook_executes_on_a_tiny_sweep(tmp_path, monkeypatch):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  sweep_dir = tmp_path / 'sweep'
  out = subprocess.run([sys.executable, '-m', 'launch.sweep', '--sweep=micro_presets',
                        f'--workdir={sweep_dir}', '--parallel=2', '--cpus_per_run=1'],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  runs = sorted(os.listdir(sweep_dir / 'runs'))
  env = dict(LMJAX_SWEEP_DIR=str(sweep_dir), LMJAX_OUT_DIR=str(tmp_path / 'fits'),
             LMJAX_BOOTSTRAP='40', LMJAX_RUN_DIR=str(sweep_dir / 'runs' / runs[-1]),
             LMJAX_EVAL_DOCUMENTS='8', LMJAX_MAX_NEW_TOKENS='12', JAX_PLATFORMS='cpu')
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': ROOT}})
    try:
      client.execute()
    except nbclient.exceptions.CellExecutionError as e:
      pytest.fail(f'{os.path.basename(path)}: a cell raised: {str(e)[-2000:]}')
    for i, cell in enumerate(nb.cells):
      if 'figure' in cell.metadata.get('tags', []):
        images = [o for o in cell.outputs if 'image/png' in o.get('data', {})]
        assert images, f'{os.path.basename(path)} cell {i}: a figure cell drew no image'
  assert (tmp_path / 'fits' / 'fits.json').is_file()
