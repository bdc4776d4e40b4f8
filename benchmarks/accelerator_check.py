"""One prepared check of lmjax on an accelerator, under five minutes: kernels, loss, a 1B step.

  python benchmarks/accelerator_check.py [--quick] [--skip=attention,...] [--out=FILE.jsonl]

Sections, each printed as readable lines and one JSON line per measurement ({"section": ...}):
  device         jax.devices()[0]'s kind and platform, the versions of jax and its companions.
  attention      forward + backward of every kernel of lmjax/model/attention.py the platform has
                 (blocked, xla, cudnn, pallas_gpu on GPU; blocked, xla, splash on TPU; blocked,
                 xla on CPU) at B=4, H=32, K=8, E=128, T=2048 and 8192, bfloat16, rows packed with
                 a few documents (segment ids): median time, TFLOP/s, peak memory, and how far
                 each kernel's output and gradients are from the `xla` kernel's (`blocked`'s
                 where xla's T×S logits do not fit) on the same inputs.
  cross_entropy  lmjax/train/loss.py whole against chunked (4096, 8192 tokens): value and
                 gradient with respect to features and weights, N=65,536, D=2048, V=32,000
                 and 128,256.
  train_step     experiments/configs/llama_1b.py on random tokens, batch 8 × 2048 on one device,
                 bfloat16 compute, attention 'auto': tokens/s and MFU.
  memory         that step's compiled.memory_analysis() on the device beside the analytic figures
                 of lmjax.train.memory.train_step_memory (what launch.memory prints), and the peak.
A kernel or case that fails prints one line with its error and the check goes on.

Conventions. Attention FLOPs are causal over the whole row, 4·B·H·T²·E/2 forward and 2.5 times
that backward (FlashAttention-2's count; Dao 2023), whatever the documents skip. Cross-entropy
FLOPs are the three matmuls, 6·N·D·V (the chunked form runs a fourth, recomputing the logits).
MFU uses lmjax.model.flops.exact_flops_per_token(attention='causal'): 6 FLOPs per matmul weight (N
without the input embedding) plus 12·L·H·E·(T+1)/2 for attention; `mfu_dense` counts all T²
pairs (PaLM's and Levanter's convention); `mfu` is what launch.train and launch.bench log.
Peak FLOP/s: --peak_tflops, else the table of lmjax.model.flops.
Memory: JAX cannot reset `peak_bytes_in_use`, so every section runs in its own process and the
cases of a section run smallest first (the T×S-logit kernel and the whole cross-entropy last): a
case's peak is the process peak after it, its own when the peak rose (`peak_own`), else an upper
bound; `compiled_bytes` is the compiler's own figure for the case (memory_analysis).

On a lent NVIDIA H200 (the `device` tool; its image has jax with the CUDA plugin, flax, optax,
orbax-checkpoint, absl-py and PyYAML, but not ml_collections, which lmjax.config imports). Once,
here, in the repository root (a pure-Python wheel; where absl-py is missing too, fetch
absl-py==2.5.1 the same way):

  echo /.whl/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0

then one `run` with carry=['.whl'] and timeout_s=420:

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; \
  PYTHONUNBUFFERED=1 python3 benchmarks/accelerator_check.py --peak_tflops=989 \
    --out=$OUT/accelerator_check.jsonl 2>&1 | tee $OUT/log

On a TPU VM: `pip install ml_collections` and the same command without --peak_tflops. Nothing here
reads data (no grain, no TFDS): tokens and tensors are random.
"""
import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from lmjax.core.errors import first_line, one_line  # noqa: E402

SECTIONS = ('device', 'attention', 'cross_entropy', 'train_step', 'memory')
# The kernels each platform runs natively (on CPU the Pallas kernels only interpret: tests).
KERNELS = {'gpu': ('blocked', 'xla', 'cudnn', 'pallas_gpu'), 'tpu': ('blocked', 'xla', 'splash'),
           'cpu': ('blocked', 'xla')}
