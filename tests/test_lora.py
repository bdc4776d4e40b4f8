"""Low-rank adapters (lmjax/model/lora.py): the base model exactly at initialisation, only the
adapters trained, merging them equal to applying them, the trainable count equal to Hu et al.'s
formula, and a target that matches nothing refused in one line."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from lmjax.config import ConfigError, default_config, resolve, set_fields
from lmjax.model import lora
from lmjax.train import loop, trained
from lmjax.train.steps import build_model, init_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**fields):
  c = default_config()
  c.data.seq_len, c.data.batch_size, c.data.eval_batches = 32, 8, 1
  c.checkpoint.async_save, c.optim.warmup_steps = False, 2
  return resolve(set_fields(c, fields))


def _tokens(seed=0, shape=(2, 32)):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.int32)


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize('fields', [
    dict(model__lora_targets='query,value'),
    dict(model__lora_targets='attn/.*,mlp/wo', model__preset='gpt2'),
    dict(model__lora_targets='query,key,value,out,wi,wi_gate,wo', model__scan_layers=True,
         model__n_kv_heads=2),
])
def test_at_init_the_model_is_the_base_and_merging_equals_applying(fields):
  base_cfg = _config(**fields)
  cfg = _config(model__lora_rank=4, model__lora_alpha=8.0, **fields)
  base_model, model = build_model(base_cfg), build_model(cfg)
  base = init_params(base_model, base_cfg, jax.random.PRNGKey(0))
  adapters, _ = lora.split(init_params(model, cfg, jax.random.PRNGKey(1)))
  params = lora.join(adapters, base)
  tokens = _tokens()
  want = np.asarray(base_model.apply({'params': base}, tokens))
  np.testing.assert_array_equal(np.asarray(model.apply({'params': params}, tokens)), want)
  # Trained-looking adapters (B ≠ 0): applying them equals folding them into the weights.
  rng = np.random.default_rng(2)
  moved = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype)
      if lora.is_adapter(p) else x, params)
  unmerged = np.asarray(model.apply({'params': moved}, tokens))
  merged = np.asarray(base_model.apply({'params': lora.merge(moved, model.cfg)}, tokens))
  assert np.abs(unmerged - want).max() > 1e-3  # the adapters do something
  np.testing.assert_allclose(merged, unmerged, atol=1e-5, rtol=0)
  assert lora.count(params) == lora.trainable(model.cfg)


def test_the_trainable_count_is_the_notes_formula():
  """Hu et al.: 2·d·r parameters per adapted d×d matrix; query and value in each of L layers."""
  cfg = _config(model__lora_rank=8, model__n_layers=3, model__d_model=64)
  params = init_params(build_model(cfg), cfg, jax.random.PRNGKey(0))
  assert lora.count(params) == lora.trainable(build_model(cfg).cfg) == 3 * 2 * (2 * 64 * 8)


def _tune(base_dir, steps, workdir):
  return loop.train(
      _config(data__dataset='random', train__steps=steps, train__eval_every=3, seed=1,
              train__log_every=1, checkpoint__every_steps=3, train__init_from=base_dir,
              train__init_params=True, train__init_step=-1, model__lora_rank=4,
              model__lora_targets='query,value,wo', optim__lr=1e-2), workdir)[0]


def test_training_changes_the_adapters_alone_which_the_checkpoints_hold(tmp_path):
  import shutil

  from lmjax.core.rundir import RunDir
  from lmjax.train.checkpoint import READ_ONLY, CheckpointError, Checkpoints
  base_dir, tuned, resumed = (str(tmp_path / n) for n in ('base', 'lora', 'resumed'))
  loop.train(_config(data__dataset='random', train__steps=4, train__eval_every=4), base_dir)
  _tune(base_dir, 6, tuned)
  # The checkpoint holds the adapters and their optimizer state alone, the base by reference.
  ckpts = Checkpoints(tuned, READ_ONLY, read_only=True)
  meta = ckpts.meta(6)
  ckpts.close()
  assert meta['base']['step'] == 4 and meta['base']['path'] == os.path.abspath(base_dir)
  saved = [k for k in meta['digests'] if k.startswith('params/')]
  assert saved and all('_lora_' in k for k in saved)
  # A resume (from step 3's adapters on the referenced base) gives the losses of no resume.
  _tune(base_dir, 3, resumed)
  _tune(base_dir, 6, resumed)
  rows = lambda d: [(r['step'], r.get('loss'), r.get('eval_loss')) for r in RunDir(d).read_metrics()]
  assert rows(resumed) == rows(tuned)
  before, after = _leaves(trained.load(base_dir).params), _leaves(trained.load(tuned).params)
  adapters = [k for k in after if k not in before]
  assert adapters and all('_lora_' in k for k in adapters)
  for k, value in before.items():
    np.testing.assert_array_equal(after[k], value, err_msg=k)  # the base, bit for bit
  assert all(np.abs(after[k]).max() > 0 for k in adapters if k.endswith("_lora_b']"))
  # Without its base the run cannot be read, and says which base it needs.
  shutil.rmtree(os.path.join(base_dir, 'checkpoints', '4'))
  with pytest.raises(trained.RunError, match='need its base model, step 4 of .*base'):
    trained.load(tuned)
  with pytest.raises(CheckpointError, match='need its base model, step 4 of'):
    _tune(base_dir, 9, tuned)  # a resume says so too, and sets nothing aside
  assert sorted(os.listdir(os.path.join(tuned, 'checkpoints'))) == ['3', '6']


def test_a_target_matching_no_projection_is_one_line_and_exit_2(tmp_path):
  with pytest.raises(ConfigError, match="'wq' matches none"):
    _config(model__lora_rank=4, model__lora_targets='query,wq')
  with pytest.raises(ConfigError, match="'wi_gate' matches none"):
    _config(model__lora_rank=4, model__lora_targets='wi_gate', model__preset='gpt2')
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp_path / "run"}', '--config.model.lora_rank=4',
       '--config.model.lora_targets=attention'], cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and 'config.model.lora_targets' in lines[0]
  assert "'attention' matches none" in lines[0] and not (tmp_path / 'run').exists()


def test_peft_loads_the_adapters_onto_the_exported_base_and_the_merged_export_agrees(tmp_path):
  """A LoRA run (q, k, v, o and the MLP adapted, GQA, untied) exported as a PEFT adapter and
  loaded by `peft` onto its base run's transformers export gives lmjax's logits (1e-4); so does
  the run's merged export, and the merged run directory (launch.convert --merge_lora)."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  peft = pytest.importorskip('peft')
  from lmjax.train.hf_runs import export_hf, export_peft, merge_lora
  base_dir, tuned = str(tmp_path / 'base'), str(tmp_path / 'lora')
  shape = dict(data__dataset='random', model__n_kv_heads=2, model__max_seq_len=32)
  loop.train(_config(train__steps=4, train__eval_every=4, **shape), base_dir)
  loop.train(_config(train__steps=8, train__eval_every=8, train__init_from=base_dir,
                     train__init_params=True, train__init_step=-1, model__lora_rank=4,
                     model__lora_alpha=8.0, optim__lr=3e-2,
                     model__lora_targets='attn/.*,wi,wi_gate,wo', **shape), tuned)
  run = trained.load(tuned)
  tokens = _tokens(3, (2, 24))
  want = np.asarray(run.model.apply({'params': run.params}, tokens))
  base = trained.load(base_dir)
  assert np.abs(want - np.asarray(base.model.apply({'params': base.params}, tokens))).max() > 1e-3
  out = {n: str(tmp_path / n) for n in ('base_hf', 'adapter', 'merged_hf', 'merged_run')}
  export_hf(base_dir, out['base_hf'], log=lambda _: None)
  export_peft(tuned, out['adapter'], log=lambda _: None)
  export_hf(tuned, out['merged_hf'], log=lambda _: None)
  merge_lora(tuned, out['merged_run'], log=lambda _: None)

  def logits(model):
    with torch.no_grad():
      return model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  hf_base = transformers.AutoModelForCausalLM.from_pretrained(out['base_hf'])
  adapted = peft.PeftModel.from_pretrained(hf_base, out['adapter']).eval()
  np.testing.assert_allclose(logits(adapted), want, atol=1e-4, rtol=0)
  merged = transformers.AutoModelForCausalLM.from_pretrained(out['merged_hf']).eval()
  np.testing.assert_allclose(logits(merged), want, atol=1e-4, rtol=0)
  from lmjax.train.hf_runs import HFRunError
  with pytest.raises(HFRunError, match='--to_peft: model.lora_rank=0: the run has no LoRA'):
    export_peft(base_dir, str(tmp_path / 'none'), log=lambda _: None)
  with pytest.raises(HFRunError, match='has no LoRA adapters to merge'):
    merge_lora(base_dir, str(tmp_path / 'none'), log=lambda _: None)
  assert not os.path.exists(tmp_path / 'none')
  again = trained.load(out['merged_run'])
  assert again.config.model.lora_rank == 0
  np.testing.assert_allclose(np.asarray(again.model.apply({'params': again.params}, tokens)),
                             want, atol=1e-5, rtol=0)


