"""lmjax runs in lm-evaluation-harness (lmjax/eval/harness.py, launch.harness), offline: task
YAMLs over JSONL written here (multiple choice, rolling perplexity, generation), checked against
the harness's own `hf` model on the run exported to Hugging Face; the corpus tasks
(lmjax/eval/corpus_tasks.py); bad tasks and runs in one line."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

lm_eval = pytest.importorskip('lm_eval')
from lm_eval.tasks import TaskManager  # noqa: E402

from lmjax.eval import corpus_tasks, harness  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ_LEN = 64

MC = [{'context': 'def add(a, b):\n    return', 'choices': [' a + b', ' a - b', ' None', ' 0'],
       'answer': 0},
      {'context': 'import os\nimport', 'choices': [' sys', ' 42', ' )(', ' os.path'],
       'answer': 0},
      {'context': 'for i in range(10):\n', 'choices': ['    print(i)', 'print(i)', '  x', '#'],
       'answer': 0},
      {'context': 'class A:\n    def __init__(self', 'choices': ['):', ', x):', ']', ' = 1'],
       'answer': 1},
      {'context': 'x = [1, 2, 3]\ny = len(', 'choices': ['x)', 'y)', '3]', ')'], 'answer': 0},
      {'context': ' ', 'choices': ['if', 'else'], 'answer': 0}]  # trailing space: moved
PPL = [{'text': 'def f(x):\n    return x + 1\n'},
       {'text': 'import sys\n' * 20},  # 220 bytes: 4 windows of 64
       {'text': 'héllo wörld — ünïcode ✓\n'}]
GEN = [{'prompt': 'def add(a, b):\n    return', 'answer': ' a + b'},
       {'prompt': 'import os\nimport sys\nimport', 'answer': ' re'},
       {'prompt': 'x' * 80 + '\n', 'answer': 'x'}]  # longer than max_length - max_gen_toks

MC_YAML = """task: local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
"""
PPL_YAML = """task: local_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
process_results: !function utils.process_bpb
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""
GEN_YAML = """task: local_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
TASKS = ['local_mc', 'local_ppl', 'local_gen']


@pytest.fixture(scope='module')
def tasks(tmp_path_factory):
  d = tmp_path_factory.mktemp('tasks')
  for name, rows, yaml in (('mc', MC, MC_YAML), ('ppl', PPL, PPL_YAML), ('gen', GEN, GEN_YAML)):
    data = d / f'{name}.jsonl'
    data.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    (d / f'local_{name}.yaml').write_text(yaml.format(data=json.dumps(str(data))))
  (d / 'utils.py').write_text(corpus_tasks.UTILS)
  return d


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A tiny LLaMA-style byte model, 60 steps on the default corpus (its predictions far from
  uniform), and its Hugging Face export."""
  tmp = tmp_path_factory.mktemp('harnessrun')
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp}/run', '--config.train.steps=60', '--config.train.eval_every=60',
       f'--config.data.seq_len={SEQ_LEN}', '--config.optim.lr=1e-2'],
      cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  out = _launch('launch.convert', f'--workdir={tmp}/run', f'--to_hf={tmp}/hf')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'tokenizer.json' in out.stdout
  return tmp / 'run', tmp / 'hf'


def _launch(module, *flags):
  return subprocess.run([sys.executable, '-m', module, *flags], cwd=ROOT, capture_output=True,
                        text=True, env={**os.environ, 'HF_DATASETS_OFFLINE': '1'})


def _evaluate(lm, tasks_dir, names):
  return lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(
      include_path=str(tasks_dir), include_defaults=False), log_samples=True, bootstrap_iters=0,
      random_seed=0)


def _responses(results, task):
  """Every request's answer, in document order: (log-likelihood, greedy), a rolling
  log-likelihood, or a generated text."""
  out = []
  for sample in sorted(results['samples'][task], key=lambda s: s['doc_id']):
    for resp in sample['resps']:
      out.append(resp[0])
  return out