# The kernel the others' outputs are compared with: jax's own path, else (where its T×S logits
# do not fit, e.g. T=8192 on one GPU) the blocked kernel, which only uses XLA ops.
REFERENCE_KERNELS = ('xla', 'blocked')
FULL = dict(attn_batch=4, attn_t=(2048, 8192), heads=32, kv_heads=8, head_dim=128, docs=4,
            ce_tokens=65_536, ce_width=2048, ce_vocab=(32_000, 128_256), ce_chunks=(4096, 8192),
            batch=8, seq_len=2048, model={})
QUICK = dict(attn_batch=2, attn_t=(256,), heads=4, kv_heads=2, head_dim=32, docs=3,
             ce_tokens=1024, ce_width=64, ce_vocab=(256, 1000), ce_chunks=(256, 512),
             batch=2, seq_len=256, model=dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                              d_ff=128, vocab_size=512, max_seq_len=256))
MODULES = ('numpy', 'jax', 'flax', 'optax', 'orbax.checkpoint', 'absl', 'yaml', 'ml_collections')
GB = 1e9
KILL_AFTER_S = 90


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=first_line(__doc__))
  ap.add_argument('--quick', action='store_true', help='tiny shapes and model (a CPU smoke run)')
  ap.add_argument('--skip', default='', help=f'comma-separated sections: {", ".join(SECTIONS[1:])}')
  ap.add_argument('--out', help='also write the JSON lines to this file')
  ap.add_argument('--peak_tflops', type=float, help='peak bf16 TFLOP/s per device, for MFU')
  ap.add_argument('--kernels', help='attention kernels to time (default: the platform\'s)')
  ap.add_argument('--block', type=int, help='blocked kernel rows per block (default: config\'s)')
  ap.add_argument('--loss_chunk', type=int, help='train.loss_chunk of the train step')
  ap.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                  help='override a field of the train-step config, e.g. model.remat=none')
  ap.add_argument('--iters', type=int, default=5, help='timed calls per case, at most')
  ap.add_argument('--case_s', type=float, default=4.0, help='timed seconds per case, about')
  ap.add_argument('--budget_s', type=float, default=270.0, help='cases past this are skipped')
  ap.add_argument('--child', choices=SECTIONS[:3] + ('train_step',), help=argparse.SUPPRESS)
  ap.add_argument('--deadline', type=float, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  skip = {s for s in args.skip.split(',') if s}
  if skip - set(SECTIONS[1:]):
    ap.error(f'--skip: {", ".join(sorted(skip - set(SECTIONS[1:])))}: not one of '
             f'{", ".join(SECTIONS[1:])}')
  args.skip = skip
  return args


def require_modules():
  """Exits (status 2) with one line naming the first module this machine lacks (see the
  docstring). Importing starts no backend: the parent holds no device memory."""
  import importlib
  for name in MODULES + ('lmjax.train.steps', 'lmjax.train.memory', 'lmjax.train.memory_plan',
                         'lmjax.sweeps.configs', 'experiments.configs.llama_1b'):
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      by = f' (imported by {name})' if name != e.name else ''
      print(f'error: no module {e.name} here{by}; carry it as a wheel, as the top of '
            'benchmarks/accelerator_check.py says', file=sys.stderr)
      sys.exit(2)
    except ImportError as e:  # there, but not a version lmjax knows
      print(f'error: importing {name}: {one_line(e, 300)}', file=sys.stderr)
      sys.exit(2)


# ---- the parent: one process per section ---------------------------------------------------

def children(args):
  """The sections to run as child processes; train_step's child also does memory."""
  out = ['device']
  out += [s for s in ('attention', 'cross_entropy') if s not in args.skip]
  if not {'train_step', 'memory'} <= args.skip:
    out.append('train_step')
  return out


def run_child(section, args, out_file):
  """Runs one section in a fresh process (its own device memory peak), echoing its lines; kills
  it `KILL_AFTER_S` past the budget (a case in flight when the budget ends may finish)."""
  cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], f'--child={section}',
         f'--deadline={args.deadline}']
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
  timer = threading.Timer(max(args.deadline + KILL_AFTER_S - time.time(), 1), proc.kill)
  timer.start()
  n_json = 0
  for line in proc.stdout:
    print(line, end='', flush=True)
    if line.startswith('{'):
      n_json += 1
      if out_file:
        out_file.write(line)
        out_file.flush()
  rc = proc.wait()
  if not timer.is_alive():
    print(f'{section}: killed, {KILL_AFTER_S} s past --budget_s', flush=True)
  timer.cancel()
  return rc, n_json


