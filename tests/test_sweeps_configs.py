from ml_collections import ConfigDict

from lmjax import sweeps
from lmjax.config import default_config
from tests.sweeps_testing import TINY, one_line_error


def test_unknown_override_is_named():
  run = sweeps.Run('r', {'model.colour': 'red'}, 1, 1, 1, 1.0, 1.0, 0, 'grid')
  assert 'run r: no such config field config.model.colour' in one_line_error(
      lambda: sweeps.resolve_run(TINY, run))


def test_load_config_from_a_file_or_a_copy():
  config = sweeps.load_config(TINY)
  assert isinstance(config, ConfigDict)
  base = default_config()
  copied = sweeps.load_config(base)
  copied.optim.lr = 123.0
  assert base.optim.lr != 123.0  # a copy: the caller's config is untouched
  assert sweeps.repo_path(TINY).endswith(TINY) and sweeps.repo_path('/abs.py') == '/abs.py'


def test_load_config_errors(tmp_path):
  assert 'nope.py: no such file' in one_line_error(lambda: sweeps.load_config('nope.py'))
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config():\n  return 3\n')
  assert 'get_config() returned int, not a ConfigDict' in one_line_error(
      lambda: sweeps.load_config(str(bad)))


def test_apply_overrides_sets_dotted_fields_and_names_bad_ones():
  overrides = {'optim.lr': 0.5, 'checkpoint.keep_steps': [3, 6]}
  config = sweeps.apply_overrides(default_config(), overrides)
  assert config.optim.lr == 0.5 and config.checkpoint.keep_steps == (3, 6)
  assert one_line_error(lambda: sweeps.apply_overrides(default_config(), {'optim.nope': 1}, 'x: ')) == (
      'x: no such config field config.optim.nope')
  assert 'config.optim.lr=' in one_line_error(
      lambda: sweeps.apply_overrides(default_config(), {'optim.lr': 'fast'}))


def test_counts_is_named():
  resolved = sweeps.resolve_run(TINY, sweeps.Run('r', {}, 1, 1, 1, 1.0, 1.0, 0, 'grid'))
  counts = sweeps.counts(resolved)
  assert counts == (counts.N, counts.N_no_emb, counts.flops_per_token,
                    counts.flops_per_token_causal, counts.N_active, counts.N_active_no_emb)
  assert (counts.N_active, counts.N_active_no_emb) == (counts.N, counts.N_no_emb)  # dense
  assert 0 < counts.N_no_emb < counts.N and counts.flops_per_token > 6 * counts.N_no_emb