@pytest.fixture(scope='module')
def lmjax_results(run, tasks):
  lm = harness.LmjaxLM.from_run(str(run[0]), batch_size=4)
  return lm, harness.run_tasks(lm, TASKS, include_path=str(tasks), log_samples=True)


def test_the_harness_hf_model_on_the_export_gives_lmjax_s_loglikelihoods(run, tasks,
                                                                        lmjax_results):
  """The independent check: lm_eval's HFLM (PyTorch, transformers) on `launch.convert --to_hf`
  answers every request as lmjax does: log-likelihoods within 1e-4, the same greedy flags,
  generations and metrics. HFLM adds the exported tokenizer's BOS (the separator) for
  log-likelihoods and generation, as lmjax starts every text; not for rolling ones, where
  lmjax's prefix token is the separator and the text's tokens are scored alone."""
  from lm_eval.models.huggingface import HFLM
  _, ours = lmjax_results
  hf_dir = str(run[1])
  kwargs = dict(pretrained=hf_dir, tokenizer=hf_dir, device='cpu', dtype='float32',
                batch_size=4, max_length=SEQ_LEN)
  theirs = _evaluate(HFLM(add_bos_token=True, **kwargs), tasks, ['local_mc', 'local_gen'])
  rolling = _evaluate(HFLM(add_bos_token=False, **kwargs), tasks, ['local_ppl'])
  worst = 0.0
  for task, reference in (('local_mc', theirs), ('local_gen', theirs), ('local_ppl', rolling)):
    a, b = _responses(ours, task), _responses(reference, task)
    assert len(a) == len(b) > 0, task
    for x, y in zip(a, b):
      if task == 'local_gen':
        assert x == y
      elif task == 'local_mc':
        assert x[1] == y[1] and abs(x[0] - y[0]) < 1e-4, (x, y)
        worst = max(worst, abs(x[0] - y[0]))
      else:
        assert abs(x - y) < 1e-4, (x, y)
        worst = max(worst, abs(x - y))
    for metric, value in harness.metrics(reference)[task].items():
      assert harness.metrics(ours)[task][metric] == pytest.approx(value, rel=1e-5, abs=1e-9)
  print(f'largest log-likelihood difference from the hf model: {worst:.2e}')


def test_requests_are_scored_as_a_direct_forward_pass_would(run, lmjax_results):
  """lmjax's answers against log-softmax of the model's logits computed here, request by
  request (the separator first; rolling windows of SEQ_LEN predictions)."""
  import jax
  lm, results = lmjax_results
  tok = lm.tok

  forward = jax.jit(lambda params, x: jax.nn.log_softmax(
      lm.model.apply({'params': params}, x).astype(np.float32), -1))

  def logp(ids):  # one row padded on the right to SEQ_LEN (causal: the padding is unseen)
    row = np.zeros((1, SEQ_LEN), np.int32)
    row[0, :len(ids) - 1] = ids[:-1]
    lp = np.asarray(forward(lm.params, row))[0, :len(ids) - 1]
    return lp[np.arange(len(ids) - 1), ids[1:]], lp.argmax(-1) == np.asarray(ids[1:])

  for doc, sample in zip(MC, sorted(results['samples']['local_mc'], key=lambda s: s['doc_id'])):
    for choice, resp in zip(doc['choices'], sample['resps']):
      context, cont = doc['context'], choice
      spaces = len(context) - len(context.rstrip())
      if spaces:  # the harness moves a context's trailing spaces into the continuation
        context, cont = context[:-spaces], context[-spaces:] + cont
      if not cont:
        continue
      ids = [tok.sep_id, *tok.encode(context), *tok.encode(cont)]
      lp, greedy = logp(ids)
      n = len(tok.encode(cont))
      assert resp[0][0] == pytest.approx(float(lp[-n:].sum()), abs=1e-4)
      assert resp[0][1] == bool(greedy[-n:].all())
  for doc, sample in zip(PPL, sorted(results['samples']['local_ppl'], key=lambda s: s['doc_id'])):
    ids = [int(t) for t in tok.encode(doc['text'])]
    total, done = 0.0, 0
    while done < len(ids):  # each window: SEQ_LEN predictions with the most context that fits
      end = min(len(ids), done + SEQ_LEN)
      window = ([tok.sep_id] + ids)[max(0, end - SEQ_LEN):end + 1]
      lp, _ = logp(window)
      total += float(lp[-(end - done):].sum())
      done = end
    assert sample['resps'][0][0] == pytest.approx(total, abs=1e-4)