def parent(args):
  require_modules()
  # Before any child starts JAX: room for the T×T logits of the `xla` kernel and the whole
  # cross-entropy's N×V logits (JAX's default takes 75% of a GPU's memory).
  os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.92')
  start = time.time()
  args.deadline = start + args.budget_s
  out_file = open(args.out, 'w') if args.out else None
  failed = []
  for section in children(args):
    t0 = time.time()
    print(f'== {section} ' + '=' * (60 - len(section)), flush=True)
    rc, n_json = run_child(section, args, out_file)
    print(f'-- {section}: {time.time() - t0:.1f} s (total {time.time() - start:.1f} s), '
          f'{n_json} JSON lines, exit {rc}', flush=True)
    if rc:
      failed.append(section)
      if section == 'device':
        break
  if out_file:
    out_file.close()
  print(f'done in {time.time() - start:.1f} s' +
        (f'; sections that failed: {", ".join(failed)}' if failed else ''), flush=True)
  return 1 if failed else 0


# ---- shared by the children -----------------------------------------------------------------

def emit(record):
  print(json.dumps(record, default=float), flush=True)


def past_deadline(args, what, section):
  if time.time() <= args.deadline:
    return False
  print(f'{what}: skipped, past --budget_s={args.budget_s:g}', flush=True)
  emit({'section': section, 'case': what, 'skipped': 'past --budget_s'})
  return True


def compiled_bytes(compiled) -> dict:
  """The compiler's figures of one executable (bytes; None where the backend gives none)."""
  try:
    mem = compiled.memory_analysis()
  except Exception:  # some backends do not implement it
    mem = None
  if mem is None:
    return {'compiled_bytes': None, 'compiled_temp_bytes': None}
  total = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
           + mem.temp_size_in_bytes)
  return {'compiled_bytes': total, 'compiled_temp_bytes': mem.temp_size_in_bytes}


class Peak:
  """peak_bytes_in_use of the first device before and after a case (None on CPU, which has no
  memory_stats). JAX has no reset, so `own` says whether the case raised the process peak."""

  def __init__(self):
    import jax
    self.device = jax.devices()[0]

  def read(self):
    stats = self.device.memory_stats()
    return stats.get('peak_bytes_in_use') if stats else None

  def __enter__(self):
    self.before = self.read()
    return self

  def __exit__(self, *exc):
    self.after = self.read()

  def record(self) -> dict:
    if self.after is None:
      return {'peak_bytes': None, 'peak_own': None}
    return {'peak_bytes': self.after, 'peak_own': self.after > self.before}

  def describe(self) -> str:
    if self.after is None:
      return 'peak: no memory_stats on this platform'
    own = 'its own' if self.after > self.before else 'an upper bound: an earlier case peaked higher'
    return f'peak {size(self.after)} ({own})'


def time_calls(fn, inputs, iters, case_s):
  """(median seconds, calls timed, last result): one untimed call, then up to `iters` timed
  calls, fewer where they would take much longer than `case_s`; `inputs` are dropped first."""
  import jax
  t0 = time.perf_counter()
  result = jax.block_until_ready(fn(*inputs))
  first = time.perf_counter() - t0
  n = max(1, min(iters, int(case_s / max(first, 1e-9))))
  times = []
  for _ in range(n):
    del result
    t0 = time.perf_counter()
    result = jax.block_until_ready(fn(*inputs))
    times.append(time.perf_counter() - t0)
  return statistics.median(times), n, result


