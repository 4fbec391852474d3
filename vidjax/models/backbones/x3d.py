"""MMAction2's X3D (Feichtenhofer, CVPR 2020; converted from PySlowFast) on clips
[N, T, H, W, C], channels last.

Written from reference/mmaction2_cost.md section 8. X3D-S and X3D-M are one network
(gamma_w 1, gamma_b 2.25, gamma_d 2.2) fed different clips:

  stem    conv1_s: (1, 3, 3) conv, stride (1, 2, 2), padding (0, 1, 1), no bias, no BN;
          conv1_t: depthwise (5, 1, 1) conv, padding (2, 0, 0) -> BN -> ReLU. No max-pool.
  stages  layer1..4 of ceil(gamma_d x (1, 2, 5, 3)) blocks, widths base x (1, 2, 4, 8)
          with base = round_width(24 gamma_w), inner widths int(width x gamma_b); the
          first block of each stage has spatial stride 2 and a 1x1x1 downsample (+ BN).
  block   conv1 1x1x1 -> BN -> ReLU; conv2 depthwise 3x3x3 (stride (1, s, s)) -> BN;
          squeeze-excitation on the even-indexed blocks of a stage ('half'; 'all': every
          block); Swish x sigmoid(x); conv3 1x1x1 -> BN; plus the shortcut, ReLU.
  SE      mean over T, H, W -> fc1 (1x1x1 conv with bias, inner -> round_width(inner x
          se_ratio)) -> ReLU -> fc2 (back to inner, bias) -> sigmoid -> scales the input.
  conv5   1x1x1 conv, 8 base -> int(8 base x gamma_b) (192 -> 432) -> BN -> ReLU.

round_width(v) = max(8, int(v + 4) // 8 x 8), plus 8 when that is under 0.9 v. BatchNorm
eps 1e-5. `zero_init_residual` starts each block's conv3 BN gain at 0 (upstream's default
when training from scratch). Flax names mirror the upstream state_dict
(`layer{s}_{i}/conv2/conv/kernel`, `layer{s}_{i}/se_module/fc1/{kernel,bias}`,
`conv1_s/conv/kernel`, `conv1_t/{conv,bn}`, `conv5/{conv,bn}`).

Registered backbone: 'x3d'.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import Dtype, NormBlock
from vidjax.models.layers3d import Conv3d, ConvBN3d
from vidjax.models.registry import register

STAGE_BLOCKS = (1, 2, 5, 3)
SE_STYLES = ("half", "all")


def round_width(width: float, multiplier: float = 1.0, min_width: int = 8,
                divisor: int = 8) -> int:
  """X3D's channel rounding: width x multiplier to a multiple of `divisor` (at least
  `min_width`), one step up when rounding lost more than 10%."""
  width *= multiplier
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  if out < 0.9 * width:
    out += divisor
  return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
  """Blocks of a stage: ceil(multiplier x repeats)."""
  return int(math.ceil(multiplier * repeats))


class SEModule(nn.Module):
  """Squeeze-excitation on [N, T, H, W, C]: children `fc1`, `fc2` (1x1x1 convs with bias)."""
  bottleneck: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    s = nn.relu(Conv3d(self.bottleneck, (1, 1, 1), use_bias=True, dtype=self.dtype,
                       name="fc1")(s))
    s = Conv3d(x.shape[-1], (1, 1, 1), use_bias=True, dtype=self.dtype, name="fc2")(s)
    return x * nn.sigmoid(s)


class X3DNorm(NormBlock):
  """The BatchNorm settings X3D and its blocks share (NormBlock's; `norm_fields()`
  passes them to a ConvBN3d) and the residual init."""
  zero_init_residual: bool = True


class BlockX3D(X3DNorm):
  """X3D's bottleneck (see the module docstring): [N, T, H, W, C_in] -> [N, T, H / s,
  W / s, out_channels]."""
  inner: int = dataclasses.field(kw_only=True)
  out_channels: int = dataclasses.field(kw_only=True)
  spatial_stride: int = 1
  use_se: bool = False
  se_ratio: float = 1 / 16

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    norm = self.norm_fields()
    s = self.spatial_stride
    y = ConvBN3d(self.inner, (1, 1, 1), name="conv1", **norm)(x, train)
    y = ConvBN3d(self.inner, (3, 3, 3), (1, s, s), (1, 1, 1), groups=self.inner,
                 activation=False, name="conv2", **norm)(y, train)
    if self.use_se:
      y = SEModule(round_width(self.inner, self.se_ratio), self.dtype, name="se_module")(y)
    y = y * nn.sigmoid(y)   # Swish
    zero = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = ConvBN3d(self.out_channels, (1, 1, 1), activation=False, bn_scale_init=zero,
                 name="conv3", **norm)(y, train)
    if s != 1 or x.shape[-1] != self.out_channels:
      x = ConvBN3d(self.out_channels, (1, 1, 1), (1, s, s), activation=False,
                   name="downsample", **norm)(x, train)
    return nn.relu(y + x)


class StemConv(nn.Module):
  """mmcv ConvModule without norm and activation: (1, 3, 3) conv, stride (1, 2, 2),
  no bias (child `conv`)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return Conv3d(self.features, (1, 3, 3), (1, 2, 2), (0, 1, 1), dtype=self.dtype,
                  name="conv")(x)