@pytest.mark.parametrize('placement, per_layer', [('houlsby', 2), ('pfeiffer', 1)])
def test_bottleneck_adapters_start_as_the_base_count_as_houlsby_and_train_alone(
    tmp_path, placement, per_layer):
  """Houlsby et al. 2019: 2·d·m + d + m parameters per adapter, after attention and the MLP
  (houlsby) or the MLP alone (pfeiffer); identity at initialisation; the base frozen."""
  fields = dict(model__adapter_dim=8, model__adapter_placement=placement)
  base_cfg, cfg = _config(), _config(**fields)
  base_model, model = build_model(base_cfg), build_model(cfg)
  base = init_params(base_model, base_cfg, jax.random.PRNGKey(0))
  adapters, _ = lora.split(init_params(model, cfg, jax.random.PRNGKey(1)))
  tokens = _tokens()
  np.testing.assert_array_equal(
      np.asarray(model.apply({'params': lora.join(adapters, base)}, tokens)),
      np.asarray(base_model.apply({'params': base}, tokens)))
  d, m, layers = 64, 8, 2
  assert lora.count(adapters) == lora.bottleneck_params(model.cfg) == (
      layers * per_layer * (2 * d * m + d + m))
  base_dir, tuned = str(tmp_path / 'base'), str(tmp_path / 'tuned')
  loop.train(_config(data__dataset='random', train__steps=3, train__eval_every=3), base_dir)
  loop.train(_config(data__dataset='random', train__steps=4, train__eval_every=4,
                     train__init_from=base_dir, train__init_params=True, train__init_step=-1,
                     optim__lr=1e-2, **fields), tuned)
  before, after = _leaves(trained.load(base_dir).params), _leaves(trained.load(tuned).params)
  for k, value in before.items():
    np.testing.assert_array_equal(after[k], value, err_msg=k)
  ups = [k for k in after if k not in before and k.endswith("['up']")]
  assert len(ups) == layers * per_layer and all(np.abs(after[k]).max() > 0 for k in ups)


def test_lora_dropout_acts_in_training_alone():
  cfg = _config(model__lora_rank=4, model__lora_dropout=0.5)
  model = build_model(cfg)
  params = jax.tree_util.tree_map_with_path(  # B ≠ 0, so the adapters' input matters
      lambda p, x: x + 0.1 if lora.is_adapter(p) else x,
      init_params(model, cfg, jax.random.PRNGKey(0)))
  tokens = _tokens()
  plain = np.asarray(build_model(_config(model__lora_rank=4)).apply({'params': params}, tokens))
  np.testing.assert_array_equal(np.asarray(model.apply({'params': params}, tokens)), plain)
  dropped = model.apply({'params': params}, tokens, deterministic=False,
                        rngs={'dropout': jax.random.PRNGKey(1)})
  assert np.abs(np.asarray(dropped) - plain).max() > 1e-4
