"""launch.train: trains both presets, leaves a finished run alone, resumes an unfinished one."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # launch.train subprocesses that train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(tmp_path, *flags):
  return subprocess.run([sys.executable, '-m', 'launch.train',
                         '--config=experiments/configs/tiny.py', f'--workdir={tmp_path}/run',
                         *flags], cwd=ROOT, capture_output=True, text=True)


def test_launcher_trains_both_presets_skips_a_finished_run_and_resumes(tmp_path):
  for preset in ('vaswani', 'llama'):
    run = tmp_path / preset
    out = _launch(run, f'--config.model.preset={preset}', '--config.train.steps=20')
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'bits per byte' in out.stdout
    assert json.loads((run / 'run' / 'config.json').read_text())['model']['preset'] == preset
  out = _launch(tmp_path / 'llama', '--config.train.steps=20')
  assert out.returncode == 0 and 'finished run' in out.stdout
  os.remove(tmp_path / 'llama' / 'run' / 'summary.json')
  before = (tmp_path / 'llama' / 'run' / 'metrics.jsonl').read_bytes()
  out = _launch(tmp_path / 'llama', '--config.train.steps=20')
  assert out.returncode == 0 and 'resumed from the checkpoint at step 20' in out.stdout
  assert (tmp_path / 'llama' / 'run' / 'metrics.jsonl').read_bytes() == before


def test_second_run_of_a_config_loads_its_step_from_the_compilation_cache(tmp_path):
  """The cache beside the runs (train.compile_cache=auto): the first run compiles and stores,
  the second, in another workdir beside it, loads the same train step; none stores nothing."""
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  summaries = []
  # The third run's model is deeper: its train step is new, though smaller programs (the eval
  # step's pieces, initialisation) may come from the cache.
  for name, layers in (('first', 2), ('second', 2), ('deeper', 3)):
    out = subprocess.run([sys.executable, '-m', 'launch.train',
                          '--config=experiments/configs/tiny.py', f'--workdir={tmp_path}/{name}',
                          '--config.train.steps=2', '--config.optim.warmup_steps=1',
                          f'--config.model.n_layers={layers}'],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f'compilation cache: {tmp_path}/jax_cache' in out.stdout
    assert ('loaded the train step from the compilation cache' in out.stdout) == (
        name == 'second')
    summaries.append(json.loads((tmp_path / name / 'summary.json').read_text()))
  assert [s['compile_cache_hit'] for s in summaries] == [False, True, False]
  assert os.listdir(tmp_path / 'jax_cache')
  out = _launch(tmp_path / 'off', '--config.train.steps=2', '--config.optim.warmup_steps=1',
                '--config.train.compile_cache=none')
  assert out.returncode == 0 and 'compilation cache' not in out.stdout
  assert json.loads((tmp_path / 'off' / 'run' / 'summary.json').read_text())[
      'compile_cache_hit'] is False
  assert sorted(os.listdir(tmp_path / 'off')) == ['run']
