"""Mixture of experts: the routed MLP of the layers `model.moe_every` picks (transformer.py).

Shapes: N tokens, D d_model, E experts, K experts per token (top-k), F an expert's width,
A = N·K assignments (a = n·K + j: token n's j-th choice), R rows per block, B blocks.

Router (`moe_router`), from float32 logits u = x·W_r (N, E):
- mixtral: softmax over the chosen k logits, i.e. softmax over all experts renormalised over the
  top k (Jiang et al. 2024, "Mixtral of Experts", Sec. 2.1);
- switch: softmax over all experts, the chosen k gates as they are (Fedus et al. 2021, "Switch
  Transformers", at k = 1; OLMoE's and Qwen-MoE's routers with norm_topk_prob off);
- deepseek: sigmoid affinities s = σ(u); the k largest s + b chosen, their s normalised to sum
  to 1 (DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", Eq. 13-16). b is the auxiliary-loss-free
  balancing bias (Wang et al. 2024, "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-
  Experts"): after every update b_e += moe_bias_rate · sign(mean load − load_e)
  (`update_bias`). b decides which experts are chosen, never their gates; it has no gradient.

Experts are copies of the preset's MLP (gated or not, with its biases) of width `moe_d_ff`;
`moe_shared_experts` adds a dense MLP of that many experts' width that every token goes through
(Dai et al. 2024, "DeepSeekMoE"). y = Σ_j g_j · expert_{e_j}(x) (+ shared(x)).

How tokens reach their experts:
- dropless (`moe_capacity_factor` 0), every assignment computed. `ragged`: assignments sorted by
  expert and multiplied by `jax.lax.ragged_dot`, the grouped matmul (GPU and TPU kernels;
  MaxText's Megablox); `blocked`: each expert's assignments padded to whole blocks of R rows and
  the blocks multiplied by their expert's weights in one batched matmul (MegaBlocks' block-sparse
  form, Gale et al. 2023, with dense blocks). XLA:CPU runs ragged_dot as every group against every
  row, E times the FLOPs; `auto` is blocked on CPU, ragged elsewhere.
- capacity (`moe_capacity_factor` c > 0): each expert has ceil(c·A/E) slots, filled by every
  token's first choice before any second choice, in token order within a choice (GShard,
  Lepikhin et al. 2021); an assignment past its expert's slots is dropped (its share of the
  output is zero; the token goes on through the residual). The capacity applies to every forward
  pass, evaluation and decoding included, counted over the tokens of that pass: a decoding step
  of a few rows drops otherwise than a training batch. Dropless routing is per token.

Auxiliary losses of a layer, averaged over the MoE layers and added to the objective with
`moe_lb_loss` and `moe_z_loss` (lmjax/train/steps.py), sown into the 'moe' collection with the
load f (E,) and the fraction of assignments dropped:
- load balancing (Fedus et al. 2021, Eq. 4-6): E · Σ_e f_e · P_e, f_e the fraction of the A
  assignments routed to e, P_e the router's mean probability for e (deepseek: the affinities
  normalised over all experts). 1 when f and P are uniform; E when every token goes to one
  expert at k = 1 (and Mixtral's Hugging Face form is k times this);
- router z-loss (Zoph et al. 2022, "ST-MoE", Eq. 5): the mean over tokens of logsumexp(u)².
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name

from lmjax.config import GATED
from lmjax.model.layers import ACTIVATIONS, Mlp, Sharded, param

IMPLS = ('ragged', 'blocked')


class Routing(NamedTuple):
  experts_NxK: jax.Array  # int32: each token's chosen experts
  gates_NxK: jax.Array    # float32: their weights in the output
  probs_NxE: jax.Array    # float32: the router's distribution over experts (the LB loss's P)


def route(logits_NxE, k: int, router: str, bias_E=None) -> Routing:
  """The top-k routing of float32 router logits (module doc)."""
  if router == 'deepseek':
    scores_NxE = jax.nn.sigmoid(logits_NxE)
    biased_NxE = scores_NxE if bias_E is None else scores_NxE + jax.lax.stop_gradient(bias_E)
    _, experts_NxK = jax.lax.top_k(biased_NxE, k)
    chosen_NxK = jnp.take_along_axis(scores_NxE, experts_NxK, axis=-1)
    return Routing(experts_NxK, chosen_NxK / chosen_NxK.sum(-1, keepdims=True),
                   scores_NxE / scores_NxE.sum(-1, keepdims=True))
  probs_NxE = jax.nn.softmax(logits_NxE, axis=-1)
  gates_NxK, experts_NxK = jax.lax.top_k(probs_NxE, k)
  if router == 'mixtral':
    gates_NxK = gates_NxK / gates_NxK.sum(-1, keepdims=True)
  return Routing(experts_NxK, gates_NxK, probs_NxE)


def expert_load(experts_NxK, n_experts: int):
  """(E,) the fraction of assignments each expert received."""
  return jnp.bincount(experts_NxK.reshape(-1), length=n_experts) / experts_NxK.size


def load_balancing_loss(routing: Routing):
  """E · Σ_e f_e · P_e (Fedus et al. 2021): 1 when balanced, E when one expert takes all (k=1)."""
  e = routing.probs_NxE.shape[-1]
  return e * jnp.sum(expert_load(routing.experts_NxK, e) * routing.probs_NxE.mean(0))


def router_z_loss(logits_NxE):
  """The mean of logsumexp(u)² over tokens (Zoph et al. 2022)."""
  return jnp.mean(jax.nn.logsumexp(logits_NxE, axis=-1) ** 2)


class Experts(NamedTuple):
  """The experts' weights, stacked on a leading E axis (gate and biases None when absent)."""
  wi_ExDxF: jax.Array
  wi_gate_ExDxF: jax.Array | None
  wo_ExFxD: jax.Array
  wi_bias_ExF: jax.Array | None = None
  wi_gate_bias_ExF: jax.Array | None = None
  wo_bias_ExD: jax.Array | None = None


