"""Pre-activation ResNet-50/101/152 (TCPNet's `resnet152`, an MXNet-born model).

Spec: reference/tcpnet.md sections 2.2, 6 and 7g. Layout, with upstream module names
(ours in brackets where they differ):

  bn_data (BN over the 3 raw input channels; its gamma never trains)
  -> conv1 7x7/2 pad 3 -> bn1 -> ReLU -> max-pool 3x3/2 pad 1
  -> layer1..layer4 of pre-activation bottlenecks [`layer{s}_{i}`]
  -> bn2 (final, over 2048 channels) -> ReLU

Pre-activation bottleneck (stride s on the 3x3 conv):

  a = relu(bn1(x))
  shortcut = downsample(a) if the block has one else x   (1x1 conv at stride s, no BN)
  out = conv3(relu(bn3(conv2(relu(bn2(conv1(a))))))) + shortcut   (no ReLU after the sum)

Block 0 of every stage has the downsample conv (layer1 too: 64 -> 256 channels; layer4
too even at stride 1: 1024 -> 2048). Its flax name is `downsample_conv`, as in
vidjax's torchvision ResNet. Every BN has eps 2e-5 (MXNet origin). The input is raw
0..255 RGB: `bn_data` is the only normalisation, so the model config must not
normalise pixels.

Frames are folded into the batch (row n*T + t); this trunk never mixes frames, it takes
`num_segments` only to share the backbone call signature.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import flax.linen as nn
import jax

import ml_collections

from vidjax.models.backbones.trunk import (Trunk, build_trunk, stage_of_layer, trunk_defaults,
                                           trunk_frozen_rule)
from vidjax.models.layers import BatchNorm, NormBlock, conv2d, max_pool2d
from vidjax.models.registry import register

# depth -> blocks per stage (all bottlenecks, expansion 4)
PREACT_SPECS: dict[int, tuple[int, ...]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_STAGE_WIDTHS = (64, 128, 256, 512)
_EXPANSION = 4


class PreActBottleneck(NormBlock):
  """One pre-activation bottleneck; see the module docstring for the dataflow.

  Attributes:
    in_channels, width, stride: block input channels, inner width (output is 4x) and
      the stride of the 3x3 conv.
    NormBlock's fields: as in `PreActResNet`.
  """
  in_channels: int = dataclasses.field(kw_only=True)
  width: int = dataclasses.field(kw_only=True)
  stride: int = 1
  bn_eps: float = dataclasses.field(default=2e-5, kw_only=True)

  @nn.compact
  def __call__(self, x: jax.Array, bn_train: bool) -> jax.Array:
    """x: [N, H, W, in_channels] -> [N, H/stride, W/stride, 4 * width]."""
    out_channels = self.width * _EXPANSION
    bn = self.norm

    a = nn.relu(bn("bn1")(x, bn_train))
    if self.stride != 1 or self.in_channels != out_channels:
      shortcut = conv2d(out_channels, 1, self.stride, dtype=self.dtype,
                        name="downsample_conv")(a)
    else:
      shortcut = x
    y = conv2d(self.width, 1, dtype=self.dtype, name="conv1")(a)
    y = nn.relu(bn("bn2")(y, bn_train))
    y = conv2d(self.width, 3, self.stride, 1, dtype=self.dtype, name="conv2")(y)
    y = nn.relu(bn("bn3")(y, bn_train))
    y = conv2d(out_channels, 1, dtype=self.dtype, name="conv3")(y)
    return y + shortcut


class PreActResNet(Trunk):
  """Pre-activation ResNet trunk, final BN + ReLU included, no pooling or fc.

  The trunk policy of backbones/trunk.py, with: depth 50, 101 or 152 (TCPNet: 152);
  strides (1, 2, 2, 1) by default; frozen_stages counts the stem as bn_data, conv1, bn1
  and the final bn2 as part of layer4; partial BN keeps only `bn_data` training; bn_eps
  2e-5 upstream (every trunk BN).
  """
  depth: int = 152
  strides: Sequence[int] = (1, 2, 2, 1)
  bn_eps: float = 2e-5

  specs = PREACT_SPECS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, num_segments: int = 1) -> jax.Array:
    """x: [N*T, H, W, 3] raw 0..255 RGB -> [N*T, H/s, W/s, 2048] after bn2 + ReLU.

    s is 16 with strides (1, 2, 2, 1), 32 with (1, 2, 2, 2).
    """
    self.check_input(x, num_segments)

    def bn(name):
      return BatchNorm(self.bn_momentum, self.bn_eps, self.partial_bn, self.dtype, name=name)

    x = x.astype(self.dtype)
    stem_train = self.stage_train(0, train)
    # Upstream freezes `bn_data.weight` only (MXNet's fix_gamma).
    x = BatchNorm(self.bn_momentum, self.bn_eps, False, self.dtype, freeze_scale=True,
                  name="bn_data")(x, stem_train)
    x = conv2d(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(bn("bn1")(x, stem_train and not self.partial_bn))
    x = self.end_stage(max_pool2d(x, 3, 2, 1), 0)

    in_channels = 64
    for s, (num_blocks, width) in enumerate(zip(PREACT_SPECS[self.depth], _STAGE_WIDTHS),
                                            start=1):
      bn_train = self.bn_train(s, train)
      for i in range(num_blocks):
        x = PreActBottleneck(in_channels=in_channels, width=width, stride=self.stride(s, i),
                             **self.block_norm(), name=f"layer{s}_{i}")(x, bn_train)
        in_channels = width * _EXPANSION
      if s == 4:  # the final pre-activation belongs to layer4 for freezing
        x = nn.relu(bn("bn2")(x, bn_train))
      x = self.end_stage(x, s)
    return x


_BN_NAME = re.compile(r"^(bn\d|bn_data)$")


def _stage_of(top: str) -> int:
  return 4 if top == "bn2" else stage_of_layer(top, stem=("bn_data", "conv1", "bn1"))


# Upstream never trains bn_data's gamma (MXNet's fix_gamma); partial BN keeps bn_data.
preact_frozen_rule = trunk_frozen_rule(
    _stage_of, lambda path: path[0] != "bn_data" and _BN_NAME.match(path[-2]) is not None,
    always=lambda path: tuple(path[:2]) == ("bn_data", "scale"))


def preact_resnet_defaults() -> ml_collections.ConfigDict:
  """TCPNet's pre-activation ResNet-152 (reference/tcpnet.md 2.2): raw 0..255 input."""
  return trunk_defaults("preact_resnet", depth=152, strides=(1, 2, 2, 1), bn_eps=2e-5)


@register("backbone", "preact_resnet", preact_resnet_defaults, frozen_rule=preact_frozen_rule)
def build_preact_resnet(cfg: ml_collections.ConfigDict, dtype, **hooks) -> PreActResNet:
  if hooks:
    raise ValueError(f"preact_resnet has no hook slots, got {sorted(hooks)}")
  return build_trunk(PreActResNet, cfg, dtype)