def run_cases(cases, args, section):
  """Compiles and runs each case in turn, in the order given: smallest expected memory first,
  so that the process peak rises at each (see Peak; compiling, which autotunes on device, is
  inside the case). A case is (name, build); build() returns (jitted fn, abstract args, make
  concrete args, report(seconds, result, record, peak))."""
  for name, build in cases:
    if past_deadline(args, name, section):
      continue
    try:
      fn, abstract, make_args, report = build()
      with Peak() as peak:
        t0 = time.perf_counter()
        compiled = fn.lower(*abstract).compile()
        record = {'compile_s': round(time.perf_counter() - t0, 2), **compiled_bytes(compiled)}
        seconds, n, result = time_calls(compiled, make_args(), args.iters, args.case_s)
      record.update(seconds=seconds, timed_calls=n, **peak.record())
      report(seconds, result, record, peak)
      del result
    except Exception as e:  # a kernel the platform or jax refuses, out of memory, ...
      print(f'{name}: failed: {one_line(e, 300)}', flush=True)
      emit({'section': section, 'case': name, 'error': one_line(e, 300)})


def size(n) -> str:
  return 'n/a' if n is None else f'{n / GB:.2f} GB' if n >= 0.1 * GB else f'{n / 1e6:.1f} MB'


# ---- 1. device --------------------------------------------------------------------------------

def device_section(args, shape):
  import importlib.metadata as md
  import jax
  dev = jax.devices()[0]
  stats = dev.memory_stats() or {}
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'ml_collections', 'numpy'):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      versions[name] = None
  limit = stats.get('bytes_limit')
  print(f'{dev.platform}: {jax.device_count()} × {dev.device_kind}, jax {jax.__version__}, '
        f'python {sys.version.split()[0]}' +
        (f', {limit / GB:.1f} GB for JAX per device' if limit else ''), flush=True)
  emit({'section': 'device', 'platform': dev.platform, 'device_kind': dev.device_kind,
        'device_count': jax.device_count(), 'bytes_limit': limit,
        'python': sys.version.split()[0], 'versions': versions, 'quick': args.quick})


# ---- 2. attention ----------------------------------------------------------------------------

def packed_documents(rng, b, t, docs):
  """(segment ids, positions), int32 (B, T): each row `docs` documents of random lengths, the
  ids counting up along the row (cuDNN's packed form needs ids that never come back)."""
  import numpy as np
  seg = np.zeros((b, t), np.int32)
  pos = np.zeros((b, t), np.int32)
  for row in range(b):
    starts_D = np.concatenate([[0], np.sort(rng.choice(np.arange(1, t), docs - 1, replace=False))])
    seg[row] = np.searchsorted(starts_D, np.arange(t), side='right') - 1
    pos[row] = np.arange(t) - starts_D[seg[row]]
  return seg, pos


def attention_flops(b, t, h, e):
  """Causal forward + backward: 4·B·H·T²·E/2 forward, the backward 2.5 times that."""
  return 3.5 * 4 * b * h * t * t * e / 2


