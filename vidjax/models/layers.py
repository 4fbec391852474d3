"""Shared layers with PyTorch-exact numerics.

PyTorch pads convolutions and pools symmetrically; flax's `'SAME'` pads asymmetrically
for stride 2, so every helper here takes an explicit symmetric `padding`. BatchNorm is
our own small module (not `flax.linen.BatchNorm`) so that training can freeze statistics
and affine parameters per layer (TSN's partial BN, frozen stages) and so that running
statistics follow PyTorch (unbiased variance in the running update).

Variable names follow flax: convolutions and dense layers hold `kernel`/`bias` params;
BatchNorm holds params `scale`/`bias` and batch_stats `mean`/`var`. The converters rely
on these names (see converters/common.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.ops import patch_conv
from vidjax.ops.max_pool import max_pool

Dtype = Any
IntOrPair = Union[int, Sequence[int]]


def _pair(v: IntOrPair) -> tuple[int, int]:
  if isinstance(v, int):
    return (v, v)
  v = tuple(int(i) for i in v)
  if len(v) != 2:
    raise ValueError(f"expected an int or a pair, got {v}")
  return v


def resolve_dtype(dtype: Union[str, Dtype, None]) -> Dtype:
  """'float32' / 'bfloat16' / 'float16' / a numpy dtype -> a jnp dtype (None -> float32)."""
  if dtype is None:
    return jnp.float32
  return jnp.dtype(dtype)


def conv2d(features: int,
           kernel_size: IntOrPair,
           stride: IntOrPair = 1,
           padding: IntOrPair = 0,
           dilation: IntOrPair = 1,
           groups: int = 1,
           use_bias: bool = False,
           dtype: Dtype = jnp.float32,
           kernel_init: Any = None,
           name: Optional[str] = None) -> nn.Module:
  """A `torch.nn.Conv2d` equivalent on NHWC inputs: symmetric explicit padding.

  Kernel layout is HWIO `[kh, kw, in / groups, out]` (torch OIHW transposed).
  The default init is He-normal fan-out, as torchvision ResNets use for convolutions.
  A 1x1 convolution without padding is computed as a matrix product (`PointwiseConv`,
  the same variables and initial values).
  """
  ph, pw = _pair(padding)
  kernel_init = kernel_init or nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  if (_pair(kernel_size) == (1, 1) and (ph, pw) == (0, 0) and _pair(dilation) == (1, 1)
      and groups == 1):
    return PointwiseConv(features, _pair(stride), use_bias, dtype, kernel_init, name=name)
  return Conv2d(features, _pair(kernel_size), _pair(stride), (ph, pw), _pair(dilation),
                groups, use_bias, dtype, kernel_init, name=name)


class Conv2d(nn.Module):
  """`torch.nn.Conv2d` on NHWC: symmetric explicit padding, HWIO kernel `[kh, kw,
  in / groups, out]` named `kernel` (and `bias`), as flax's nn.Conv names them.

  The arithmetic is `vidjax.ops.patch_conv.conv`'s, which computes tiny output maps and
  few-channel kernel gradients as products of gathered patches on CPU.
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  dilation: tuple[int, int] = (1, 1)
  groups: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [N, H, W, C_in] -> [N, H', W', features]."""
    c_in = x.shape[-1]
    if c_in % self.groups or self.features % self.groups:
      raise ValueError(f"Conv2d {self.name}: channels {c_in} -> {self.features} are not "
                       f"divisible by groups={self.groups}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel_size, self.strides, self.padding,
                                              self.dilation)
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, c_in // self.groups, self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    y = patch_conv.conv(x, kernel, (sh, sw), (ph, pw), (dh, dw), self.groups)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class PointwiseConv(nn.Module):
  """A 1x1 convolution (stride s, no padding) on [..., H, W, C] as a matrix product.

  XLA:CPU runs a dot faster than the equivalent 1x1 convolution, forward and backward;
  variables are nn.Conv's: `kernel`
  [1, 1, C_in, features] float32 and optional `bias`, initialised identically.
  """
  features: int
  strides: tuple[int, int] = (1, 1)
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features),
                        jnp.float32)
    sh, sw = self.strides
    if (sh, sw) != (1, 1):  # PyTorch's strided 1x1: rows/columns 0, s, 2s, ...
      x = x[..., ::sh, ::sw, :]
    y = jax.lax.dot_general(x.astype(self.dtype), kernel[0, 0].astype(self.dtype),
                            (((x.ndim - 1,), (0,)), ((), ())))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class BatchNorm(nn.Module):
  """BatchNorm over the last axis with PyTorch semantics.

  Attributes:
    momentum: flax convention, `running = momentum * running + (1 - momentum) * batch`;
      PyTorch's momentum 0.1 is 0.9 here.
    epsilon: added to the variance (PyTorch default 1e-5).
    freeze_affine: stop gradients into `scale`/`bias` (TSN partial BN, frozen stages).
    dtype: output dtype; statistics are computed in float32 (float64 for float64 inputs).
    freeze_scale: stop gradients into `scale` only (MXNet's fix_gamma; `bias` trains).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  freeze_affine: bool = False
  dtype: Dtype = jnp.float32
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros
  freeze_scale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [..., C]. `train`: use batch statistics and update the running ones."""
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", self.bias_init, (features,), jnp.float32)
    stat_dtype = jnp.promote_types(x.dtype, jnp.float32)  # float32, or float64 under x64
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    if self.freeze_affine or self.freeze_scale:
      scale = jax.lax.stop_gradient(scale)
    if self.freeze_affine:
      bias = jax.lax.stop_gradient(bias)

    xf = x.astype(stat_dtype)
    if train:
      axes = tuple(range(xf.ndim - 1))
      mean = jnp.mean(xf, axis=axes)
      # Two-pass variance: E[x^2] - E[x]^2 loses precision for large activations.
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
      if not self.is_initializing():
        n = xf.size // features
        # PyTorch updates running_var with the unbiased estimate.
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return ((xf - mean) * mul + bias).astype(self.dtype)


class NormBlock(nn.Module):
  """Base of modules whose BatchNorms follow their trunk's settings (flax momentum 0.9 is
  PyTorch's 0.1; `freeze_bn_affine` is partial BN). These fields are keyword-only, so a
  subclass lists its own fields first, in its positional order."""
  bn_eps: float = dataclasses.field(default=1e-5, kw_only=True)
  bn_momentum: float = dataclasses.field(default=0.9, kw_only=True)
  freeze_bn_affine: bool = dataclasses.field(default=False, kw_only=True)
  dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)

  def norm_fields(self) -> dict[str, Any]:
    """These fields as keywords, to hand the same settings to a child NormBlock."""
    return dict(bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
                freeze_bn_affine=self.freeze_bn_affine, dtype=self.dtype)

  def norm(self, name: Optional[str] = None, **fields: Any) -> "BatchNorm":
    return BatchNorm(self.bn_momentum, self.bn_eps, self.freeze_bn_affine, self.dtype,
                     name=name, **fields)


class ConvBN(NormBlock):
  """conv -> BatchNorm -> optional ReLU, with submodules named `conv` and `bn`.

  This mirrors MMAction2's `ConvModule` layout (`*.conv.weight`, `*.bn.*`). torchvision
  style blocks name their convolutions and norms individually and use `conv2d` and
  `BatchNorm` directly instead.
  """
  features: int
  kernel_size: IntOrPair
  stride: IntOrPair = 1
  padding: IntOrPair = 0
  dilation: IntOrPair = 1
  groups: int = 1
  activation: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, H, W, C_in] -> [N, H', W', features]."""
    x = conv2d(self.features, self.kernel_size, self.stride, self.padding, self.dilation,
               self.groups, dtype=self.dtype, name="conv")(x)
    x = self.norm("bn")(x, train)
    return nn.relu(x) if self.activation else x


def max_pool2d(x: jax.Array, kernel_size: IntOrPair, stride: IntOrPair,
               padding: IntOrPair = 0) -> jax.Array:
  """`torch.nn.MaxPool2d` (floor mode) on [N, H, W, C]; padding counts as -inf.

  The gradient goes to the first maximum of each window in row-major order, as PyTorch's
  indices give it (`vidjax.ops.max_pool.max_pool`).
  """
  kh, kw = _pair(kernel_size)
  sh, sw = _pair(stride)
  ph, pw = _pair(padding)
  n, h, w, c = x.shape
  ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
  if min(ho, wo) < 1:
    raise ValueError(f"max_pool2d: input {x.shape} is smaller than the {kh}x{kw} window.")
  return max_pool(x, (kh, kw), (sh, sw), (ph, pw))


def avg_pool2d(x: jax.Array, kernel_size: IntOrPair, stride: IntOrPair,
               padding: IntOrPair = 0, count_include_pad: bool = True) -> jax.Array:
  """`torch.nn.AvgPool2d` (floor mode) on [N, H, W, C], zero padding."""
  kh, kw = _pair(kernel_size)
  sh, sw = _pair(stride)
  ph, pw = _pair(padding)
  window, strides = (1, kh, kw, 1), (1, sh, sw, 1)
  pads = ((0, 0), (ph, ph), (pw, pw), (0, 0))
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
  if count_include_pad:
    return summed / (kh * kw)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  counts = jax.lax.reduce_window(ones, jnp.array(0, x.dtype), jax.lax.add, window, strides, pads)
  return summed / counts


def global_avg_pool(x: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [N, C], averaged in (at least) float32 (adaptive avg pool to 1x1)."""
  return jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2))


def normalize_pixels(x: jax.Array,
                     mean: Optional[Sequence[float]],
                     std: Optional[Sequence[float]],
                     dtype: Dtype = jnp.float32) -> jax.Array:
  """Casts pixels to float and normalises them per channel.

  Args:
    x: uint8 or float pixels in 0..255, channels last: [..., 3].
    mean, std: per-channel values in 0..255 units (ImageNet: 123.675, 116.28, 103.53 and
      58.395, 57.12, 57.375). `None` for both keeps raw 0..255 pixels.
    dtype: output dtype; the arithmetic is done in float32 (or wider).
  Returns:
    [..., 3] in `dtype`.
  """
  if (mean is None) != (std is None):
    raise ValueError(f"pixel mean and std must both be set or both be None, got "
                     f"mean={mean}, std={std}")
  compute = jnp.promote_types(dtype, jnp.float32)
  xf = x.astype(compute)
  if mean is not None:
    m = jnp.asarray(mean, compute)
    s = jnp.asarray(std, compute)
    xf = (xf - m) / s
  return xf.astype(dtype)
