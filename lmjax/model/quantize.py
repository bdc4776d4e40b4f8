"""Quantised weights and int8 training through qwix, Google's JAX quantisation library.

Post-training quantisation (`quantize_params`, `Dequantized`): the projection weights of every
block (attention query/key/value/out, the MLP's or the experts' wi, wi_gate, wo) become qwix
QArrays, symmetric absmax:
  int8  per output channel: q = round(w / s), s = max|w| / 127.5 over the channel's inputs
        (qwix's bound, qmax + ½), so |w − s·q| ≤ s/2 = max|w| / 255 — within absmax/254;
  int4  block-wise (Dettmers et al. 2023, "QLoRA", Sec. 2): one scale per block of `block`
        consecutive input rows of each output channel, s = max|block| / 7.5;
  nf4   the same blocks, each value the nearest of QLoRA's 16 NormalFloat levels × the block's
        absmax (Dettmers et al. 2023, Sec. 3; the levels are qwix's).
Embeddings, the output layer, norms, biases, routers and adapters stay float (as bitsandbytes
leaves `lm_head` by default). A quantised model runs with the weights dequantised inside its
compiled program (weight-only quantisation: what it changes is the weights, not the arithmetic);
`weight_bytes` counts what they occupy, 4-bit values at half a byte as they are stored packed.

Quantised training (`qat_matmul`, train.quantize=int8): the block projections' matmuls run as
qwix's int8 dot_general in the forward and both backward matmuls (activations per row, weights
per output channel, incoming gradients per row), MaxText's int8 recipe. It is called directly,
not through qwix's model interception: that recognises a weight by tracing it back to a module
parameter, and lmjax multiplies pre-norm scales into the weights before the matmul
(transformer.Norm), so the explicit call says exactly which matmuls are int8.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from lmjax.core.errors import LmjaxError

SCHEMES = ('int8', 'int4', 'nf4')          # launch.eval / launch.sample --quantize
TRAINING = ('none', 'int8')                # train.quantize
BITS = {'int8': 8, 'int4': 4, 'nf4': 4}
BLOCK = 64                                 # QLoRA's block size for int4 and nf4

# Projection weights by leaf name: (input axes, output axes) after any leading stacked axes
# (scanned layers, experts), which keep their own scales.
PROJECTIONS = {'query': (1, 2), 'key': (1, 2), 'value': (1, 2), 'out': (2, 1),
               'wi': (1, 1), 'wi_gate': (1, 1), 'wo': (1, 1)}


class QuantizeError(LmjaxError, ValueError):
  """A quantisation that cannot be done as asked; one line naming the option."""


def check(scheme, block=BLOCK, flag='--quantize'):
  """QuantizeError unless `scheme` is one of SCHEMES and `block` a positive block size."""
  if scheme not in SCHEMES:
    raise QuantizeError(f'{flag}={scheme}: one of {", ".join(SCHEMES)}')
  if not isinstance(block, int) or block < 1:
    raise QuantizeError(f'{flag}_block={block}: a positive number of input rows per block')


def layout(name: str, ndim: int):
  """(stacked, inputs): the number of leading stacked axes and of input axes of the
  projection weight `name` of rank `ndim`; None for a leaf that stays float."""
  if name not in PROJECTIONS:
    return None
  n_in, n_out = PROJECTIONS[name]
  stacked = ndim - n_in - n_out
  return (stacked, n_in) if stacked >= 0 else None


def _axes(shape, stacked, n_in, scheme, block):
  """qwix's (channelwise_axes, tiled_axes) for a projection weight: every stacked and output
  axis its own scale; int8 one scale over all inputs, int4/nf4 blocks of at most `block`
  consecutive (row-major) input rows, the innermost input axis tiled first."""
  first_out = stacked + n_in
  channelwise = list(range(stacked)) + list(range(first_out, len(shape)))
  tiled = {}
  if scheme != 'int8':
    left = block
    for axis in reversed(range(stacked, first_out)):
      size = shape[axis]
      if left <= 1:
        channelwise.append(axis)             # outer inputs beyond one block: their own scales
      elif size <= left:
        left //= size                        # the whole axis inside one block
      else:
        tile = max(t for t in range(1, left + 1) if size % t == 0)
        tiled[axis], left = tile, 1
  return tuple(sorted(channelwise)), tiled


def quantize_weight(w, name, scheme, block=BLOCK):
  """The qwix QArray of projection weight `w` (leaf name `name`), or `w` if it stays float."""
  import qwix
  where = layout(name, w.ndim)
  if where is None:
    return w
  channelwise, tiled = _axes(w.shape, *where, scheme, block)
  return qwix.quantize(w, scheme, channelwise_axes=channelwise, tiled_axes=tiled)


def is_quantized(x) -> bool:
  import qwix
  return isinstance(x, qwix.QArray)


def quantize_params(params, scheme, block=BLOCK):
  """`params` with every projection weight a QArray (module docstring)."""
  check(scheme, block)

  def leaf(path, w):
    name = getattr(path[-1], 'key', None)
    return quantize_weight(w, name, scheme, block) if name else w
  return jax.jit(lambda p: jax.tree_util.tree_map_with_path(leaf, p))(params)


def dequantize_params(params):
  """`params` with every QArray dequantised (float32, the weights' own shapes)."""
  import qwix
  return jax.tree.map(lambda x: qwix.dequantize(x) if is_quantized(x) else x, params,
                      is_leaf=is_quantized)


def weight_bytes(params) -> dict[str, int]:
  """Bytes of `params`: 'quantized' (values at their bits, plus scales), 'float' (the leaves
  left float) and 'total'."""
  q = f = 0
  for x in jax.tree.leaves(params, is_leaf=is_quantized):
    if is_quantized(x):
      q += math.ceil(x.qvalue.size * jnp.iinfo(x.qvalue.dtype).bits / 8) + x.scale.size * x.scale.dtype.itemsize
    else:
      f += x.size * x.dtype.itemsize
  return {'quantized': q, 'float': f, 'total': q + f}


class Dequantized:
  """A model whose `apply` takes quantised params and dequantises them inside the traced
  program; everything else is the wrapped model's."""

  def __init__(self, model: Any):
    self.model = model

  def __getattr__(self, name):
    return getattr(self.model, name)

  def apply(self, variables, *args, **kwargs):
    variables = {**variables, 'params': dequantize_params(variables['params'])}
    return self.model.apply(variables, *args, **kwargs)


def qat_matmul(x_NxI, w_IxO, out_dtype=None):
  """x @ w through qwix's int8 quantised-training dot_general (module docstring)."""
  from qwix._src.core import dot_general_qt  # qwix 0.1.8; pinned in setup.py
  config = dot_general_qt.DotGeneralQtConfig(lhs_qtype='int8', rhs_qtype='int8',
                                             dlhs_grad_qtype='int8', drhs_grad_qtype='int8')
  y = dot_general_qt.dot_general_qt(x_NxI, w_IxO, (((1,), (0,)), ((), ())), config)
  return y if out_dtype is None else y.astype(out_dtype)
