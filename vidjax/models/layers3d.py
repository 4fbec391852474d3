"""3D layers on channels-last clips `[N, T, H, W, C]` with PyTorch-exact numerics.

`Conv3d` is `torch.nn.Conv3d` (symmetric explicit padding, kernel `[kT, kH, kW, C_in /
groups, C_out]` named `kernel`, torch's `(O, I/g, kT, kH, kW)` transposed); `ConvBN3d` is
mmcv's `ConvModule` with a 3D conv (children `conv` and `bn`, optional ReLU). The pools are
`torch.nn.MaxPool3d` for the windows MMAction2's 3D backbones use.

How a convolution is computed is chosen by its kernel shape, so every 3D backbone gets
the same arithmetic: a kernel with kT = 1 folds time into the batch and runs the 2D
convolution of layers.py (PyTorch's strided 1x1 taps, the CPU patch kernels); a 1x1x1
kernel is a matrix product; any other kernel is `vidjax.ops.conv3d.conv` (on CPU a sum
over its time taps, elsewhere XLA's 3D convolution).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.layers import Dtype, NormBlock, max_pool2d
from vidjax.ops import conv3d as conv3d_ops
from vidjax.ops import patch_conv

IntOrTriple = Union[int, Sequence[int]]
# mmcv's kaiming_init (He-normal, fan-out), as MMAction2's 3D backbones initialise convs.
HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def triple(v: IntOrTriple, what: str = "value") -> tuple[int, int, int]:
  """An int or a 3-sequence -> (t, h, w) ints."""
  if isinstance(v, int):
    return (v, v, v)
  v = tuple(int(i) for i in v)
  if len(v) != 3:
    raise ValueError(f"{what} must be an int or 3 ints (t, h, w), got {v}")
  return v


def conv3d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
           padding: tuple[int, int, int], groups: int = 1) -> jax.Array:
  """x: [N, T, H, W, C_in], kernel: [kT, kH, kW, C_in / groups, C_out] -> [N, T', H', W',
  C_out], zero padding `padding` on both sides of each axis, floor output sizes."""
  kt, kh, kw = kernel.shape[:3]
  (st, sh, sw), (pt, ph, pw) = strides, padding
  if kt == 1 and pt == 0:
    # Frames never mix: time folds into the batch (strided frames are PyTorch's taps).
    x = x[:, ::st] if st != 1 else x
    n, t = x.shape[:2]
    if (kh, kw, ph, pw, groups) == (1, 1, 0, 0, 1):
      x = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
      return jax.lax.dot_general(x, kernel[0, 0, 0], (((4,), (0,)), ((), ())))
    y = patch_conv.conv(x.reshape((n * t,) + x.shape[2:]), kernel[0], (sh, sw), (ph, pw),
                        (1, 1), groups)
    return y.reshape((n, t) + y.shape[1:])
  return conv3d_ops.conv(x, kernel, strides, padding, groups)


class Conv3dGeometry(nn.Module):
  """A 3D convolution's output channels, (t, h, w) kernel, strides and symmetric zero
  padding, and channel groups: Conv3d's first fields, and ConvBN3d's for its `conv`."""
  features: int
  kernel_size: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (0, 0, 0)
  groups: int = 1


class Conv3d(Conv3dGeometry):
  """`torch.nn.Conv3d` on [N, T, H, W, C]: kernel `[kT, kH, kW, C_in / groups, features]`
  (and `bias` when `use_bias`), He-normal fan-out init."""
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  kernel_init: Any = HE_FAN_OUT

  @nn.compact
  def __call__(self, x: jax.Array, frame_stride: int = 1) -> jax.Array:
    """x: [N, T, H, W, C_in] -> [N, T', H', W', features]; `frame_stride` k > 1 keeps
    only output frames 0, k, 2k, ... (computed as a k times larger temporal stride)."""
    c_in = x.shape[-1]
    if c_in % self.groups or self.features % self.groups:
      raise ValueError(f"Conv3d {self.name}: channels {c_in} -> {self.features} are not "
                       f"divisible by groups={self.groups}")
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (c_in // self.groups, self.features),
                        jnp.float32)
    strides = (self.strides[0] * frame_stride,) + tuple(self.strides[1:])
    y = conv3d(x.astype(self.dtype), kernel.astype(self.dtype), strides,
               tuple(self.padding), self.groups)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


class ConvBN3d(Conv3dGeometry, NormBlock):
  """mmcv `ConvModule` (Conv3d without bias -> BN3d -> optional ReLU), children `conv`
  and `bn` as its state_dict names them.

  Attributes:
    Conv3dGeometry's fields: the conv's.
    activation: ReLU after the BN.
    bn_scale_init: the BN gain's initialiser (zeros for MMAction2's zero_init_residual).
    NormBlock's fields: the BN's settings (`freeze_bn_affine`: partial BN).
  """
  activation: bool = True
  bn_scale_init: Any = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, frame_stride: int = 1) -> jax.Array:
    """x: [N, T, H, W, C_in] -> [N, T', H', W', features] (`frame_stride`: Conv3d's)."""
    x = Conv3d(self.features, self.kernel_size, self.strides, self.padding, self.groups,
               dtype=self.dtype, name="conv")(x, frame_stride)
    x = self.norm("bn", scale_init=self.bn_scale_init)(x, train)
    return nn.relu(x) if self.activation else x


def max_pool3d_spatial(x: jax.Array, kernel: int, stride: tuple[int, int, int],
                       padding: int) -> jax.Array:
  """`MaxPool3d(kernel (1, k, k), stride (st, s, s), padding (0, p, p))` on [N, T, H, W, C]
  (padding counts as -inf): the frames 0, st, 2 st, ... each pooled in 2D."""
  st, sh, sw = stride
  x = x[:, ::st] if st != 1 else x
  n, t = x.shape[:2]
  y = max_pool2d(x.reshape((n * t,) + x.shape[2:]), kernel, (sh, sw), padding)
  return y.reshape((n, t) + y.shape[1:])


def max_pool3d_temporal(x: jax.Array, what: Optional[str] = None) -> jax.Array:
  """`MaxPool3d(kernel (2, 1, 1), stride (2, 1, 1))` on [N, T, H, W, C] -> T // 2 frames
  (an odd last frame is dropped, as PyTorch's floor mode does)."""
  t = x.shape[1]
  if t < 2:
    raise ValueError(f"{what or 'temporal max-pool'}: the (2, 1, 1) max-pool needs at least "
                     f"2 frames, got {t} (input {x.shape}); feed more frames")
  x = x[:, :2 * (t // 2)]
  return jnp.maximum(x[:, 0::2], x[:, 1::2])
