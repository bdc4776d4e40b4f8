"""The fine-tuning study (experiments/README.md, study 5): supervised fine-tuning of main-job-
sized base models on instruction pairs from the standard library (experiments/finetune_data.py:
a function's signature and docstring -> its body, held out by file as the corpus is), with and
without the loss mask, full and LoRA at two ranks, then DPO against the fine-tuned model on pairs
whose rejected side is the body's lines reversed. Offline, from one command:

  python -m experiments.finetune [--workdir=runs/finetune] [--seeds=2] [--scale=full|mini]

Each run is lmjax's own launch.train call (lmjax.train.run.run) in this process, its output in
WORKDIR/logs/; run again, the study skips finished runs and resumes interrupted ones. The report
(WORKDIR/results.md and results.json; the committed copy is experiments/results/finetune/):
held-out masked bits per byte and next-token accuracy of each base model before fine-tuning and
of each variant (mean ± sd over seeds), and DPO's held-out reward accuracy and margin.
Exit status: 0 done; 2 a bad flag; 75 stopped by SIGTERM/SIGINT (run again to go on).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

import numpy as np
from absl import flags, logging

from lmjax.core.atomic import write_json, write_text
from lmjax.core.cli import fail, run

_WORKDIR = flags.DEFINE_string('workdir', 'runs/finetune', 'The study\'s directory.')
_SEEDS = flags.DEFINE_integer('seeds', 2, 'Seeds of every fine-tuning run.')
_SCALE = flags.DEFINE_enum('scale', 'full', ['full', 'mini'], 'full: the study; mini: a few '
                           'tiny runs through the same code (its test).')

SEQ_LEN = 256       # bytes: an instruction pair of at most 254 bytes fits with its separators
# Base models: main-job-sized LLaMA-style byte models pre-trained on python_stdlib.
BASES = {'full': {'d48': dict(d_model=48, n_layers=2, n_heads=4),
                  'd96': dict(d_model=96, n_layers=2, n_heads=4)},
         'mini': {'d32': dict(d_model=32, n_layers=1, n_heads=2)}}
STEPS = {'full': dict(base=600, sft=150, dpo=60), 'mini': dict(base=6, sft=4, dpo=4)}
FILES = {'full': 0, 'mini': 300}  # stdlib files the pairs come from (0: all)
LORA_TARGETS = 'attn/.*,mlp/.*'
# name: (config fields, learning rate); LoRA trains its adapters alone, at a higher rate.
VARIANTS = {'full': (dict(), 1e-3),
            'full_nomask': (dict(data__loss_mask='all'), 1e-3),
            'lora_r4': (dict(model__lora_rank=4, model__lora_alpha=8.0,
                             model__lora_targets=LORA_TARGETS), 1e-2),
            'lora_r16': (dict(model__lora_rank=16, model__lora_alpha=32.0,
                              model__lora_targets=LORA_TARGETS), 1e-2)}
DPO = dict(beta=0.1, lr=3e-4)


def _config(fields: dict):
  from lmjax.config import default_config, resolve, set_fields
  c = default_config()
  c.model.max_seq_len = c.data.seq_len = SEQ_LEN
  c.data.batch_size, c.data.eval_batches = 16, 16
  c.train.log_every, c.checkpoint.max_to_keep = 50, 1
  c.optim.min_lr_ratio = 0.0
  return resolve(set_fields(c, fields))


def _train(config, workdir, log_dir):
  """lmjax's launch.train call on `config` (skips a finished run), its output to a log."""
  from lmjax.core.rundir import RunDir
  from lmjax.train.run import run as train_run
  name = os.path.basename(workdir)
  os.makedirs(log_dir, exist_ok=True)
  if RunDir(workdir).is_finished():
    return RunDir(workdir).read_summary()
  began = time.time()
  with open(os.path.join(log_dir, f'{name}.log'), 'a') as f, contextlib.redirect_stdout(f):
    train_run(config, workdir, xla_defaults='none')  # applied once, in main()
  print(f'{name}: {time.time() - began:.0f} s', flush=True)
  return RunDir(workdir).read_summary()


def _evaluate_base(base_dir, config) -> dict:
  """A base model's held-out masked loss, bits per byte and accuracy on the SFT eval set."""
  from lmjax.data import loader
  from lmjax.train import sharding, steps, trained
  run = trained.load(base_dir)
  data = loader.load(config)
  batches = [sharding.put_batch(b, sharding.batch_sharding(run.mesh))
             for b in loader.eval_batches(data, config)]
  step = steps.make_eval_step(run.model, steps.token_bytes_table(data.tokenizer,
                                                                 config.model.vocab_size),
                              run.mesh, run.param_shardings)
  return steps.evaluate(step, run.params, batches)


