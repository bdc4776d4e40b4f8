"""DPO training (train.objective=dpo, data.dataset=preference_jsonl): ln 2 at the first step,
where the policy is the reference; reward accuracy 1 on synthetic pairs; the reference's
log-probabilities never checkpointed and a resume equal to no resume; the loss of a batch equal
to one computed in PyTorch from the Hugging Face exports of the policy and the reference."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from lmjax.config import ConfigError, default_config, resolve, set_fields
from lmjax.core.rundir import RunDir
from lmjax.train import loop, trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pairs(n, seed):
  """Synthetic pairs: the chosen side repeats the prompt's number, the rejected side reverses
  it (a pattern to prefer that the base model does not know)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    x = str(rng.integers(10, 1000))
    out.append({'prompt': f'{x}:', 'chosen': x + '.', 'rejected': x[::-1] + '?'})
  return out


def _write(path, rows):
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(path)


def _config(**fields):
  c = default_config()
  c.data.seq_len, c.data.batch_size, c.data.eval_batches = 16, 16, 2
  c.train.log_every, c.optim.warmup_steps = 1, 2
  c.checkpoint.async_save = False
  return resolve(set_fields(c, fields))


@pytest.fixture(scope='module')
def setting(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('dpo')
  base = str(tmp / 'base')
  loop.train(_config(data__dataset='random', train__steps=4, train__eval_every=4), base)
  files = dict(data__paths=_write(tmp / 'train.jsonl', _pairs(64, 0)),
               data__eval_paths=_write(tmp / 'eval.jsonl', _pairs(16, 1)))
  dpo = dict(data__dataset='preference_jsonl', train__objective='dpo', train__init_from=base,
             train__init_params=True, train__init_step=-1, optim__lr=1e-2, dpo__beta=0.5,
             train__eval_every=10, checkpoint__every_steps=10, **files)
  return tmp, base, dpo


def test_dpo_starts_at_ln2_and_ranks_every_synthetic_pair_right(setting):
  tmp, _, dpo = setting
  workdir = str(tmp / 'run')
  summary, _ = loop.train(_config(train__steps=30, **dpo), workdir)
  rows = [r for r in RunDir(workdir).read_metrics() if 'loss_last' in r]
  assert rows[0]['step'] == 1 and rows[0]['loss_last'] == pytest.approx(math.log(2), abs=1e-6)
  assert rows[0]['dpo_reward_margin'] == pytest.approx(0, abs=1e-6)
  assert rows[-1]['dpo_reward_accuracy'] == 1.0 and rows[-1]['loss'] < 0.2
  assert summary['eval_reward_accuracy'] >= 0.9 and summary['eval_loss'] < math.log(2)


def test_the_reference_is_not_checkpointed_and_a_resume_equals_no_resume(setting):
  from lmjax.train.checkpoint import READ_ONLY, Checkpoints
  tmp, _, dpo = setting
  straight, resumed = str(tmp / 'straight'), str(tmp / 'resumed')
  constant = dict(dpo, optim__schedule='constant')  # the same lr whatever train.steps says
  constant.update(checkpoint__every_steps=4, train__eval_every=4)
  loop.train(_config(train__steps=8, **constant), straight)
  loop.train(_config(train__steps=4, **constant), resumed)
  loop.train(_config(train__steps=8, **constant), resumed)
  rows = lambda d: [{k: v for k, v in r.items() if not k.endswith(('_s', 'mfu'))}
                    for r in RunDir(d).read_metrics()]
  got, want = rows(resumed), rows(straight)
  assert [r['step'] for r in got] == [r['step'] for r in want]
  for a, b in zip(got, want):
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != 'tokens_per_s'), (a, b)
  ckpts = Checkpoints(straight, READ_ONLY, read_only=True)
  meta = ckpts.meta(8)
  ckpts.close()
  assert not any('ref' in k for k in meta['digests']) and 'ref' not in json.dumps(meta['data'])


def test_the_loss_of_a_batch_equals_pytorchs_on_the_hugging_face_exports(setting):
  """The DPO loss and rewards of a batch, computed by lmjax's train-step objective, equal a
  computation in PyTorch from transformers' logits of the exported policy and reference
  (the completions' summed log-probabilities, then −log σ(β·h)), to 1e-5."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  from lmjax.data import loader
  from lmjax.train import preference, start
  from lmjax.train.hf_runs import export_hf
  tmp, base, dpo = setting
  policy_dir = str(tmp / 'policy')
  config = _config(train__steps=6, **dpo)
  loop.train(config, policy_dir)
  policy = trained.load(policy_dir)
  setup = start.set_up(config)  # computes the reference's log-probabilities into the pairs
  batch = loader.eval_batches(setup.dataset, config)[0]
  total, (_, pairs, sums) = preference.dpo_sums(
      policy.params, policy.model, batch, beta=0.5, loss_type='sigmoid', label_smoothing=0.0)
  for name, run in (('policy_hf', policy_dir), ('base_hf', base)):
    export_hf(run, str(tmp / name), log=lambda _: None)

  def logps(directory):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp / directory)).eval()
    with torch.no_grad():
      logits = model(torch.tensor(batch['inputs'], dtype=torch.long)).logits.double()
    picked = torch.log_softmax(logits, -1).gather(
        -1, torch.tensor(batch['targets'], dtype=torch.long)[..., None])[..., 0]
    return (picked * torch.tensor(batch['weights'], dtype=torch.double)).sum(-1).numpy()
  # One sequence per row (no packing): transformers needs no segment ids here.
  pol, ref = logps('policy_hf').reshape(-1, 2), logps('base_hf').reshape(-1, 2)
  np.testing.assert_allclose(batch['ref_logps'].reshape(-1, 2), ref, atol=1e-4, rtol=0)
  h = (pol[:, 0] - ref[:, 0]) - (pol[:, 1] - ref[:, 1])
  want = np.sum(np.log1p(np.exp(-0.5 * h)))
  assert float(total) == pytest.approx(want, rel=1e-5, abs=1e-5)
  assert float(sums['dpo']['reward_accuracy']) == float(np.sum(h > 0))
  assert float(pairs) == len(h) and 0 < np.sum(h > 0)


def test_bad_pairs_and_settings_are_one_line(setting, tmp_path):
  _, base, dpo = setting
  bad = _write(tmp_path / 'bad.jsonl', _pairs(3, 0) + [{'prompt': '1+1=', 'chosen': '2'}])
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp_path / "run"}', '--config.data.dataset=preference_jsonl',
       f'--config.data.paths={bad}', '--config.train.objective=dpo',
       f'--config.train.init_from={base}', '--config.train.init_params=True',
       '--config.train.init_step=-1', '--config.data.seq_len=16'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, out.stderr[-1500:]
  assert 'bad.jsonl line 4: expected "prompt", "chosen" and "rejected"' in lines[0]
  assert not (tmp_path / 'run').exists()
  with pytest.raises(ConfigError, match='dpo with train.init_from'):
    _config(data__dataset='preference_jsonl', train__objective='dpo', data__paths=bad)
  with pytest.raises(ConfigError, match='dpo.loss_type'):
    _config(**{**dpo, 'dpo__loss_type': 'kto'})
  with pytest.raises(ConfigError, match='dpo.label_smoothing'):
    _config(**{**dpo, 'dpo__loss_type': 'ipo', 'dpo__label_smoothing': 0.1})
