"""BatchNorm folded into the preceding convolution, for inference.

In eval mode a BatchNorm is a per-channel affine map, so `bn(conv(x))` equals a
convolution with its kernel scaled per output channel plus a bias. `fold_batchnorm`
rewrites the variables that way; `apply_folded` runs the unchanged model with every
folded BatchNorm reduced to that bias (one add instead of subtract, multiply, add).

Pairs are found by the naming conventions of our layers: `conv` -> `bn` (ConvBN),
`convK` -> `bnK` and `downsample_conv` -> `downsample_bn` (torchvision blocks),
`NAMEK` -> `NAME_bnK` (TCP's reductions). Only 2D convolution kernels [kh, kw, in, out]
directly followed by their BatchNorm in the model are folded; other BatchNorms stay.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vidjax.models.layers import BatchNorm


def _conv_name(bn_name: str, siblings: dict) -> str | None:
  for candidate in (bn_name.replace("bn", "conv"), bn_name.replace("_bn", "")):
    if candidate != bn_name and candidate in siblings:
      return candidate
  return None


def fold_batchnorm(variables: dict, epsilon: float = 1e-5) -> tuple[dict, frozenset]:
  """Returns (folded variables, paths of the folded BatchNorm modules).

  Args:
    variables: {"params", "batch_stats"} of a model.
    epsilon: the BatchNorms' epsilon (every vidjax ResNet/TCP BN uses the backbone's
      `bn_eps`, 1e-5 by default).
  """
  params = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  stats = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["batch_stats"]))
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  folded = set()
  for path in sorted({k[:-1] for k in stats}):
    parent, name = path[:-1], path[-1]
    siblings = {k[len(parent)] for k in params if k[:len(parent)] == parent
                and len(k) > len(parent)}
    conv = _conv_name(name, siblings)
    if conv is None or params.get(parent + (conv, "kernel")) is None:
      continue
    kernel = params[parent + (conv, "kernel")]
    if kernel.ndim != 4:
      continue
    mean = np.asarray(stats[path + ("mean",)], np.float64)
    var = np.asarray(stats[path + ("var",)], np.float64)
    s = params[path + ("scale",)] / np.sqrt(var + epsilon)
    shift = params[path + ("bias",)] - mean * s
    if parent + (conv, "bias") in params:
      shift = shift + params[parent + (conv, "bias")] * s
      params[parent + (conv, "bias")] = np.zeros_like(shift)
    params[parent + (conv, "kernel")] = kernel * s
    params[path + ("bias",)] = shift
    folded.add(path)
  out = dict(variables)
  out["params"] = flax.traverse_util.unflatten_dict(
      {k: jnp.asarray(v, jnp.float32) for k, v in params.items()})
  return out, frozenset(folded)


def apply_folded(model: nn.Module, variables: dict, folded: frozenset,
                 *args, **kwargs) -> Any:
  """`model.apply(variables, *args, train=False)` with the folded BatchNorms as a bias."""

  def interceptor(next_fun, args_, kwargs_, context):
    module = context.module
    if (isinstance(module, BatchNorm) and context.method_name == "__call__"
        and tuple(module.path) in folded):
      train = kwargs_.get("train", args_[1] if len(args_) > 1 else False)
      if not train:
        x = args_[0]
        bias = module.get_variable("params", "bias")
        return (x.astype(jnp.promote_types(x.dtype, jnp.float32)) + bias).astype(module.dtype)
    return next_fun(*args_, **kwargs_)

  with nn.intercept_methods(interceptor):
    return model.apply(variables, *args, train=False, **kwargs)

