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

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
           name: Optional[str] = None) -> nn.Conv:
  """A `torch.nn.Conv2d` equivalent on NHWC inputs: symmetric explicit padding.

  Kernel layout is HWIO `[kh, kw, in / groups, out]` (torch OIHW transposed).
  The default init is He-normal fan-out, as torchvision ResNets use for convolutions.
  """
  ph, pw = _pair(padding)
  return nn.Conv(
      features=features,
      kernel_size=_pair(kernel_size),
      strides=_pair(stride),
      padding=((ph, ph), (pw, pw)),
      kernel_dilation=_pair(dilation),
      feature_group_count=groups,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init or nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
      name=name)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis with PyTorch semantics.

  Attributes:
    momentum: flax convention, `running = momentum * running + (1 - momentum) * batch`;
      PyTorch's momentum 0.1 is 0.9 here.
    epsilon: added to the variance (PyTorch default 1e-5).
    freeze_affine: stop gradients into `scale`/`bias` (TSN partial BN, frozen stages).
    dtype: output dtype; statistics are computed in float32 (float64 for float64 inputs).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  freeze_affine: bool = False
  dtype: Dtype = jnp.float32
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [..., C]. `train`: use batch statistics and update the running ones."""
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", self.bias_init, (features,), jnp.float32)
    stat_dtype = jnp.promote_types(x.dtype, jnp.float32)  # float32, or float64 under x64
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    if self.freeze_affine:
      scale, bias = jax.lax.stop_gradient(scale), jax.lax.stop_gradient(bias)

    xf = x.astype(stat_dtype)
    if train:
      axes = tuple(range(xf.ndim - 1))
      mean = jnp.mean(xf, axis=axes)
      # Two-pass variance: E[x^2] - E[x]^2 loses precision for large activations.
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
      if not self.is_initializing():
        n = int(np.prod([xf.shape[a] for a in axes]))
        # PyTorch updates running_var with the unbiased estimate.
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return ((xf - mean) * mul + bias).astype(self.dtype)


class ConvBN(nn.Module):
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
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  freeze_bn_affine: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, H, W, C_in] -> [N, H', W', features]."""
    x = conv2d(self.features, self.kernel_size, self.stride, self.padding, self.dilation,
               self.groups, dtype=self.dtype, name="conv")(x)
    x = BatchNorm(self.bn_momentum, self.bn_eps, self.freeze_bn_affine, self.dtype,
                  name="bn")(x, train)
    return nn.relu(x) if self.activation else x


def max_pool2d(x: jax.Array, kernel_size: IntOrPair, stride: IntOrPair,
               padding: IntOrPair = 0) -> jax.Array:
  """`torch.nn.MaxPool2d` (floor mode) on [N, H, W, C]; padding counts as -inf."""
  kh, kw = _pair(kernel_size)
  sh, sw = _pair(stride)
  ph, pw = _pair(padding)
  # A Python scalar init lets JAX see the max monoid, which has a gradient rule.
  return jax.lax.reduce_window(
      x, -jnp.inf, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1),
      ((0, 0), (ph, ph), (pw, pw), (0, 0)))


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
