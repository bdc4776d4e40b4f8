"""The one config tree of lmjax: defaults, model presets, and start-up validation.

Every config file under `experiments/configs/` starts from `default_config()` and changes what it
needs; absl flags (`--config.a.b=v`) override afterwards. `resolve(config)` then fills the fields
left to a preset or derived from others and checks every value, raising `ConfigError` with a
message that names the field and what is allowed. Nothing touches the disk before that.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from ml_collections import config_dict
from ml_collections.config_dict import ConfigDict, placeholder

from lmjax.core.errors import LmjaxError
from lmjax.data.tokenizers import configured_vocab_size


class ConfigError(LmjaxError, ValueError):
  """A config value that is not allowed; the message names the field."""


# Fields a preset decides unless the user set them (left `None` in the defaults).
PRESETS = {
    # Vaswani et al. 2017, "Attention Is All You Need": post-LN, LayerNorm, ReLU, sinusoids, tied.
    'vaswani': dict(norm='layernorm', norm_position='post', activation='relu',
                    position='sinusoidal', tie_embeddings=True, use_bias=True),
    # Touvron et al. 2023, "LLaMA": pre-RMSNorm, SwiGLU, RoPE, untied, no biases.
    'llama': dict(norm='rmsnorm', norm_position='pre', activation='swiglu',
                  position='rope', tie_embeddings=False, use_bias=False),
    # Radford et al. 2019 (GPT-2) as in nanoGPT: pre-LN, LayerNorm, GELU, learned positions, tied.
    'gpt2': dict(norm='layernorm', norm_position='pre', activation='gelu',
                 position='learned', tie_embeddings=True, use_bias=True),
}

CHOICES = {
    'model.preset': tuple(PRESETS),
    'model.norm': ('layernorm', 'rmsnorm'),
    'model.rope_scaling': ('none', 'llama3'),
    'model.norm_position': ('pre', 'post'),
    'model.activation': ('relu', 'gelu', 'silu', 'swiglu', 'geglu'),
    'model.position': ('sinusoidal', 'learned', 'rope', 'none'),
    'model.dtype': ('float32', 'bfloat16', 'float16'),
    'model.param_dtype': ('float32', 'bfloat16'),
    'model.remat': ('none', 'full', 'dots', 'minimal', 'save_qkv_proj', 'save_out_proj',
                    'save_attention', 'offload_qkv_proj',
                    'offload_attention'),  # lmjax/model/remat.py
    'model.parametrization': ('sp', 'mup'),  # lmjax/model/spec.py, Mup
    'model.moe_router': ('mixtral', 'switch', 'deepseek'),  # lmjax/model/moe.py
    'model.moe_impl': ('auto', 'ragged', 'blocked'),
    'model.adapter_placement': ('houlsby', 'pfeiffer'),  # lmjax/model/layers.py, Adapter
    'model.attention_impl': ('auto', 'blocked', 'xla', 'cudnn', 'splash',
                             'pallas_gpu'),  # lmjax/model/attention.py
    'optim.schedule': ('cosine', 'linear', 'constant', 'wsd'),
    'optim.decay_shape': ('linear', 'cosine', '1-sqrt'),
    'data.tokenizer': ('byte', 'sentencepiece', 'hf'),
    'data.sp_model': ('bpe', 'unigram'),
    'data.doc_per': ('file', 'line'),
    'data.non_utf8': ('skip', 'fail'),
    'data.chat_template': ('auto', 'plain', 'tokenizer'),  # lmjax/data/chat.py
    'data.loss_mask': ('completion', 'all'),
    'train.objective': ('lm', 'dpo'),
    'train.quantize': ('none', 'int8'),  # lmjax/model/quantize.py
    'dpo.loss_type': ('sigmoid', 'ipo', 'hinge'),  # lmjax/train/preference.py
}

GATED = ('swiglu', 'geglu')  # gated linear units (Shazeer 2020): two input projections


def default_config() -> ConfigDict:
  """Every knob with its default, one section at a time. Sizes here are the `tiny` model's."""
  c = ConfigDict()
  c.seed = 0
  c.model, c.data, c.optim = _model(), _data(), _optim()
  c.train, c.mesh, c.checkpoint = _train(), _mesh(), _checkpoint()
  c.eval, c.dpo = _eval(), _dpo()
  return c