def study(workdir: str, seeds: int, scale: str) -> dict:
  from experiments import finetune_data
  data_dir, runs, logs = (os.path.join(workdir, n) for n in ('data', 'runs', 'logs'))
  counts = finetune_data.write(data_dir, SEQ_LEN - 2, max_files=FILES[scale])
  files = {k: os.path.join(data_dir, f'{k}.jsonl') for k in counts}
  n = STEPS[scale]
  results = {'counts': counts, 'steps': n, 'bases': {}, 'sft': {}, 'dpo': {}}
  for base_name, shape in BASES[scale].items():
    base_dir = os.path.join(runs, base_name)
    model = {f'model__{k}': v for k, v in shape.items()}
    _train(_config(dict(model, train__steps=n['base'], train__eval_every=n['base'],
                        optim__lr=3e-3, data__seq_len=128, data__eval_batches=8,
                        optim__warmup_steps=min(50, n['base']))),
           base_dir, logs)
    sft_data = dict(data__dataset='chat_jsonl', data__paths=files['sft_train'],
                    data__eval_paths=files['sft_eval'])
    start = dict(train__init_from=base_dir, train__init_params=True, train__init_step=-1)
    results['bases'][base_name] = _evaluate_base(base_dir, _config(dict(model, **sft_data)))
    for variant, (fields, lr) in VARIANTS.items():
      for seed in range(seeds):
        name = f'{base_name}_{variant}_s{seed}'
        config = _config(dict(model, **sft_data, **start, **fields, seed=seed, optim__lr=lr,
                              train__steps=n['sft'], train__eval_every=n['sft'],
                              optim__warmup_steps=min(20, n['sft'])))
        results['sft'][name] = _train(config, os.path.join(runs, name), logs)
    for seed in range(seeds):
      name = f'{base_name}_dpo_s{seed}'
      config = _config(dict(
          model, seed=seed, data__dataset='preference_jsonl', data__paths=files['dpo_train'],
          data__eval_paths=files['dpo_eval'], train__objective='dpo',
          train__init_from=os.path.join(runs, f'{base_name}_full_s{seed}'),
          train__init_params=True, train__init_step=-1, dpo__beta=DPO['beta'],
          optim__lr=DPO['lr'], train__steps=n['dpo'], train__eval_every=n['dpo'],
          optim__warmup_steps=min(10, n['dpo'])))
      results['dpo'][name] = _train(config, os.path.join(runs, name), logs)
  return results


def _mean_sd(values):
  values = np.asarray(values, float)
  sd = values.std(ddof=1) if len(values) > 1 else float('nan')
  return f'{values.mean():.4f} ± {sd:.4f}' if not math.isnan(sd) else f'{values.mean():.4f}'


def report(results: dict, seeds: int) -> str:
  """The study's tables as markdown."""
  lines = ['| base | fine-tuning | trainable params | held-out masked bpb | next-token acc |',
           '|---|---|---|---|---|']
  for base_name, ev in results['bases'].items():
    lines.append(f'| {base_name} | none (the base) | 0 | {ev["eval_bpb"]:.4f} | '
                 f'{ev["eval_accuracy"]:.4f} |')
    for variant in VARIANTS:
      runs = [results['sft'][f'{base_name}_{variant}_s{s}'] for s in range(seeds)]
      trainable = runs[0].get('N_trainable', runs[0]['N'])
      lines.append(f'| {base_name} | {variant} | {trainable:,} | '
                   f'{_mean_sd([r["eval_bpb"] for r in runs])} | '
                   f'{_mean_sd([r["eval_accuracy"] for r in runs])} |')
  lines += ['', '| base | DPO from `full` | held-out reward accuracy | reward margin | '
            'DPO loss |', '|---|---|---|---|---|']
  for base_name in results['bases']:
    runs = [results['dpo'][f'{base_name}_dpo_s{s}'] for s in range(seeds)]
    lines.append(f'| {base_name} | beta {DPO["beta"]}, lr {DPO["lr"]} | '
                 f'{_mean_sd([r["eval_reward_accuracy"] for r in runs])} | '
                 f'{_mean_sd([r["eval_reward_margin"] for r in runs])} | '
                 f'{_mean_sd([r["eval_loss"] for r in runs])} |')
  return '\n'.join(lines) + '\n'


def main():
  logging.set_verbosity(logging.WARNING)
  if _SEEDS.value < 1:
    fail(f'--seeds={_SEEDS.value}: at least 1')
  from lmjax.train import platform_flags
  print(platform_flags.describe(*platform_flags.apply('auto')))  # before JAX starts
  began = time.time()
  results = study(_WORKDIR.value, _SEEDS.value, _SCALE.value)
  results['wall_s'] = time.time() - began
  table = report(results, _SEEDS.value)
  write_json(os.path.join(_WORKDIR.value, 'results.json'), results, indent=1)
  write_text(os.path.join(_WORKDIR.value, 'results.md'), table)
  print(table)
  print(f'study: {results["wall_s"]:.0f} s; {_WORKDIR.value}/results.md')
  sys.stdout.flush()


if __name__ == '__main__':
  run(main)
