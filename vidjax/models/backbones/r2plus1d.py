"""MMAction2's ResNet2Plus1d (R(2+1)D) on clips [N, T, H, W, C], built on the ResNet3d
trunk (resnet3d.py).

Written from reference/mmaction2_cost.md section 6. Every ConvModule of the trunk (stem,
block convs, downsample) factorises its (kT, kH, kW) conv into `Conv2plus1d`:

  conv_s  (1, kH, kW), stride (1, s, s), padding (0, p, p), no bias, C_in -> mid
  bn_s    BN at eps 1e-5 (`mid_bn_eps`), then ReLU
  conv_t  (kT, 1, 1), stride (t, 1, 1), padding (pT, 0, 0), no bias, mid -> C_out

with mid = floor(3 C_in C_out kH kW / (C_in kH kW + 3 C_out)) (the 3 is a constant, not
kT: the stem's 3 -> 64 7x7 gets 83, a 64 -> 64 3x3 conv 144, the 64 -> 128 downsample
54), followed by the ConvModule's own BN (eps 1e-3, `bn_eps`) and ReLU where it has one.
R(2+1)D-34 (MMAction2's r2plus1d_r34): BasicBlock3d inflated everywhere (both convs
(3, 3, 3) factorised; conv1 carries both strides), conv1 (3, 7, 7) stride (1, 2, 2), the
padded (1, 3, 3) max-pool, no pool2, spatial strides (1, 2, 2, 2), temporal strides
(1, 2, 2, 2); the 1x1x1 downsample splits its stride as the rule above says.

Registered backbone: 'r2plus1d'. Flax names mirror the upstream state_dict
(`conv1/conv/conv_s/kernel`, `conv1/conv/bn_s/*`, `conv1/conv/conv_t/kernel`,
`conv1/bn/*`), so conversion is ResNet3d's rename.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.backbones.resnet3d import (BasicBlock3d, Bottleneck3d, ResNet3d,
                                              build_resnet3d_fields, resnet3d_defaults)
from vidjax.models.backbones.trunk import build_trunk, stage_of_layer, trunk_frozen_rule
from vidjax.models.layers import NormBlock
from vidjax.models.layers3d import Conv3d, triple
from vidjax.models.registry import register


def mid_channels(c_in: int, c_out: int, kernel: Sequence[int]) -> int:
  """Conv2plus1d's inner width: floor(3 c_in c_out kH kW / (c_in kH kW + 3 c_out))."""
  _, kh, kw = triple(kernel)
  return 3 * c_in * c_out * kh * kw // (c_in * kh * kw + 3 * c_out)


class Conv2plus1d(NormBlock):
  """(kT, kH, kW) conv as conv_s (1, kH, kW) -> bn_s -> ReLU -> conv_t (kT, 1, 1), on
  [N, T, H, W, C_in] -> [N, T', H', W', features]. Its `bn_eps` is bn_s's (the trunk's
  `mid_bn_eps`)."""
  features: int
  kernel_size: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (0, 0, 0)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.kernel_size, self.strides, self.padding
    mid = mid_channels(x.shape[-1], self.features, self.kernel_size)
    x = Conv3d(mid, (1, kh, kw), (1, sh, sw), (0, ph, pw), dtype=self.dtype, name="conv_s")(x)
    x = self.norm("bn_s")(x, train)
    return Conv3d(self.features, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), dtype=self.dtype,
                  name="conv_t")(nn.relu(x))


class ConvModule2plus1d(NormBlock):
  """mmcv ConvModule with conv_cfg Conv2plus1d: `conv` (Conv2plus1d) -> `bn` -> [ReLU].
  `bn_eps` is the outer BN's, `mid_bn_eps` bn_s's inside `conv`."""
  features: int
  kernel_size: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (0, 0, 0)
  activation: bool = True
  mid_bn_eps: float = 1e-5
  bn_scale_init: Any = nn.initializers.ones
  bn_eps: float = dataclasses.field(default=1e-3, kw_only=True)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = Conv2plus1d(self.features, self.kernel_size, self.strides, self.padding,
                    name="conv", **{**self.norm_fields(), "bn_eps": self.mid_bn_eps})(x, train)
    x = self.norm("bn", scale_init=self.bn_scale_init)(x, train)
    return nn.relu(x) if self.activation else x


def factorised_conv_module(block: Any, features: int, kernel: Sequence[int],
                           stride: Sequence[int] = (1, 1, 1),
                           padding: Sequence[int] = (0, 0, 0), *, name: str,
                           activation: bool = True, last: bool = False) -> nn.Module:
  """A (2+1)D block's `conv_module`: Block3d's arguments, a ConvModule2plus1d."""
  zero = last and block.zero_init_residual
  return ConvModule2plus1d(features, triple(kernel), triple(stride), triple(padding),
                           activation=activation, mid_bn_eps=block.mid_bn_eps,
                           bn_scale_init=nn.initializers.zeros if zero
                           else nn.initializers.ones, name=name, **block.norm_fields())


class BasicBlock2plus1d(BasicBlock3d):
  """BasicBlock3d with (2+1)D convs (R(2+1)D-18/34)."""
  mid_bn_eps: float = 1e-5
  conv_module = factorised_conv_module


class Bottleneck2plus1d(Bottleneck3d):
  """Bottleneck3d with (2+1)D convs (depth 50 and up)."""
  mid_bn_eps: float = 1e-5
  conv_module = factorised_conv_module


class ResNet2Plus1d(ResNet3d):
  """MMAction2's ResNet2Plus1d trunk (see the module docstring)."""
  mid_bn_eps: float = 1e-5

  basic_block: ClassVar[type] = BasicBlock2plus1d
  bottleneck: ClassVar[type] = Bottleneck2plus1d
  stem_module: ClassVar[type] = ConvModule2plus1d

  def make_stem(self) -> nn.Module:
    return super().make_stem(mid_bn_eps=self.mid_bn_eps)

  def make_block(self, spec):
    return super().make_block(spec, mid_bn_eps=self.mid_bn_eps)


def r2plus1d_defaults() -> ml_collections.ConfigDict:
  """ResNet2Plus1d's defaults (MMAction2's r2plus1d_r34 model file)."""
  return resnet3d_defaults(
      "r2plus1d", depth=34, temporal_strides=(1, 2, 2, 2), conv1_kernel=(3, 7, 7),
      inflate=(1, 1, 1, 1), with_pool2=False, bn_eps=1e-3,
      mid_bn_eps=1e-5,   # the BN inside each (2+1)D conv (bn_s)
      zero_init_residual=False)


# Partial BN (not an R(2+1)D recipe) freezes every trunk BN affine but the stem's, bn_s
# included.
r2plus1d_frozen_rule = trunk_frozen_rule(
    lambda top: stage_of_layer(top, stem=("conv1",)),
    lambda path: path[0] != "conv1" and len(path) >= 2 and path[-2] in ("bn", "bn_s"))


@register("backbone", "r2plus1d", r2plus1d_defaults, frozen_rule=r2plus1d_frozen_rule)
def build_r2plus1d(cfg: ml_collections.ConfigDict, dtype, **hooks) -> ResNet2Plus1d:
  if hooks:
    raise ValueError(f"model.backbone.name='r2plus1d' has no hook slots; got {sorted(hooks)}")
  return build_trunk(ResNet2Plus1d, cfg, dtype, **build_resnet3d_fields(cfg),
                     mid_bn_eps=float(cfg.mid_bn_eps))