def _ffn(x, ex: Experts, act, mm, bias):
  """The experts' MLP on rows `x` laid out for `mm(x, W_ExIxO)` (the grouped matmul) and
  `bias(b_ExO)` (the bias of each row's expert)."""
  up = lambda w, b: mm(x, w) if b is None else mm(x, w) + bias(b)
  h = act(up(ex.wi_ExDxF, ex.wi_bias_ExF))
  if ex.wi_gate_ExDxF is not None:
    h = h * up(ex.wi_gate_ExDxF, ex.wi_gate_bias_ExF)
  y = mm(h, ex.wo_ExFxD)
  return y if ex.wo_bias_ExD is None else y + bias(ex.wo_bias_ExD)


def _combine(y_AxD, gates_NxK):
  n, k = gates_NxK.shape
  return jnp.einsum('nkd,nk->nd', y_AxD.reshape(n, k, -1), gates_NxK.astype(y_AxD.dtype))


def ragged(x_NxD, routing: Routing, ex: Experts, act):
  """Dropless: assignments sorted by expert, `jax.lax.ragged_dot` per projection."""
  n, k = routing.experts_NxK.shape
  flat_A = routing.experts_NxK.reshape(-1)
  order_A = jnp.argsort(flat_A, stable=True)
  sizes_E = jnp.bincount(flat_A, length=ex.wi_ExDxF.shape[0]).astype(jnp.int32)
  sorted_A = flat_A[order_A]
  y_sorted_AxD = _ffn(x_NxD[order_A // k], ex, act,
                      lambda x, w: jax.lax.ragged_dot(x, w.astype(x.dtype), sizes_E),
                      lambda b: b[sorted_A].astype(x_NxD.dtype))
  y_AxD = jnp.zeros_like(y_sorted_AxD).at[order_A].set(y_sorted_AxD)
  return _combine(y_AxD, routing.gates_NxK)


class Slots(NamedTuple):
  """Where each assignment sits in a buffer of B blocks of R rows, one expert per block."""
  slot_A: jax.Array           # row of each assignment; B·R or more: dropped
  block_experts_B: jax.Array | None  # each block's expert (None: block b is expert b)
  blocks: int
  rows: int
  dropped: jax.Array          # the fraction of assignments dropped


def block_rows(assignments: int, n_experts: int) -> int:
  """R for the blocked form: a power of two near a quarter of an expert's even share, in
  [8, 256], so that padding costs about an eighth of the rows at balance."""
  share = max(assignments // (4 * n_experts), 1)
  return int(min(256, max(8, 2 ** int(math.log2(share)))))


def blocked_slots(experts_NxK, n_experts: int) -> Slots:
  """Dropless: expert e's assignments in order, from the first row of its own blocks."""
  flat_A = experts_NxK.reshape(-1)
  a, rows = flat_A.shape[0], block_rows(flat_A.shape[0], n_experts)
  blocks = a // rows + n_experts  # ≥ Σ_e ceil(size_e / R)
  sizes_E = jnp.bincount(flat_A, length=n_experts)
  padded_E = (sizes_E + rows - 1) // rows * rows
  order_A = jnp.argsort(flat_A, stable=True)
  sorted_A = flat_A[order_A]
  rank = jnp.arange(a) - (jnp.cumsum(sizes_E) - sizes_E)[sorted_A]
  slot_A = jnp.zeros(a, jnp.int32).at[order_A].set(
      ((jnp.cumsum(padded_E) - padded_E)[sorted_A] + rank).astype(jnp.int32))
  block_experts_B = jnp.searchsorted(jnp.cumsum(padded_E), jnp.arange(blocks) * rows,
                                     side='right')
  return Slots(slot_A, jnp.minimum(block_experts_B, n_experts - 1), blocks, rows,
               jnp.zeros((), jnp.float32))


def capacity(n_assignments: int, n_experts: int, factor: float) -> int:
  """Slots per expert: ceil(factor · A / E)."""
  return max(1, math.ceil(factor * n_assignments / n_experts))


def capacity_slots(experts_NxK, n_experts: int, factor: float) -> Slots:
  """Capacity form: expert e's slots are block e; first choices fill them before second ones."""
  n, k = experts_NxK.shape
  c = capacity(n * k, n_experts, factor)
  by_choice = experts_NxK.T.reshape(-1)  # j·N + n: every first choice before any second
  onehot = jax.nn.one_hot(by_choice, n_experts, dtype=jnp.int32)
  position = (jnp.cumsum(onehot, axis=0) * onehot).sum(-1) - 1
  keep = position < c
  slot = jnp.where(keep, by_choice * c + position, n_experts * c).astype(jnp.int32)
  return Slots(slot.reshape(k, n).T.reshape(-1), None, n_experts, c,
               1.0 - keep.mean(dtype=jnp.float32))


def in_blocks(x_NxD, routing: Routing, ex: Experts, act, slots: Slots):
  """The experts' outputs over a block buffer (blocked and capacity forms)."""
  n, k = routing.experts_NxK.shape
  d = x_NxD.shape[-1]
  rows = slots.blocks * slots.rows
  x_PxD = jnp.zeros((rows, d), x_NxD.dtype).at[slots.slot_A].set(
      jnp.repeat(x_NxD, k, axis=0), mode='drop')
  experts = slots.block_experts_B
  pick = (lambda w: w) if experts is None else (lambda w: w[experts])
  y_BxRxD = _ffn(
      x_PxD.reshape(slots.blocks, slots.rows, d), ex, act,
      lambda x, w: jnp.einsum('bri,bio->bro', x, pick(w).astype(x.dtype)),
      lambda b: pick(b)[:, None, :].astype(x_NxD.dtype))
  y_AxD = y_BxRxD.reshape(rows, d).at[slots.slot_A].get(mode='fill', fill_value=0)
  return _combine(y_AxD, routing.gates_NxK)


def reference(x_NxD, routing: Routing, ex: Experts, act):
  """Every expert on every token, weighted by its gate where chosen (zero elsewhere): the
  per-expert loop the grouped forms are tested against."""
  y_NxD = jnp.zeros_like(x_NxD)
  for e in range(ex.wi_ExDxF.shape[0]):
    one = Experts(*(None if w is None else w[e:e + 1] for w in ex))
    out_NxD = _ffn(x_NxD, one, act, lambda x, w: x @ w[0].astype(x.dtype),
                   lambda b: b[0].astype(x_NxD.dtype))
    weight_N = jnp.where(routing.experts_NxK == e, routing.gates_NxK, 0.0).sum(-1)
    y_NxD = y_NxD + weight_N[:, None].astype(x_NxD.dtype) * out_NxD
  return y_NxD


def resolve_impl(impl: str, platform: str) -> str:
  if impl == 'auto':
    return 'blocked' if platform == 'cpu' else 'ragged'
  return impl


class MoeMlp(Sharded):
  """The routed MLP: router, E experts (parameters `router`, `router_bias` for deepseek, `wi`,
  `wi_gate`, `wo` with a leading `expert` axis), optional shared experts (`shared`)."""

  @nn.compact
  def __call__(self, x_NxD, in_scale=None):
    cfg = self.cfg
    if in_scale is not None:  # a pre-norm's scale (layers.Mlp folds it into its weights)
      x_NxD = x_NxD * in_scale.astype(x_NxD.dtype)
    d, f, e, pdt = cfg.d_model, cfg.moe_d_ff, cfg.moe_experts, jnp.dtype(cfg.param_dtype)
    router_DxE = param(self, 'router', (d, e), ('embed', None), cfg.init_std, pdt)
    logits_NxE = jnp.dot(x_NxD.astype(jnp.float32), router_DxE.astype(jnp.float32))
    bias_E = (param(self, 'router_bias', (e,), (None,), 0, jnp.float32)
              if cfg.moe_router == 'deepseek' else None)
    routing = route(logits_NxE, cfg.moe_top_k, cfg.moe_router, bias_E)
    std, gated = cfg.init_std * cfg.mup.hidden_std, cfg.activation in GATED
    expert = lambda name, shape, axes, s: param(self, name, (e, *shape), ('expert', *axes), s,
                                                 pdt)
    bias = lambda name, size, axis: expert(name, (size,), (axis,), 0) if cfg.use_bias else None
    ex = Experts(expert('wi', (d, f), ('embed', 'mlp'), std),
                 expert('wi_gate', (d, f), ('embed', 'mlp'), std) if gated else None,
                 expert('wo', (f, d), ('mlp', 'embed'), cfg.residual_init_std),
                 bias('wi_bias', f, 'mlp'), bias('wi_gate_bias', f, 'mlp') if gated else None,
                 bias('wo_bias', d, 'embed'))
    act = ACTIVATIONS[cfg.activation]
    if cfg.moe_capacity_factor:
      slots = capacity_slots(routing.experts_NxK, e, cfg.moe_capacity_factor)
      y_NxD = in_blocks(x_NxD, routing, ex, act, slots)
    elif resolve_impl(cfg.moe_impl, cfg.platform or jax.default_backend()) == 'blocked':
      slots = blocked_slots(routing.experts_NxK, e)
      y_NxD = in_blocks(x_NxD, routing, ex, act, slots)
    else:
      slots = None
      y_NxD = ragged(x_NxD, routing, ex, act)
    if cfg.moe_shared_experts:
      shared = dataclasses.replace(cfg, d_ff=cfg.moe_shared_experts * f)
      y_NxD = y_NxD + Mlp(shared, self.mesh, self.rules, name='shared')(x_NxD)
    self.sow('moe', 'lb_loss', load_balancing_loss(routing))
    self.sow('moe', 'z_loss', router_z_loss(logits_NxE))
    self.sow('moe', 'load', expert_load(routing.experts_NxK, e))
    self.sow('moe', 'dropped', slots.dropped if slots else jnp.zeros((), jnp.float32))
    return checkpoint_name(y_NxD, 'mlp_out')


# What the train step does with the sown 'moe' collection (summed over micro-batches).

def _gathered(sown, name):
  """The named quantity of every MoE layer, (layers, ...) (scanned layers come stacked)."""
  flat = traverse_util.flatten_dict(sown)
  values = [v for key, vs in flat.items() if key[-1] == name for v in vs]
  tail = values[0].shape[-1:] if name == 'load' else ()
  return jnp.concatenate([v.reshape(-1, *tail) for v in values])


def aux_losses(sown):
  """(load-balancing loss, z-loss), each averaged over the MoE layers."""
  return _gathered(sown, 'lb_loss').mean(), _gathered(sown, 'z_loss').mean()


def metrics(sown, micro_batches: int = 1) -> dict:
  """The step's MoE metrics: auxiliary losses, the load of the least and most used expert over
  layers (fractions of assignments; 1/E is even) and the dropped fraction; `moe_load` is the
  (layers, E) table."""
  load = _gathered(sown, 'load') / micro_batches
  lb, z = aux_losses(sown)
  return {'moe_lb_loss': lb / micro_batches, 'moe_z_loss': z / micro_batches,
          'moe_load_min': load.min(), 'moe_load_max': load.max(),
          'moe_dropped': _gathered(sown, 'dropped').mean() / micro_batches, 'moe_load': load}


def update_bias(params, sown, rate: float):
  """deepseek routers' balancing bias moved by rate · sign(mean load − load) (module doc)."""
  flat = traverse_util.flatten_dict(params)
  for key, (load,) in traverse_util.flatten_dict(sown).items():
    if key[-1] != 'load':
      continue
    target = (*key[:-1], 'router_bias')
    if target in flat:
      error = load.mean(-1, keepdims=True) - load
      flat[target] = flat[target] + rate * jnp.sign(error).astype(flat[target].dtype)
  return traverse_util.unflatten_dict(flat)



def describe(cfg, counts) -> str:
  """The banner's line of a mixture of experts (`counts`: flops.config_counts)."""
  how = (f'capacity factor {cfg.moe_capacity_factor:g} (assignments past an expert\'s slots '
         'dropped)' if cfg.moe_capacity_factor else
         f'dropless ({resolve_impl(cfg.moe_impl, cfg.platform or jax.default_backend())})')
  shared = f' + {cfg.moe_shared_experts} shared' if cfg.moe_shared_experts else ''
  return (f'MoE: {cfg.moe_experts} experts{shared} of width {cfg.moe_d_ff}, top-{cfg.moe_top_k} '
          f'({cfg.moe_router} router) in {cfg.moe_layers} of {cfg.n_layers} layers; '
          f'N_active = {counts.N_active:,} of N = {counts.N:,} (FLOPs and MFU count the active '
          f'ones); load-balancing loss × {cfg.moe_lb_loss:g}, router z-loss × {cfg.moe_z_loss:g}'
          + (f', balancing bias rate {cfg.moe_bias_rate:g}' if cfg.moe_router == 'deepseek'
             else '') + f'; {how}')