def _model() -> ConfigDict:
  """config.model: the architecture (lmjax/model/transformer.py); None: from the preset."""
  m = ConfigDict()
  m.preset = 'llama'
  m.norm = placeholder(str)             # layernorm | rmsnorm       (None: from preset)
  m.norm_position = placeholder(str)    # pre | post                (None: from preset)
  m.activation = placeholder(str)       # relu|gelu|silu|swiglu|geglu (None: from preset)
  m.position = placeholder(str)         # sinusoidal|learned|rope|none (None: from preset)
  m.tie_embeddings = placeholder(bool)  # (None: from preset)
  m.use_bias = placeholder(bool)        # biases in projections and LayerNorm (None: preset)
  m.qkv_bias = False                    # biases on the q, k, v projections alone (Qwen2)
  m.rope_theta = 10000.0
  m.rope_scaling = 'none'               # none | llama3 (LLaMA 3.1's long-context frequencies)
  m.rope_scaling_factor = 8.0           # llama3: the factor, low and high frequency factors
  m.rope_low_freq_factor = 1.0          #   and the context length of pretraining
  m.rope_high_freq_factor = 4.0
  m.rope_original_max_len = 8192
  m.norm_eps = 1e-5                     # added to the mean square (RMSNorm) or variance (LN)
  m.vocab_size = placeholder(int)       # None: the tokenizer's vocabulary size
  m.d_model = 64
  m.n_layers = 2
  m.n_heads = 4
  m.n_kv_heads = placeholder(int)       # None: n_heads (MHA); 1: MQA; a divisor: GQA
  m.head_dim = 0                        # 0: d_model // n_heads; else its own (n_heads·head_dim
                                        # may differ from d_model, as in some HF checkpoints)
  m.d_ff = placeholder(int)             # None: 4·d_model, or 8/3·d_model (rounded) when gated
  m.max_seq_len = 64
  m.dropout = 0.0
  m.dtype = 'float32'                   # compute dtype
  m.param_dtype = 'float32'
  m.init_std = 0.02
  m.attention_impl = 'auto'             # auto|blocked|xla|cudnn|splash|pallas_gpu (attention.py)
  m.attention_block = 64                # blocked kernel: query rows per block (0: one block)
  m.remat = 'none'                      # recomputation policy per block by name (model/remat.py)
  m.scan_layers = False                 # nn.scan over stacked layers (fast compiles when deep)
  # How init, multipliers and per-parameter learning rates change with width and depth
  # (lmjax/model/spec.py, Mup): sp, or mup (μP, Yang et al. 2022, with CompleteP's depth rules,
  # Dey et al. 2025). At the base shape mup is sp exactly; 0: the model's own value (its base).
  m.parametrization = 'sp'              # sp | mup
  m.mup_base_d_model = 0                # mup: the width whose tuned hyperparameters transfer
  m.mup_base_head_dim = 0               # mup: attention is sqrt(base)/head_dim (1/sqrt(E) at it)
  m.mup_base_n_layers = 0               # mup: the depth of the base (0: no depth transfer)
  m.mup_depth_alpha = 1.0               # mup: residual branches × (base/depth)^α; 1 CompleteP
  # Mixture of experts (lmjax/model/moe.py): the MLP of every `moe_every`-th layer becomes
  # `moe_experts` experts of width `moe_d_ff`, `moe_top_k` of them per token. 0 experts: dense.
  m.moe_experts = 0                     # E routed experts; 0: a dense MLP in every layer
  m.moe_top_k = 2                       # experts per token
  m.moe_d_ff = 0                        # each expert's hidden width; 0: d_ff
  m.moe_shared_experts = 0              # experts every token uses (DeepSeekMoE), width moe_d_ff
  m.moe_every = 1                       # layers i with (i + 1) % moe_every == 0 are MoE
  m.moe_router = 'mixtral'              # mixtral | switch | deepseek (moe.py, route)
  m.moe_capacity_factor = 0.0           # 0: dropless; > 0: each expert takes at most
                                        # ceil(factor · tokens · top_k / E) tokens, drops the rest
  m.moe_impl = 'auto'                   # dropless grouped matmul: auto | ragged | blocked
  m.moe_lb_loss = 0.01                  # weight of the load-balancing loss (Switch form)
  m.moe_z_loss = 0.001                  # weight of the router z-loss (ST-MoE)
  m.moe_bias_rate = 0.001               # deepseek: the balancing bias's step per update
  # Low-rank adapters (LoRA, lmjax/model/lora.py): W + (alpha/rank)·A·B on the targeted
  # projections, the rest of the model frozen. 0: none.
  m.lora_rank = 0
  m.lora_alpha = 16.0
  m.lora_dropout = 0.0                  # dropout on the adapters' input
  m.lora_targets = 'query,value'        # names or regexes over attn/query|key|value|out,
                                        # mlp/wi|wi_gate|wo (comma-separated)
  # Bottleneck adapters (Houlsby et al. 2019; layers.Adapter): x + up(act(down(x))) on a
  # sublayer's output, the rest of the model frozen. 0: none.
  m.adapter_dim = 0                     # the bottleneck's width m
  m.adapter_placement = 'houlsby'       # houlsby: after attention and after the MLP;
                                        # pfeiffer: after the MLP only (Pfeiffer et al. 2021)
  return m