def attention_case(impl, t, shape, block, platform, results):
  """(name, build) for run_cases: one kernel's forward + backward at length t."""
  import types
  import jax
  import jax.numpy as jnp
  import numpy as np
  from lmjax.model import attention
  b, h, k, e = shape['attn_batch'], shape['heads'], shape['kv_heads'], shape['head_dim']
  q_shape, kv_shape = (b, t, h, e), (b, t, k, e)
  name = f'attention {impl:<10} T={t}'

  def fwd_bwd(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, segment_ids_BxT, dout_BxTxHxE):
    attend = lambda q, k_, v: attention.attend(q, k_, v, segment_ids_BxT, impl, block=block,
                                               platform=platform)
    out_BxTxHxE, pull = jax.vjp(attend, q_BxTxHxE, k_BxSxKxE, v_BxSxKxE)
    return (out_BxTxHxE, *pull(dout_BxTxHxE))

  @jax.jit
  def random_inputs():  # one key per length: every kernel sees the same inputs
    keys = jax.random.split(jax.random.PRNGKey(t), 4)
    normal = lambda key, s: jax.random.normal(key, s, jnp.bfloat16)
    return (normal(keys[0], q_shape) * e ** -0.5, normal(keys[1], kv_shape),
            normal(keys[2], kv_shape), normal(keys[3], q_shape))

  def make_args():
    segment_ids_BxT, _ = packed_documents(np.random.default_rng(t), b, t, shape['docs'])
    q, k_, v, dout = random_inputs()
    return q, k_, v, jnp.asarray(segment_ids_BxT), dout

  def report(seconds, result, record, peak):
    tflops = attention_flops(b, t, h, e) / seconds / 1e12
    results[impl, t] = jax.device_get(result)
    print(f'{name}: fwd+bwd {seconds * 1e3:9.2f} ms, {tflops:7.4g} TFLOP/s (causal), '
          f'{peak.describe()}, compiled {size(record["compiled_bytes"])}', flush=True)
    emit({'section': 'attention', 'kernel': impl, 'B': b, 'T': t, 'H': h, 'K': k, 'E': e,
          'docs_per_row': shape['docs'], 'block': block if impl == 'blocked' else None,
          'tflops': tflops, **record})

  def build():
    # ConfigError, naming why, for a kernel the platform or these shapes cannot run.
    attention.check(types.SimpleNamespace(attention_impl=impl, d_model=h * e, n_heads=h, head_dim=e,
                                          dropout=0.0, dtype='bfloat16'), t, platform)
    bf16 = lambda s: jax.ShapeDtypeStruct(s, jnp.bfloat16)
    abstract = (bf16(q_shape), bf16(kv_shape), bf16(kv_shape),
                jax.ShapeDtypeStruct((b, t), jnp.int32), bf16(q_shape))
    return jax.jit(fwd_bwd), abstract, make_args, report
  return name, build


def attention_section(args, shape):
  import jax
  from lmjax.config import default_config
  platform = jax.devices()[0].platform
  kernels = args.kernels.split(',') if args.kernels else KERNELS.get(platform, KERNELS['cpu'])
  block = args.block or default_config().model.attention_block
  results = {}  # (kernel, T) -> host copies of (out, dq, dk, dv)
  # Smallest first (see run_cases): the kernels that form T×S logits last.
  order = sorted(((impl, t) for t in shape['attn_t'] for impl in kernels),
                 key=lambda c: (c[0] == 'xla', c[1]))
  run_cases([attention_case(impl, t, shape, block, platform, results) for impl, t in order],
            args, 'attention')
  for (impl, t), got in sorted(results.items()):
    against = next((r for r in REFERENCE_KERNELS if (r, t) in results), None)
    if against and impl != against:
      compare('attention', f'attention {impl:<10} T={t}', against, ('out', 'dq', 'dk', 'dv'),
              got, results[against, t], kernel=impl, T=t)


def compare(section, name, against, labels, got, ref, **keys):
  """Prints and emits max |got - ref| per tensor beside max |ref| (for scale)."""
  import numpy as np
  diffs, scales = {}, {}
  for label, a, r in zip(labels, got, ref):
    r32 = np.asarray(r, np.float32)
    diffs[label] = float(np.max(np.abs(np.asarray(a, np.float32) - r32)))
    scales[label] = float(np.max(np.abs(r32)))
  print(f'{name}: max |difference| from {against} (max |{against}|): ' +
        ', '.join(f'{n} {diffs[n]:.3g} ({scales[n]:.3g})' for n in labels), flush=True)
  emit({'section': section, **keys, 'against': against, 'max_abs_diff': diffs,
        'max_abs_reference': scales})


