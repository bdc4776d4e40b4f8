"""The train state, the jitted train and eval steps, and `build_train_step`: the one place that
assembles model, optimizer, shardings, state and schedule into the train step of a config on a
mesh, for the loop (lmjax/train/loop.py), memory planning (memory.py), the throughput benchmark
(throughput.py) and benchmarks/accelerator_check.py alike."""
from __future__ import annotations

import functools
import math
import resource
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmjax.model import lora, moe
from lmjax.model.transformer import Transformer, model_config
from lmjax.train import loss, optim, preference, sharding
from lmjax.train.checkpoint import abstract_like


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  # Loss guard: the first step whose loss or gradient norm was not finite (-1: none yet), the
  # length of the current run of skipped non-finite updates, and how many were skipped in all.
  bad_step: jax.Array
  bad_run: jax.Array
  skipped: jax.Array


def build_model(config, mesh=None) -> Transformer:
  """The model of a resolved config for `mesh`'s devices (default: JAX's backend, no activation
  constraints). Raises ConfigError for a kernel the devices cannot run."""
  rules = sharding.rules(config) if mesh is not None else ()
  return Transformer(model_config(config, sharding.platform(mesh)), mesh, rules)


def build_model_and_optimizer(config, mesh=None):
  """(model, optimizer) for a resolved config (see `build_model`)."""
  return build_model(config, mesh), optim.optimizer(config.optim, config.train.steps,
                                                    model_config=config.model)


def _initialiser(model):
  """The model without its mesh, to create parameters from a one-row batch: the parameters do not
  depend on the mesh, and a kernel under shard_map (splash) cannot split one row over devices."""
  return model.clone(mesh=None, rules=())


def init_params(model, config, rng):
  """Unboxed parameters (logical axis annotations dropped; see `param_shardings`)."""
  tokens = jnp.zeros((1, config.data.seq_len), jnp.int32)
  return nn.meta.unbox(_initialiser(model).init(rng, tokens)['params'])


def param_shardings(model, config, mesh):
  """NamedShardings of the params alone, from their logical axes (evaluation and sampling need
  no optimizer)."""
  tokens = jax.ShapeDtypeStruct((1, config.data.seq_len), jnp.int32)
  boxed = jax.eval_shape(lambda t: _initialiser(model).init(jax.random.PRNGKey(0), t),
                         tokens)['params']
  return sharding.logical_shardings(boxed, mesh, config)


def _boxed_state(model, tx, config) -> TrainState:
  """The initial state with params (and so the optimizer's moments) still nn.Partitioned."""
  tokens = jnp.zeros((1, config.data.seq_len), jnp.int32)
  params = _initialiser(model).init(jax.random.PRNGKey(config.seed), tokens)['params']
  scalar = lambda v: jnp.full((), v, jnp.int32)  # distinct buffers: the state is donated
  return TrainState(step=scalar(0), params=params, opt_state=tx.init(params),
                    bad_step=scalar(-1), bad_run=scalar(0), skipped=scalar(0))


def state_shardings(model, tx, config, mesh):
  """NamedShardings of the whole train state from the logical axes and config.mesh.rules."""
  return sharding.logical_shardings(jax.eval_shape(lambda: _boxed_state(model, tx, config)),
                                    mesh, config)


def init_state(model, tx, config, shardings=None) -> TrainState:
  """The initial state; with `shardings`, created already sharded (never whole on one device)."""
  make = lambda: nn.meta.unbox(_boxed_state(model, tx, config))
  return make() if shardings is None else jax.jit(make, out_shardings=shardings)()


def loss_sums(params, model, batch, rng=None, chunk=0, z_loss=0.0, hits=False):
  """(objective, (Σ token cross-entropies in nats, number of target tokens, the MoE layers'
  sown 'moe' collection, {} for a dense model)), the cross-entropy from float32 logits, whole or
  `chunk` tokens at a time (lmjax/train/loss.py); the objective adds the z-loss,
  z_loss · Σ log²Z, and a mixture of experts' auxiliary losses (lmjax/model/moe.py, per token
  so that they enter the mean objective with their weights) to the nats. `hits`: the aux also
  holds the weighted count of targets that are the logits' argmax (evaluation's accuracy)."""
  cfg = model.cfg
  if lora.has_adapters(cfg):  # a frozen base: no gradient is formed for its weights (lora.py)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x if lora.is_adapter(path) else jax.lax.stop_gradient(x), params)
  apply = functools.partial(model.apply, {'params': params}, batch['inputs'],
                            batch.get('positions'), batch.get('segment_ids'),
                            deterministic=rng is None,
                            rngs=None if rng is None else {'dropout': rng},
                            mutable=['moe'] if cfg.moe_experts else False)
  targets_N = batch['targets'].reshape(-1)
  unpack = (lambda out: out) if cfg.moe_experts else (lambda out: (out, {}))
  if chunk and chunk < targets_N.shape[0]:
    head, sown = unpack(apply(return_head=True))
    nats_N, lse_N = loss.cross_entropy_chunked(*head, targets_N, chunk)
    hit_N = loss.argmax_chunked(*head, chunk) == targets_N if hits else None
  else:
    logits_BxTxV, sown = unpack(apply())
    logits_NxV = logits_BxTxV.reshape(targets_N.shape[0], -1)
    nats_N, lse_N = loss.cross_entropy(logits_NxV, targets_N)
    hit_N = jnp.argmax(logits_NxV, -1) == targets_N if hits else None
  sown = sown.get('moe', {})
  weights_N = batch['weights'].reshape(-1) if 'weights' in batch else jnp.ones_like(nats_N)
  nats, count = (nats_N * weights_N).sum(), weights_N.sum()
  objective = nats + z_loss * (lse_N * lse_N * weights_N).sum() if z_loss else nats
  if sown:
    lb, z = moe.aux_losses(sown)
    objective = objective + count * (cfg.moe_lb_loss * lb + cfg.moe_z_loss * z)
  if hits:
    return objective, (nats, count, sown, (hit_N * weights_N).sum())
  return objective, (nats, count, sown)