def test_launch_harness_writes_the_metrics_into_the_run(run, tasks):
  out = _launch('launch.harness', f'--workdir={run[0]}', '--tasks=local_mc,local_ppl,local_gen',
                f'--include_path={tasks}', '--batch_size=3')
  assert out.returncode == 0, out.stderr[-3000:]
  saved = json.loads((run[0] / 'harness' / '60.json').read_text())
  assert saved['step'] == 60 and saved['max_length'] == SEQ_LEN
  assert set(saved['tasks']) == set(TASKS)
  assert 0 <= saved['tasks']['local_mc']['acc'] <= 1
  assert 0 <= saved['tasks']['local_mc']['acc_norm'] <= 1
  assert saved['tasks']['local_ppl']['bits_per_byte'] > 0
  assert saved['tasks']['local_gen']['exact_match'] in (0, 1 / 3, 2 / 3, 1)
  assert 'local_mc: acc ' in out.stdout and f'wrote {run[0]}/harness/60.json' in out.stdout
  # A finished run's table row takes them from here (its summary has none of its own).
  from lmjax.core.rundir import RunDir
  assert RunDir(run[0]).task_metrics()['tasks/local_mc/acc'] == saved['tasks']['local_mc']['acc']


@pytest.mark.parametrize('flags, message', [
    (['--tasks=no_such_task'], "--tasks: unknown task 'no_such_task'"),
    (['--tasks=local_missing'], 'could not read a task\'s data'),
    (['--tasks=local_mc', '--batch_size=0'], '--batch_size=0: at least 1'),
])
def test_bad_tasks_and_flags_are_one_line(run, tasks, tmp_path, flags, message):
  missing = tmp_path / 'missing_tasks'
  missing.mkdir()
  (missing / 'local_missing.yaml').write_text(MC_YAML.replace('local_mc', 'local_missing').format(
      data=json.dumps(str(tmp_path / 'nowhere.jsonl'))))
  before = sorted(os.listdir(run[0]))
  out = _launch('launch.harness', f'--workdir={run[0]}', f'--include_path={missing}', *flags)
  assert out.returncode == 2, out.stderr[-2000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last, out.stderr[-2000:]
  assert sorted(os.listdir(run[0])) == before


def test_a_run_without_a_checkpoint_is_one_line(tmp_path):
  (tmp_path / 'run').mkdir()
  out = _launch('launch.harness', f'--workdir={tmp_path}/run', '--tasks=stdlib_bpb')
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('error: --workdir=') and 'not a run directory' in last, out.stderr


def test_corpus_tasks_are_deterministic_well_formed_and_known_to_the_harness(tmp_path):
  docs = corpus_tasks.held_out_documents()
  assert len(docs) > 20
  a = corpus_tasks.write_tasks(str(tmp_path / 'a'), docs)
  corpus_tasks.write_tasks(str(tmp_path / 'b'), docs)
  meta = json.loads((tmp_path / 'a' / 'tasks.json').read_text())
  assert meta['digest'] == json.loads((tmp_path / 'b' / 'tasks.json').read_text())['digest']
  assert meta['items']['stdlib_next_line'] == corpus_tasks.ITEMS
  assert meta['items']['stdlib_identifier'] == corpus_tasks.ITEMS
  texts = dict(docs)
  for name in ('stdlib_next_line', 'stdlib_identifier'):
    rows = [json.loads(line) for line in open(os.path.join(a, f'{name}.jsonl'))]
    answers = np.bincount([r['answer'] for r in rows], minlength=4)
    assert answers.min() > len(rows) / 8  # the answer's place is drawn, not fixed
    for r in rows:
      assert len(r['choices']) == 4 and len(set(r['choices'])) == 4
      assert len(r['context'].encode()) <= corpus_tasks.CONTEXT
      true = r['choices'][r['answer']]
      assert r['context'] + true in texts[r['path']]  # the true answer continues the file
  rows = [json.loads(line) for line in open(os.path.join(a, 'stdlib_bpb.jsonl'))]
  assert all(0 < len(r['text'].encode()) <= corpus_tasks.BPB_BYTES for r in rows)
  manager = TaskManager(include_path=a, include_defaults=False)
  assert set(corpus_tasks.TASKS) <= set(manager.all_tasks)
  assert math.isfinite(corpus_tasks.process_bpb({'text': 'a b'}, [-1.0])['bits_per_byte'][0])


def test_tasks_during_training_reach_metrics_tensorboard_the_summary_and_the_runs_table(tasks,
                                                                                         tmp_path):
  from lmjax import analysis
  from lmjax.core.rundir import RunDir
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp_path}/run', '--config.train.steps=20', '--config.train.eval_every=5',
       f'--config.data.seq_len={SEQ_LEN}', '--config.eval.tasks=local_mc,local_ppl',
       f'--config.eval.include_path={tasks}', '--config.eval.every=10',
       '--config.eval.limit=4'], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = RunDir(tmp_path / 'run').read_metrics()
  evals = {r['step']: r for r in rows if 'eval_loss' in r}
  assert sorted(evals) == [5, 10, 15, 20]
  keys = {'tasks/local_mc/acc', 'tasks/local_mc/acc_norm', 'tasks/local_ppl/bits_per_byte'}
  for step, row in evals.items():  # at multiples of eval.every and the last step only
    assert keys <= set(row) if step in (10, 20) else not any(k.startswith('tasks/') for k in row)
  assert 'eval step 10: loss ' in out.stdout and '; tasks/local_mc/acc ' in out.stdout
  summary = RunDir(tmp_path / 'run').read_summary()
  assert summary['tasks/local_mc/acc'] == evals[20]['tasks/local_mc/acc']
  assert summary['tasks_s'] > 0
  runs = analysis.load(str(tmp_path / 'run')).runs
  assert runs['tasks/local_ppl/bits_per_byte'].iloc[0] == evals[20]['tasks/local_ppl/bits_per_byte']
  assert _scalar_steps(tmp_path / 'run' / 'tb', 'tasks/local_mc/acc') == [10, 20]


def _scalar_steps(tb_dir, tag):
  """The steps of a scalar in a TensorBoard event file (TFRecord framing: a little-endian
  u64 length, its u32 CRC, the Event proto, its u32 CRC), read with tensorboardX's proto."""
  import struct

  from tensorboardX.proto import event_pb2
  steps = []
  for name in sorted(os.listdir(tb_dir)):
    if not name.startswith('events'):
      continue
    data = (tb_dir / name).read_bytes()
    i = 0
    while i + 12 <= len(data):
      (n,) = struct.unpack('<Q', data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4
      steps += [event.step for v in event.summary.value if v.tag == tag]
  return steps


def test_an_unknown_task_in_the_config_is_one_line_and_writes_nothing(tmp_path):
  out = subprocess.run(
      [sys.executable, '-m', 'launch.train', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp_path}/run', '--config.eval.tasks=stdlib_next_line,nope'],
      cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.eval.tasks: unknown task 'nope'"), out.stderr[-2000:]
  assert not (tmp_path / 'run').exists()