# ---- 3. cross-entropy ------------------------------------------------------------------------

def cross_entropy_case(v, chunk, shape, results):
  """(name, build): mean nats and their gradient wrt features and weights, whole or chunked."""
  import jax
  import jax.numpy as jnp
  from lmjax.train import loss
  n, d = shape['ce_tokens'], shape['ce_width']
  name = f'cross_entropy V={v:<7} ' + (f'chunk={chunk}' if chunk else 'whole')

  def objective(x_NxD, w_DxV, targets_N):
    if chunk:
      nats_N, _ = loss.cross_entropy_chunked(x_NxD, w_DxV, None, targets_N, chunk)
    else:  # as lmjax.train.steps.loss_sums: float32 logits of every token at once
      logits_NxV = jnp.dot(x_NxD, w_DxV, preferred_element_type=jnp.float32)
      nats_N, _ = loss.cross_entropy(logits_NxV, targets_N)
    return nats_N.mean()

  @jax.jit
  def random_inputs():
    kx, kw, kt = jax.random.split(jax.random.PRNGKey(v), 3)
    return (jax.random.normal(kx, (n, d), jnp.bfloat16),
            (jax.random.normal(kw, (d, v)) * d ** -0.5).astype(jnp.bfloat16),
            jax.random.randint(kt, (n,), 0, v, jnp.int32))

  def report(seconds, result, record, peak):
    value, grads = jax.device_get(result)
    results[v, chunk] = (value, *grads)
    tflops = 6 * n * d * v / seconds / 1e12
    print(f'{name}: value+grad {seconds * 1e3:9.2f} ms, {tflops:7.4g} TFLOP/s (6·N·D·V), '
          f'{peak.describe()}, compiled {size(record["compiled_bytes"])}, '
          f'loss {float(value):.4f}', flush=True)
    emit({'section': 'cross_entropy', 'N': n, 'D': d, 'V': v, 'chunk': chunk,
          'loss': float(value), 'tflops': tflops, **record})

  def build():
    abstract = (jax.ShapeDtypeStruct((n, d), jnp.bfloat16),
                jax.ShapeDtypeStruct((d, v), jnp.bfloat16), jax.ShapeDtypeStruct((n,), jnp.int32))
    return (jax.jit(jax.value_and_grad(objective, argnums=(0, 1))), abstract, random_inputs,
            report)
  return name, build


def cross_entropy_section(args, shape):
  results = {}  # (V, chunk) -> host copies of (value, dx, dw)
  # Smallest first (see run_cases): by the logits live at once, chunk (or N) × V.
  order = sorted(((v, chunk) for v in shape['ce_vocab'] for chunk in (0, *shape['ce_chunks'])),
                 key=lambda c: (c[1] or shape['ce_tokens']) * c[0])
  run_cases([cross_entropy_case(v, chunk, shape, results) for v, chunk in order], args,
            'cross_entropy')
  for (v, chunk), got in sorted(results.items()):
    if chunk and (v, 0) in results:
      compare('cross_entropy', f'cross_entropy V={v:<7} chunk={chunk}', 'whole',
              ('loss', 'dx', 'dw'), got, results[v, 0], V=v, chunk=chunk)


# ---- 4. train step and 5. its memory ---------------------------------------------------------

def train_config(args, shape, attention_impl):
  """llama_1b (default_config() + its get_config()) on random tokens, one device's batch of
  `shape` in one micro-batch (the config's own micro-batch per device is 8 × 2048), resolved;
  `--set FIELD=VALUE` as --config.FIELD=VALUE would (a Python literal, else the text)."""
  from experiments.configs import llama_1b
  from lmjax.config import resolve
  from lmjax.sweeps.configs import apply_overrides
  c = llama_1b.get_config()
  overrides = {'data.dataset': 'random', 'data.batch_size': shape['batch'],
               'data.seq_len': shape['seq_len'], 'train.grad_accum': 1,
               'model.dtype': 'bfloat16', 'model.attention_impl': attention_impl,
               'mesh.data': 1, 'mesh.fsdp': 1, 'mesh.tensor': 1,
               **{f'model.{k}': v for k, v in shape['model'].items()}}
  if args.loss_chunk is not None:
    overrides['train.loss_chunk'] = args.loss_chunk
  for item in args.set:
    field, _, text = item.partition('=')
    try:
      overrides[field] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      overrides[field] = text
  return resolve(apply_overrides(c, overrides, '--set: '))