def _data() -> ConfigDict:
  """config.data: the corpus, tokenizer and batches (lmjax/data/)."""
  data = ConfigDict()
  data.dataset = 'python_stdlib'        # python_stdlib | local_text | chat_jsonl |
                                        # preference_jsonl | random | a TFDS name
  data.data_dir = placeholder(str)      # TFDS data dir; None: $TFDS_DATA_DIR, ~/tensorflow_datasets
  data.paths = ''                       # local_text: a directory or glob(s), comma-separated;
                                        # chat_jsonl, preference_jsonl: the training JSONL
  data.eval_paths = ''                  # chat_jsonl: held-out examples ('': val_percent of paths')
  data.chat_template = 'auto'           # chat_jsonl: plain | tokenizer (a tokenizer.json's own
                                        # Jinja template) | auto (tokenizer's if it has one)
  data.loss_mask = 'completion'         # chat_jsonl: train on the completions (assistant turns)
                                        # alone | all tokens (evaluation: completions always)
  data.doc_per = 'file'                 # local_text: one document per file | line
  data.non_utf8 = 'skip'                # local_text: skip (and count) | fail on non-UTF-8 files
  data.val_percent = 5                  # local builders: share of documents in validation
  data.text_feature = 'text'            # catalogue datasets: the text feature
  data.train_split = 'train'            # catalogue datasets: split names
  data.eval_split = 'validation'
  data.tokenizer = 'byte'               # byte | sentencepiece | hf (a tokenizer.json)
  data.hf_tokenizer = ''                # hf: the tokenizer.json file
  data.hf_sep_token = ''                # hf: the token starting documents ('': its end token)
  data.sp_model = 'bpe'                 # sentencepiece: bpe | unigram
  data.vocab_size = 4096                # sentencepiece: vocabulary size to train
  data.sp_train_bytes = 8_000_000       # sentencepiece: text it trains on (from the train split)
  data.seq_len = 64
  data.batch_size = 8                   # sequences per optimizer step (global)
  data.eval_batches = 4                 # batches of the evaluation split per evaluation
  return data


def _optim() -> ConfigDict:
  """config.optim: AdamW and the learning-rate schedule (lmjax/train/optim.py)."""
  o = ConfigDict()
  o.lr = 3e-3
  o.min_lr_ratio = 0.1                  # final lr = min_lr_ratio · lr
  o.schedule = 'cosine'                 # cosine | linear | constant | wsd (after warmup)
  o.warmup_steps = 10
  o.decay_fraction = 0.2                # wsd: share of steps spent decaying
  o.decay_shape = '1-sqrt'              # wsd: linear | cosine | 1-sqrt
  o.b1 = 0.9
  o.b2 = 0.95
  o.eps = 1e-8
  o.weight_decay = 0.1
  o.decay_norms = False
  o.decay_biases = False
  o.decay_embeddings = True
  o.grad_clip = 1.0                     # global-norm clipping; 0 disables
  return o


def _train() -> ConfigDict:
  """config.train: the run: steps, logging, evaluation, loss, starting point."""
  t = ConfigDict()
  t.steps = 100
  t.grad_accum = 1                      # micro-batches per step; batch_size must divide
  t.log_every = 10
  t.eval_every = 50
  t.peak_flops = placeholder(float)     # per device, FLOP/s; None: known table or measured
  t.skip_nonfinite = 0                  # skip up to this many consecutive non-finite updates
  t.loss_chunk = 0                      # tokens per chunk of the output layer + loss; 0: all
  t.z_loss = 0.0                        # weight of log²Z in the objective (PaLM: 1e-4); 0: off
  t.init_from = ''                      # start from another run's checkpoint (a run directory)
  t.init_step = 0                       # ... at this step (cooldown branches: lmjax/sweeps)
  t.init_params = False                 # take init_from's params alone: a fresh optimizer, data
                                        # from step 0 (fine-tuning); init_step -1: its newest
  t.objective = 'lm'                    # lm: next-token cross-entropy | dpo: config.dpo's
                                        # preference loss against init_from as the reference
  t.quantize = 'none'                   # int8: the block matmuls in int8 forward and backward
                                        # (quantised training through qwix)
  t.compile_cache = 'auto'              # launch.train's compilation cache: auto | none | a dir
                                        # (auto: $JAX_COMPILATION_CACHE_DIR, else beside the run)
  t.profile_start = 0                   # first step of a jax.profiler trace in DIR/tb; 0: none
  t.profile_steps = 3                   # steps the trace covers
  return t