class X3D(X3DNorm):
  """MMAction2's X3D backbone (see the module docstring): [N, T, H, W, 3] normalised
  clips -> conv5 features [N, T, H / 32, W / 32, int(8 base x gamma_b)]."""
  gamma_w: float = 1.0
  gamma_b: float = 2.25
  gamma_d: float = 2.2
  base_channels: int = 24
  spatial_strides: tuple[int, ...] = (2, 2, 2, 2)
  se_style: str = "half"
  se_ratio: float = 1 / 16

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 5:
      raise ValueError(f"X3D expects clips [N, T, H, W, C], got shape {x.shape}")
    norm = self.norm_fields()
    base = round_width(self.base_channels, self.gamma_w)
    x = x.astype(self.dtype)
    x = StemConv(base, self.dtype, name="conv1_s")(x)
    x = ConvBN3d(base, (5, 1, 1), padding=(2, 0, 0), groups=base, name="conv1_t",
                 **norm)(x, train)
    for s, repeats in enumerate(STAGE_BLOCKS, start=1):
      width = base * 2 ** (s - 1)
      for i in range(round_repeats(repeats, self.gamma_d)):
        x = BlockX3D(inner=int(width * self.gamma_b), out_channels=width,
                     spatial_stride=int(self.spatial_strides[s - 1]) if i == 0 else 1,
                     use_se=self.se_style == "all" or i % 2 == 0, se_ratio=self.se_ratio,
                     zero_init_residual=self.zero_init_residual,
                     name=f"layer{s}_{i}", **norm)(x, train)
    feat = base * 2 ** (len(STAGE_BLOCKS) - 1)
    return ConvBN3d(int(feat * self.gamma_b), (1, 1, 1), name="conv5", **norm)(x, train)


def x3d_defaults() -> ml_collections.ConfigDict:
  """X3D's defaults (MMAction2's x3d model file: X3D-S and X3D-M alike)."""
  return ml_collections.ConfigDict(dict(
      name="x3d",
      gamma_w=1.0,         # width factor (base 24 x gamma_w, rounded to 8)
      gamma_b=2.25,        # inner (bottleneck) width factor
      gamma_d=2.2,         # depth factor: ceil(gamma_d x (1, 2, 5, 3)) blocks
      base_channels=24,
      spatial_strides=(2, 2, 2, 2),
      se_style="half",     # half: SE on even-indexed blocks | all
      se_ratio=1 / 16,
      zero_init_residual=True,
      bn_eps=1e-5,
      bn_momentum=0.9,     # flax convention (PyTorch momentum 0.1)
  ))


@register("backbone", "x3d", x3d_defaults)
def build_x3d(cfg: ml_collections.ConfigDict, dtype: Any, **hooks: Any) -> X3D:
  if hooks:
    raise ValueError(f"model.backbone.name='x3d' has no hook slots; got {sorted(hooks)}")
  if cfg.se_style not in SE_STYLES:
    raise ValueError(f"model.backbone.se_style={cfg.se_style!r}; expected one of {SE_STYLES}")
  strides = tuple(int(s) for s in cfg.spatial_strides)
  if len(strides) != len(STAGE_BLOCKS):
    raise ValueError(f"model.backbone.spatial_strides={strides} needs one entry per stage "
                     f"({len(STAGE_BLOCKS)})")
  return X3D(gamma_w=float(cfg.gamma_w), gamma_b=float(cfg.gamma_b),
             gamma_d=float(cfg.gamma_d), base_channels=int(cfg.base_channels),
             spatial_strides=strides, se_style=str(cfg.se_style),
             se_ratio=float(cfg.se_ratio), zero_init_residual=bool(cfg.zero_init_residual),
             bn_eps=float(cfg.bn_eps), bn_momentum=float(cfg.bn_momentum), dtype=dtype)