def random_batch(train_step, docs=4):
  """One batch of random tokens as the loop feeds it (the keys of TrainStep.abstract_batch),
  packed `docs` documents to a row."""
  import numpy as np
  from lmjax.train import sharding
  config = train_step.config
  b, t, v = config.data.batch_size, config.data.seq_len, config.model.vocab_size
  rng = np.random.default_rng(config.seed)
  tokens = rng.integers(0, v, (b, t + 1), dtype=np.int32)
  segment_ids, positions = packed_documents(rng, b, t, docs)
  batch = {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:], 'positions': positions,
           'segment_ids': segment_ids, 'weights': np.ones((b, t), np.float32)}
  return sharding.put_batch(batch, sharding.batch_sharding(train_step.mesh))


def peak_flops(args):
  """(FLOP/s, source) of one device, or (None, why) where neither the flag nor the table has it."""
  import jax
  from lmjax.model import flops
  dev = jax.devices()[0]
  if args.peak_tflops:
    return args.peak_tflops * 1e12, '--peak_tflops'
  peak, source = flops.peak_flops_per_device(dev.device_kind, dev.platform)
  return (peak, source) if peak else (None, f'{source}; give --peak_tflops')


def run_train_step(args, train_step, compiled):
  """Times `compiled` (the train step) on random tokens; returns the train_step record."""
  import jax
  from lmjax.model import flops
  from lmjax.model.spec import ModelConfig
  from lmjax.train.steps import xla_flops
  config = train_step.config
  with Peak() as mem:
    state, batch, schedule = train_step.init_state(), random_batch(train_step), \
        train_step.schedule()
    state, metrics = compiled(state, batch, schedule)  # the first call: autotuning, allocation
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.iters + 1):
      t0 = time.perf_counter()
      state, metrics = compiled(state, batch, schedule)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
  seconds = statistics.median(times[1:])
  b, t = config.data.batch_size, config.data.seq_len
  mcfg = ModelConfig.from_config(config.model)
  causal = flops.exact_flops_per_token(mcfg, t, attention='causal')
  dense = flops.exact_flops_per_token(mcfg, t, attention='dense')
  tokens_per_s = b * t / seconds
  peak, source = peak_flops(args)
  mfu = (lambda fpt: flops.mfu(fpt, tokens_per_s, peak)) if peak else (lambda fpt: None)
  kernel = train_step.model.cfg.attention_impl
  record = {'section': 'train_step', 'config': 'experiments/configs/llama_1b.py',
            'attention_impl': config.model.attention_impl, 'kernel': kernel,
            'remat': config.model.remat, 'loss_chunk': config.train.loss_chunk,
            'batch': b, 'seq_len': t, 'N': flops.param_counts(mcfg).N,
            'step_s': seconds, 'step_s_min': min(times[1:]), 'tokens_per_s': tokens_per_s,
            'flops_per_token': dense, 'flops_per_token_causal': causal,
            'xla_flops_per_token': xla_flops(compiled) / (b * t),
            'mfu': mfu(causal), 'mfu_dense': mfu(dense), 'peak_flops': peak,
            'peak_flops_source': source, 'loss': float(metrics['loss']), **mem.record()}
  mfu_text = (f'MFU {record["mfu"]:.1%} (causal), {record["mfu_dense"]:.1%} (dense) of '
              f'{peak / 1e12:.4g} TFLOP/s ({source})' if peak else f'no MFU: {source}')
  print(f'train step {kernel} {b}×{t}, remat {config.model.remat}: '
        f'{seconds * 1e3:.1f} ms, {tokens_per_s:,.0f} tokens/s, {mfu_text}, '
        f'{mem.describe()}, loss {record["loss"]:.3f}', flush=True)
  print(f'  FLOPs per token: {causal:.4g} analytic (causal), {dense:.4g} (dense), '
        f'{record["xla_flops_per_token"]:.4g} XLA\'s cost analysis (its own count: recomputation '
        'in, a scanned layer perhaps once)', flush=True)
  emit(record)
  return record