def _eval() -> ConfigDict:
  """config.eval: downstream tasks evaluated during training, at evaluation steps, through
  lm-evaluation-harness (lmjax/eval/harness.py; the `harness` extra)."""
  e = ConfigDict()
  e.tasks = ''                          # comma-separated task names ('': none), e.g.
                                        # stdlib_next_line,stdlib_identifier,stdlib_bpb
  e.every = 0                           # at evaluation steps that are multiples of this, and
                                        # at the last step (0: the last step only)
  e.limit = 200                         # documents per task (0: all)
  e.include_path = ''                   # a directory of your own task YAML files
  e.batch_size = 32                     # requests per batch
  return e


def _dpo() -> ConfigDict:
  """config.dpo: the preference loss of train.objective=dpo (lmjax/train/preference.py)."""
  d = ConfigDict()
  d.beta = 0.1                          # β: the strength of the KL pull to the reference
  d.loss_type = 'sigmoid'               # sigmoid (DPO) | ipo | hinge
  d.label_smoothing = 0.0               # sigmoid: ε of conservative DPO, in [0, 0.5)
  return d


def _mesh() -> ConfigDict:
  """config.mesh: the device mesh and the logical-axis rules (lmjax/train/sharding.py)."""
  ms = ConfigDict()
  ms.data = -1                          # -1: the devices left over by the other axes
  ms.fsdp = 1
  ms.tensor = 1
  # [logical axis, mesh axis or list of mesh axes or None]; see lmjax/train/sharding.py. Parameters
  # first, then activations (act_*: constraints inside the model, lmjax/model/transformer.py).
  ms.rules = [['batch', ['data', 'fsdp']], ['embed', 'fsdp'], ['mlp', 'tensor'],
              ['heads', 'tensor'], ['kv_heads', 'tensor'], ['vocab', 'tensor'],
              ['head_dim', None], ['norm', None], ['layers', None],
              ['act_batch', ['data', 'fsdp']], ['act_length', None], ['act_embed', None],
              ['act_heads', 'tensor'], ['act_kv_heads', 'tensor'], ['act_mlp', 'tensor'],
              ['act_vocab', 'tensor'], ['expert', None]]
  return ms


def _checkpoint() -> ConfigDict:
  """config.checkpoint: what is saved, when, and what is kept."""
  k = ConfigDict()
  k.every_steps = 100                   # save every this many steps, and at the end
  k.max_to_keep = 3                     # newest checkpoints kept (0: all)
  k.keep_every = 0                      # also keep every checkpoint at a multiple of this
  k.keep_steps = ()                     # also save and keep these steps (branch points)
  k.async_save = True                   # write in the background while training goes on
  return k


# What a run may change from the saved config of the run it continues; any other difference is
# refused. A resume may change its length, logging, evaluation, checkpointing and mesh.
# How the same arithmetic is scheduled (kernels, recomputation, chunking) may change too.
RESUME_MAY_DIFFER = ('train.steps', 'train.log_every', 'train.eval_every', 'train.peak_flops',
                     'train.skip_nonfinite', 'checkpoint.', 'data.eval_batches',
                     'data.data_dir', 'mesh.', 'train.init_from', 'train.init_step',
                     'model.attention_impl', 'model.attention_block', 'model.remat',
                     'model.moe_impl', 'train.loss_chunk', 'train.compile_cache',
                     'train.profile_start', 'train.profile_steps', 'eval.')
# A cooldown branch (Hägele et al. 2024) may also change its schedule, but not the model, data
# or the rest of the optimizer of the run it starts from.
BRANCH_MAY_DIFFER = ('train.', 'checkpoint.', 'eval.', 'optim.schedule', 'optim.decay_fraction',
                     'optim.decay_shape', 'optim.min_lr_ratio', 'data.eval_batches',
                     'data.data_dir', 'mesh.', 'model.attention_impl',
                     'model.attention_block', 'model.remat', 'model.moe_impl')
# An imported checkpoint (launch.convert --from_hf) may be trained on anything, any way: only the
# model must be the one imported (how its arithmetic runs may change).
IMPORT_MAY_DIFFER = ('seed', 'data.', 'optim.', 'train.', 'checkpoint.', 'mesh.', 'eval.', 'dpo.',
                     'model.attention_impl', 'model.attention_block', 'model.remat',
                     'model.moe_impl', 'model.moe_lb_loss', 'model.moe_z_loss',
                     'model.moe_bias_rate', 'model.moe_capacity_factor',
                     'model.dropout', 'model.dtype', 'model.init_std', 'model.preset',
                     'model.lora_', 'model.adapter_')