def schedule_arg(config):
  """The train step's third argument: the config's learning-rate schedule as numbers."""
  return jnp.asarray(optim.schedule_params(config.optim, config.train.steps))


def make_train_step(model, tx, config, mesh=None, shardings=None):
  """state, batch, schedule_arg(config) -> (state, metrics). The batch (B, T) is split into
  `grad_accum` micro-batches whose summed gradients are divided by the total token count: the
  update of the whole batch. The schedule is an argument, not a constant, so one compiled step
  serves every run of a shape (`optim.schedule_params`); `tx` only fixes the state's structure."""
  del tx  # rebuilt below around the schedule argument; same structure as the state's
  accum = config.train.grad_accum
  base_rng = jax.random.PRNGKey(config.seed + 1)
  use_rng = config.model.dropout > 0
  skip_nonfinite = config.train.skip_nonfinite

  chunk, z_loss = config.train.loss_chunk, config.train.z_loss
  moe_bias_rate = config.model.moe_bias_rate if (
      config.model.moe_experts and config.model.moe_router == 'deepseek') else 0.0
  batch_shape = lambda micro: jax.tree_util.tree_map(lambda x: x[0], micro)

  dpo = config.train.objective == 'dpo'  # pairs' preference loss (lmjax/train/preference.py)
  objective = functools.partial(
      preference.dpo_sums, beta=config.dpo.beta, loss_type=config.dpo.loss_type,
      label_smoothing=config.dpo.label_smoothing) if dpo else loss_sums

  def sum_and_grad(params, batch, rng):
    fn = lambda p: objective(p, model, batch, rng if use_rng else None, chunk, z_loss)
    (_, sums), grads = jax.value_and_grad(fn, has_aux=True)(params)
    return sums, grads

  def step_fn(state, batch, schedule):
    lr = lambda count: optim.lr_at(count, schedule)
    tx = optim.optimizer(config.optim, config.train.steps, lr, config.model)
    rng = jax.random.fold_in(base_rng, state.step)
    if accum == 1:
      (nats, count, sown), grads = sum_and_grad(state.params, batch, rng)
    else:
      micro = jax.tree_util.tree_map(
          lambda x: x.reshape(accum, x.shape[0] // accum, *x.shape[1:]), batch)

      def body(carry, xs):
        i, mb = xs
        sums, g = sum_and_grad(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree_util.tree_map(jnp.add, carry, (sums, g)), None

      sums, grads = jax.eval_shape(sum_and_grad, state.params, batch_shape(micro), rng)
      zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), (sums, grads))
      ((nats, count, sown), grads), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
    grads = jax.tree_util.tree_map(lambda g: g / count, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if moe_bias_rate:  # deepseek routers' balancing bias (lmjax/model/moe.py)
      params = moe.update_bias(params, sown, moe_bias_rate)
    loss, grad_norm = nats / count, optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    bad_run, skipped = state.bad_run, state.skipped
    if skip_nonfinite:  # keep the previous params and optimizer state for a bad update
      keep = lambda new, old: jax.tree_util.tree_map(
          lambda n, o: jnp.where(finite, n, o), new, old)
      params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
      bad_run = jnp.where(finite, 0, bad_run + 1)
      skipped = skipped + (~finite).astype(jnp.int32)
      failed = bad_run > skip_nonfinite
    else:
      failed = ~finite
    bad_step = jnp.where((state.bad_step < 0) & failed, state.step + 1, state.bad_step)
    metrics = {'loss': loss, 'grad_norm': grad_norm, 'lr': lr(state.step),
               'bad_step': bad_step, 'skipped': skipped,
               **(preference.metrics(sown, count) if dpo else
                  moe.metrics(sown, accum) if sown else {})}
    return TrainState(state.step + 1, params, opt_state, bad_step, bad_run, skipped), metrics

  if mesh is None:
    return jax.jit(step_fn, donate_argnums=0)
  return jax.jit(step_fn, donate_argnums=0,
                 in_shardings=(shardings, sharding.batch_sharding(mesh),
                               sharding.replicated(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)))


class TrainStep(NamedTuple):
  """A config's train step on a mesh, and what it runs on (`build_train_step`)."""
  config: Any
  mesh: Any
  model: Any
  tx: Any
  shardings: Any        # NamedShardings of the whole train state
  fn: Any               # jitted: state, batch, schedule -> (state, metrics); the state donated

  def init_state(self) -> TrainState:
    """The initial state from the seed, created already sharded."""
    return init_state(self.model, self.tx, self.config, self.shardings)

  def abstract_state(self):
    """ShapeDtypeStructs of the state, placed by its shardings: to lower without arrays, or
    to restore a checkpoint onto."""
    return abstract_like(jax.eval_shape(lambda: init_state(self.model, self.tx, self.config)),
                         self.shardings)

  def schedule(self):
    """The schedule argument (`schedule_arg`), on the devices."""
    return jax.device_put(schedule_arg(self.config), sharding.replicated(self.mesh))

  def abstract_batch(self) -> dict:
    """ShapeDtypeStructs of one global batch, sharded as the loop feeds it."""
    b, t = self.config.data.batch_size, self.config.data.seq_len
    spec = sharding.batch_sharding(self.mesh)
    batch = {k: jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=spec)
             for k in ('inputs', 'targets', 'positions', 'segment_ids')}
    batch['weights'] = jax.ShapeDtypeStruct((b, t), jnp.float32, sharding=spec)
    return batch

  def lower(self, state=None, batch=None):
    """The lowered step for `state` and `batch` (arrays or ShapeDtypeStructs; default: the
    abstract ones); `.compile()` it."""
    schedule = jax.ShapeDtypeStruct(schedule_arg(self.config).shape, jnp.float32,
                                    sharding=sharding.replicated(self.mesh))
    return self.fn.lower(self.abstract_state() if state is None else state,
                         self.abstract_batch() if batch is None else batch, schedule)


def build_train_step(config, mesh) -> TrainStep:
  """Model (with the kernels of the mesh's platform), optimizer, state shardings and the jitted
  train step of a resolved config on `mesh`. Raises ConfigError for a kernel the devices cannot
  run."""
  model, tx = build_model_and_optimizer(config, mesh)
  shardings = state_shardings(model, tx, config, mesh)
  return TrainStep(config, mesh, model, tx, shardings,
                   make_train_step(model, tx, config, mesh, shardings))


def make_eval_step(model, token_bytes, mesh=None, param_shardings=None, chunk=0):
  """params, batch -> summed nats, target tokens, the targets predicted by the argmax and the
  targets' UTF-8 bytes (for bits per byte), over the weighted targets (a fine-tuning batch's:
  its learned tokens alone); the loss `chunk` tokens at a time as in training
  (`train.loss_chunk`)."""
  bytes_per_token = jnp.asarray(token_bytes, jnp.float32)

  def eval_fn(params, batch):
    _, (nats, count, _, hit) = loss_sums(params, model, batch, chunk=chunk, hits=True)
    weights = batch.get('weights', jnp.ones(batch['targets'].shape, jnp.float32))
    return {'nats': nats, 'tokens': count, 'hits': hit,
            'bytes': (bytes_per_token[batch['targets']] * weights).sum()}
  if mesh is None:
    return jax.jit(eval_fn)
  return jax.jit(eval_fn, in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


def evaluate(eval_step, params, batches) -> dict:
  """Mean loss per token, perplexity, bits per byte and next-token accuracy (argmax) over the
  evaluation batches."""
  total = {}
  for batch in batches:
    out = jax.device_get(eval_step(params, batch))
    for k, v in out.items():
      total[k] = total.get(k, 0.0) + float(v)
  if 'margin' in total:  # pairs (lmjax/train/preference.py): loss, reward accuracy and margin
    return {'eval_loss': total['nats'] / total['tokens'],
            'eval_reward_accuracy': total['hits'] / total['tokens'],
            'eval_reward_margin': total['margin'] / total['tokens']}
  loss = total['nats'] / total['tokens']
  bpb = total['nats'] / math.log(2) / total['bytes'] if total['bytes'] else float('nan')
  return {'eval_loss': loss, 'eval_ppl': math.exp(min(loss, 700)), 'eval_bpb': bpb,
          'eval_accuracy': total['hits'] / total['tokens']}


def token_bytes_table(tokenizer, vocab_size):
  table = np.zeros(vocab_size, np.float32)
  own = tokenizer.token_bytes()
  table[:len(own)] = own
  return table


def xla_flops(compiled) -> float:
  """FLOPs of one call of a compiled program, from XLA's cost analysis (NaN where the backend
  gives none): what the loop and the accelerator check print beside the analytic count."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001  (not every backend implements it)
    return float('nan')
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return (cost or {}).get('flops', float('nan'))


def peak_memory_bytes() -> int:
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