def memory_report(train_step, est, step_record):
  """launch.memory's figures (lmjax/train/memory_plan.py) for this device, beside the peak."""
  import jax
  from lmjax.train.memory_plan import MemoryPlan, Target
  dev = jax.devices()[0]
  limit = (dev.memory_stats() or {}).get('bytes_limit')
  host = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')  # what CPU devices share
  target = Target([dev], limit or host, 'JAX\'s bytes_limit of the device' if limit else
                  'the host\'s memory', f'{dev.platform}\'s ({dev.device_kind}), on this device')
  print(MemoryPlan(train_step.config, 'experiments/configs/llama_1b.py', train_step.mesh,
                   target, est, '').text(), flush=True)
  mem, measured = est.compiled, (step_record or {}).get('peak_bytes')
  if measured:
    print(f'measured peak_bytes_in_use {measured / GB:.3f} GB: needed / measured = '
          f'{est.needed / measured:.3f}', flush=True)
  emit({'section': 'memory', 'compiled_on': f'{dev.platform} ({dev.device_kind})',
        'argument_bytes': mem.argument_size_in_bytes, 'output_bytes': mem.output_size_in_bytes,
        'alias_bytes': mem.alias_size_in_bytes, 'temp_bytes': mem.temp_size_in_bytes,
        'needed_bytes': est.needed, 'params_bytes': est.params, 'moments_bytes': est.moments,
        'adamw_estimate_bytes': est.adamw_estimate,
        'activation_estimate_bytes': est.activations, 'measured_peak_bytes': measured})


def train_step_section(args, shape):
  """Sections 4 and 5 from one compile: lmjax.train.memory.train_step_memory compiles the step
  for this device (its figures are section 5) and the same executable is timed (section 4).
  Where the kernel `auto` picks fails, once more with `xla`, so that the check still yields a
  step."""
  import jax
  from lmjax.train import memory, sharding
  from lmjax.train.steps import build_train_step
  want_step, want_memory = 'train_step' not in args.skip, 'memory' not in args.skip
  for impl in ('auto', 'xla'):
    if past_deadline(args, f'train step attention_impl={impl}', 'train_step'):
      return
    try:
      config = train_config(args, shape, impl)
      train_step = build_train_step(config, sharding.make_mesh(config, jax.devices()[:1]))
      t0 = time.perf_counter()
      est = memory.train_step_memory(config, train_step.mesh) if want_memory else None
      compiled = est.executable if est else train_step.lower().compile()
      print(f'train step compiled in {time.perf_counter() - t0:.1f} s '
            f'(attention_impl={config.model.attention_impl})', flush=True)
      record = run_train_step(args, train_step, compiled) if want_step else None
      if want_memory:
        memory_report(train_step, est, record)
      return
    except Exception as e:  # a kernel failing inside the model, or out of memory
      print(f'train step attention_impl={impl}: failed: {one_line(e, 300)}', flush=True)
      emit({'section': 'train_step', 'attention_impl': impl, 'error': one_line(e, 300)})
  sys.exit(1)


def main():
  args = parse_args()
  if not args.child:
    sys.exit(parent(args))
  shape = QUICK if args.quick else FULL
  {'device': device_section, 'attention': attention_section,
   'cross_entropy': cross_entropy_section, 'train_step': train_step_section}[args.child](
       args, shape)


if __name__ == '__main__':
  main()