def set_fields(config: ConfigDict, fields: dict) -> ConfigDict:
  """`config` with each field set: keys are paths with `__` between sections
  (`train__steps=10`, as keyword arguments can carry them). Returns the config."""
  for path, value in fields.items():
    node = config
    *parents, leaf = path.split('__')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _as_json(value):
  """Tuples as lists, as a config read back from JSON has them."""
  if isinstance(value, (list, tuple)):
    return [_as_json(v) for v in value]
  return value


def flatten(tree, prefix=''):
  """{'a.b': value} of a nested config dict, values in their JSON form (comparable)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = _as_json(value)
  return out


class Differences(NamedTuple):
  """The fields in which a new config differs from a saved one, as `{field: (saved, new)}`."""
  refused: dict   # fields the policy does not allow to change
  allowed: dict   # fields it does

  def describe(self, limit=6) -> str:
    """'model.n_layers (2 -> 3), optim.lr (...)': the refused fields, at most `limit`."""
    items = list(self.refused.items())
    text = ', '.join(f'{k} ({a!r} -> {b!r})' for k, (a, b) in items[:limit])
    return text + (' ...' if len(items) > limit else '')


def differences(saved: dict, new: dict, may_differ) -> Differences:
  """How `new` differs from `saved` (nested dicts, e.g. a run's config.json) under a policy:
  `may_differ` lists the fields or prefixes ('checkpoint.') that are allowed to change."""
  # A field the saved config lacks was added to lmjax after that run started: it ran with the
  # field's default.
  a, b, defaults = flatten(saved), flatten(new), flatten(default_config().to_dict())
  a.update({k: defaults[k] for k in b if k not in a and k in defaults})
  fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  pairs = {k: (a.get(k), b.get(k)) for k in fields}
  allowed = {k: v for k, v in pairs.items() if k.startswith(tuple(may_differ))}
  return Differences({k: v for k, v in pairs.items() if k not in allowed}, allowed)


def _fail(field, value, allowed):
  raise ConfigError(f'config.{field}={value!r} is not allowed: {allowed}')


def _get(c, field):
  node = c
  for part in field.split('.'):
    node = node[part]
  return node


def resolve(config: ConfigDict) -> ConfigDict:
  """Returns a locked copy with preset and derived fields filled in; raises ConfigError."""
  c = ConfigDict(config.to_dict())
  m = c.model
  if m.preset not in PRESETS:
    _fail('model.preset', m.preset, f'one of {", ".join(PRESETS)}')
  _refuse_unknown(c)
  for field, value in PRESETS[m.preset].items():
    if m[field] is None:
      m[field] = value
  for field, allowed in CHOICES.items():
    value = _get(c, field)
    if value not in allowed:
      _fail(field, value, f'one of {", ".join(allowed)}')
  try:
    tokenizer_size = configured_vocab_size(c.data)
  except ValueError as e:  # a missing or unreadable tokenizer.json
    raise ConfigError(str(e)) from None
  if m.vocab_size is None:
    m.vocab_size = tokenizer_size
  if m.n_kv_heads is None:
    m.n_kv_heads = m.n_heads
  if m.d_ff is None:
    m.d_ff = default_d_ff(m.d_model, m.activation)
  _validate(c)
  c.lock()
  return c


def _refuse_unknown(c):
  """ConfigError for a field default_config does not have (a typo in a config file, or a field
  of another lmjax): it would otherwise be carried along and do nothing."""
  known = flatten(default_config().to_dict())
  unknown = sorted(k for k in flatten(c.to_dict()) if k not in known)
  if unknown:
    section = unknown[0].rsplit('.', 1)[0] if '.' in unknown[0] else ''
    fields = sorted(k.rsplit('.', 1)[-1] for k in known if k.startswith(f'{section}.'))
    raise ConfigError(f'config.{unknown[0]} is not a config field' +
                      (f' (config.{section} has {", ".join(fields)})' if section else ''))


def default_d_ff(d_model, activation):
  """4·d_model; gated units keep the parameter count with 2/3 of that, rounded up to 64 (LLaMA)."""
  if activation in GATED:
    return 64 * math.ceil(8 * d_model / 3 / 64)
  return 4 * d_model


def _positive(c, *fields, allow_zero=False):
  for field in fields:
    value = _get(c, field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
      _fail(field, value, 'a number >= 0' if allow_zero else 'a number > 0')


def _validate(c):
  m, data, o, t = c.model, c.data, c.optim, c.train
  _positive(c, 'model.d_model', 'model.n_layers', 'model.n_heads', 'model.n_kv_heads',
            'model.d_ff', 'model.max_seq_len', 'model.vocab_size', 'model.rope_theta',
            'model.init_std', 'data.seq_len', 'data.batch_size', 'data.eval_batches',
            'optim.lr', 'optim.eps', 'train.steps', 'train.grad_accum', 'train.log_every',
            'train.eval_every', 'data.sp_train_bytes', 'checkpoint.every_steps')
  _positive(c, 'model.attention_block', 'optim.warmup_steps',
            'optim.weight_decay', 'optim.grad_clip', 'optim.min_lr_ratio', 'data.val_percent',
            'train.skip_nonfinite', 'checkpoint.max_to_keep',
            'checkpoint.keep_every', 'train.loss_chunk', 'train.z_loss', 'train.profile_start',
            allow_zero=True)
  _positive(c, 'train.profile_steps', 'eval.batch_size')
  _positive(c, 'eval.every', 'eval.limit', allow_zero=True)
  for field in ('eval.tasks', 'eval.include_path'):
    if not isinstance(_get(c, field), str):
      _fail(field, _get(c, field), 'a string')
  if not isinstance(t.compile_cache, str) or not t.compile_cache:
    _fail('train.compile_cache', t.compile_cache, "'auto', 'none' or a directory")
  micro_tokens = data.batch_size // t.grad_accum * data.seq_len
  if (not isinstance(t.loss_chunk, int) or isinstance(t.loss_chunk, bool)
      or (t.loss_chunk and micro_tokens % t.loss_chunk)):
    _fail('train.loss_chunk', t.loss_chunk, f'0 or a divisor of the {micro_tokens} tokens of a '
          'micro-batch (data.batch_size / train.grad_accum × data.seq_len)')
  if not isinstance(m.head_dim, int) or isinstance(m.head_dim, bool) or m.head_dim < 0:
    _fail('model.head_dim', m.head_dim, '0 (d_model // n_heads) or a positive integer')
  if not m.head_dim and m.d_model % m.n_heads:
    _fail('model.n_heads', m.n_heads, f'a divisor of model.d_model={m.d_model} (or set '
          'model.head_dim)')
  if m.n_heads % m.n_kv_heads:
    _fail('model.n_kv_heads', m.n_kv_heads, f'a divisor of model.n_heads={m.n_heads}')
  if m.position == 'rope' and (m.head_dim or m.d_model // m.n_heads) % 2:
    _fail('model.n_heads' if not m.head_dim else 'model.head_dim',
          m.head_dim or m.n_heads, 'a value giving an even head_dim for rope')
  if m.rope_scaling == 'llama3' and not (
      m.rope_scaling_factor > 0 and 0 < m.rope_low_freq_factor < m.rope_high_freq_factor
      and m.rope_original_max_len > 0):
    _fail('model.rope_scaling_factor', m.rope_scaling_factor, 'with rope_scaling=llama3: '
          'factor > 0, 0 < rope_low_freq_factor < rope_high_freq_factor, '
          'rope_original_max_len > 0')
  _validate_mup(c)
  _validate_moe(c)
  _validate_lora(c)
  if not isinstance(m.qkv_bias, bool):
    _fail('model.qkv_bias', m.qkv_bias, 'true or false')
  if m.qkv_bias and m.use_bias:
    _fail('model.qkv_bias', m.qkv_bias, 'false with model.use_bias=True (which has them already)')
  if not m.norm_eps > 0:
    _fail('model.norm_eps', m.norm_eps, 'a number > 0')
  if not 0 <= m.dropout < 1:
    _fail('model.dropout', m.dropout, 'a number in [0, 1)')
  if m.position == 'learned' and data.seq_len > m.max_seq_len:
    _fail('data.seq_len', data.seq_len, f'at most model.max_seq_len={m.max_seq_len} with learned '
          'positions')
  if data.dataset != 'random' and m.vocab_size < configured_vocab_size(data):
    _fail('model.vocab_size', m.vocab_size,
          f'at least the tokenizer size {configured_vocab_size(data)}')
  for b in ('b1', 'b2'):
    if not 0 <= o[b] < 1:
      _fail(f'optim.{b}', o[b], 'a number in [0, 1)')
  if o.min_lr_ratio > 1:
    _fail('optim.min_lr_ratio', o.min_lr_ratio, 'a number in [0, 1]')
  if not 0 < o.decay_fraction <= 1:
    _fail('optim.decay_fraction', o.decay_fraction, 'a number in (0, 1]')
  if o.warmup_steps > t.steps:
    _fail('optim.warmup_steps', o.warmup_steps, f'at most train.steps={t.steps}')
  if data.batch_size % t.grad_accum:
    _fail('train.grad_accum', t.grad_accum, f'a divisor of data.batch_size={data.batch_size}')
  if not 0 < data.val_percent < 100:
    _fail('data.val_percent', data.val_percent, 'a number in (0, 100)')
  if data.tokenizer == 'sentencepiece' and data.vocab_size < 259:
    _fail('data.vocab_size', data.vocab_size, 'at least 259 for sentencepiece (256 byte pieces, '
          '<unk>, <sep> and one more)')
  if data.dataset == 'local_text' and not data.paths:
    _fail('data.paths', data.paths,
          'a directory or glob of text files when data.dataset=local_text')
  if t.peak_flops is not None:
    _positive(c, 'train.peak_flops')
  keep = tuple(c.checkpoint.keep_steps or ())
  if not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= t.steps for s in keep):
    _fail('checkpoint.keep_steps', keep, f'a tuple of steps in [1, train.steps={t.steps}]')
  if data.dataset in ('chat_jsonl', 'preference_jsonl'):
    if not data.paths or ',' in data.paths:
      _fail('data.paths', data.paths, f'one JSONL file when data.dataset={data.dataset}')
    if data.tokenizer == 'sentencepiece':
      _fail('data.tokenizer', data.tokenizer, f'byte or hf with data.dataset={data.dataset} (a '
            'SentencePiece model lives beside the corpus it was trained on)')
  _validate_dpo(c)
  if c.train.quantize != 'none' and c.model.moe_experts:
    _fail('train.quantize', c.train.quantize, 'none with model.moe_experts > 0 (the experts\' '
          'grouped matmuls are not quantised)')
  if not isinstance(t.init_params, bool):
    _fail('train.init_params', t.init_params, 'true or false')
  if t.init_params:
    if not t.init_from:
      _fail('train.init_params', t.init_params, 'false without train.init_from')
    if not isinstance(t.init_step, int) or t.init_step < -1:
      _fail('train.init_step', t.init_step, 'a step of train.init_from, or -1 (its newest)')
  elif t.init_from and not 0 <= t.init_step < t.steps:
    _fail('train.init_step', t.init_step, f'a step in [0, train.steps={t.steps}) with '
          'train.init_from (0: an imported model, launch.convert)')


def _validate_dpo(c):
  t, data, d = c.train, c.data, c.dpo
  if (t.objective == 'dpo') != (data.dataset == 'preference_jsonl'):
    _fail('train.objective', t.objective, 'dpo exactly when data.dataset=preference_jsonl '
          '(pairs of chosen and rejected completions)')
  if t.objective != 'dpo':
    return
  if not (t.init_from and t.init_params):
    _fail('train.objective', t.objective, 'dpo with train.init_from and train.init_params=True: '
          'the run it starts from is the frozen reference model')
  if data.batch_size % 2 or (data.batch_size // 2) % t.grad_accum:
    _fail('data.batch_size', data.batch_size, 'an even number of sequences (pairs × 2) whose '
          'pairs train.grad_accum divides, with train.objective=dpo')
  if c.model.moe_experts:
    _fail('train.objective', t.objective, 'lm with model.moe_experts > 0 (no DPO for mixtures '
          'of experts in lmjax)')
  _positive(c, 'dpo.beta')
  if not 0 <= d.label_smoothing < 0.5:
    _fail('dpo.label_smoothing', d.label_smoothing, 'a number in [0, 0.5)')
  if d.label_smoothing and d.loss_type != 'sigmoid':
    _fail('dpo.label_smoothing', d.label_smoothing, '0 unless dpo.loss_type=sigmoid')


def _validate_mup(c):
  m = c.model
  for field in ('mup_base_d_model', 'mup_base_head_dim', 'mup_base_n_layers'):
    value = m[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      _fail(f'model.{field}', value, '0 (the model\'s own) or a positive integer')
    if value and m.parametrization != 'mup':
      _fail(f'model.{field}', value, '0 unless model.parametrization=mup')
  alpha = m.mup_depth_alpha
  if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.5 <= alpha <= 1:
    _fail('model.mup_depth_alpha', alpha, 'a number in [0.5, 1] (1: CompleteP, 0.5: depth-μP)')
  if alpha != 1 and m.parametrization != 'mup':
    _fail('model.mup_depth_alpha', alpha, '1 unless model.parametrization=mup')


def _validate_moe(c):
  m = c.model
  for field in ('moe_experts', 'moe_top_k', 'moe_d_ff', 'moe_shared_experts', 'moe_every'):
    value = m[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      _fail(f'model.{field}', value, 'an integer >= 0')
  _positive(c, 'model.moe_capacity_factor', 'model.moe_lb_loss', 'model.moe_z_loss',
            'model.moe_bias_rate', allow_zero=True)
  if not m.moe_experts:
    return
  if not 1 <= m.moe_top_k <= m.moe_experts:
    _fail('model.moe_top_k', m.moe_top_k, f'an integer in [1, model.moe_experts='
          f'{m.moe_experts}]')
  if not 1 <= m.moe_every <= m.n_layers:
    _fail('model.moe_every', m.moe_every, f'an integer in [1, model.n_layers={m.n_layers}]')
  if m.scan_layers and m.moe_every != 1:
    _fail('model.moe_every', m.moe_every, '1 with model.scan_layers (scanned layers are alike)')
  if m.parametrization == 'mup':
    _fail('model.parametrization', m.parametrization, 'sp with model.moe_experts > 0 (μP for '
          'experts and routers is not defined in lmjax)')
  if m.moe_router == 'deepseek' and m.moe_top_k == m.moe_experts:
    _fail('model.moe_top_k', m.moe_top_k, f'below model.moe_experts={m.moe_experts} with '
          'moe_router=deepseek (its bias only changes which experts are chosen)')


# The projections low-rank adapters can target (lmjax/model/lora.py), as <module>/<name>.
LORA_PROJECTIONS = ('attn/query', 'attn/key', 'attn/value', 'attn/out', 'mlp/wi', 'mlp/wi_gate',
                    'mlp/wo')


def lora_entries(targets: str) -> list:
  return [t.strip() for t in targets.split(',') if t.strip()]


def _lora_entry_matches(entry, path) -> bool:
  """An entry names a projection ('query'), its path ('attn/query'), or is a regular expression
  matched in full against the path."""
  if entry in (path, path.split('/')[-1]):
    return True
  try:
    return re.fullmatch(entry, path) is not None
  except re.error:
    return False


def lora_matches(targets: str, path: str) -> bool:
  """Whether projection `path` is one of model.lora_targets' (comma-separated)."""
  return any(_lora_entry_matches(t, path) for t in lora_entries(targets))


def lora_available(gated: bool, dense_mlp: bool) -> tuple:
  """The projections a model has: wi_gate only with a gated activation; MLP projections only
  where some layer has a dense MLP (experts are not targets)."""
  return tuple(p for p in LORA_PROJECTIONS if (gated or p != 'mlp/wi_gate')
               and (dense_mlp or not p.startswith('mlp/')))


def _validate_lora(c):
  m = c.model
  if not isinstance(m.lora_rank, int) or isinstance(m.lora_rank, bool) or m.lora_rank < 0:
    _fail('model.lora_rank', m.lora_rank, 'an integer >= 0 (0: no adapters)')
  _positive(c, 'model.lora_alpha')
  if not 0 <= m.lora_dropout < 1:
    _fail('model.lora_dropout', m.lora_dropout, 'a number in [0, 1)')
  if not isinstance(m.adapter_dim, int) or isinstance(m.adapter_dim, bool) or m.adapter_dim < 0:
    _fail('model.adapter_dim', m.adapter_dim, 'an integer >= 0 (0: no bottleneck adapters)')
  if (m.lora_rank or m.adapter_dim) and m.parametrization == 'mup':
    _fail('model.parametrization', m.parametrization, 'sp with adapters (model.lora_rank or '
          'model.adapter_dim > 0: adapters have no μP rule in lmjax)')
  if not m.lora_rank:
    return
  dense_mlp = any(not (m.moe_experts and (i + 1) % m.moe_every == 0) for i in range(m.n_layers))
  paths = lora_available(m.activation in GATED, dense_mlp)
  if not isinstance(m.lora_targets, str):
    _fail('model.lora_targets', m.lora_targets, 'a comma-separated string')
  bad = [t for t in lora_entries(m.lora_targets)
         if not any(_lora_entry_matches(t, p) for p in paths)]
  if bad or not lora_entries(m.lora_targets):
    _fail('model.lora_targets', m.lora_targets, f'names or regexes matching this model\'s '
          f'projections ({", ".join(paths)}); {bad[0] if bad else "none given"!r} matches none')


MESH_AXES = ('data', 'fsdp', 'tensor')


def parse_mesh(text: str, allow_rest: bool, flag='--mesh') -> dict:
  """`data,fsdp,tensor` (a --mesh flag) as config.mesh's sizes {'data':, 'fsdp':, 'tensor':};
  -1 (the devices left over) only where the devices are known (`allow_rest`). ConfigError in
  one line naming the flag."""
  try:
    sizes = tuple(int(x) for x in text.split(','))
  except ValueError:
    sizes = ()
  if len(sizes) != 3 or not all(s >= 1 or s == -1 for s in sizes) or sizes.count(-1) > 1:
    raise ConfigError(f'{flag}={text}: expected three positive sizes data,fsdp,tensor (one may '
                      'be -1 where the devices are known), e.g. 1,8,1')
  if -1 in sizes and not allow_rest:
    raise ConfigError(f'{flag}={text}: -1 needs --topology; without one the sizes are the '
                      'simulated devices')
  return dict(zip(MESH_AXES, sizes))


def to_dict(config: ConfigDict) -> dict:
  return config_dict.ConfigDict(config).to_dict()
