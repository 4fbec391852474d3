"""2D ResNet-18/34/50/101/152 in torchvision layout, with the hook slots of models/hooks.py.

Layout (v1.5): stem = conv1 7x7/2 pad 3 -> bn1 -> ReLU -> max-pool 3x3/2 pad 1; stages
`layer1..layer4` of BasicBlocks (R18/34) or Bottlenecks (R50+), the stride on the 3x3
conv; the first block of a stage gets `downsample` (1x1 conv with the stride + BN) when
the stride or the channel count changes. Flax names mirror torchvision so conversion is
a rename (converters/common.py): `conv1`, `bn1`, `layer{s}_{i}` with `conv1..3`,
`bn1..3`, `downsample_conv`, `downsample_bn`.

Frames are folded into the batch, video-major: row `n * T + t` is frame t of clip n.
The trunk never mixes frames itself; `num_segments` (T) is handed to the hooks. The
`inner` slot is after the ReLU of bn1 (both kinds); the `mid` slot is after bn2 of a
Bottleneck, bn1 of a BasicBlock. Registered as backbone
'resnet'.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.backbones.trunk import (Trunk, build_trunk, stage_of_layer, trunk_defaults,
                                           trunk_frozen_rule)
from vidjax.models.hooks import BlockInfo, HookedBlock, HookFactory
from vidjax.models.layers import BatchNorm, NormBlock, conv2d, max_pool2d
from vidjax.models.registry import register

# depth -> (block kind, blocks per stage)
RESNET_SPECS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}


class _Block(NormBlock, HookedBlock):
  """The residual block's frame: hook slots, shortcut, sum. Subclasses set up their
  layers and give the residual branch in `branch`."""
  info: Optional[BlockInfo] = None

  def _setup_common(self) -> None:
    info = self.info
    if info.stride != 1 or info.in_channels != info.out_channels:
      self.downsample_conv = conv2d(info.out_channels, 1, info.stride, dtype=self.dtype)
      self.downsample_bn = self.norm()
    else:
      self.downsample_conv = None
      self.downsample_bn = None
    self.setup_hooks(info)

  def _shortcut(self, x: jax.Array, bn_train: bool) -> jax.Array:
    if self.downsample_conv is None:
      return x
    return self.downsample_bn(self.downsample_conv(x), bn_train)

  def __call__(self, x: jax.Array, num_segments: int, bn_train: bool,
               hook_train: bool) -> jax.Array:
    """x: [N*T, H, W, C_in] -> [N*T, H/stride, W/stride, C_out]."""
    x = self.hook(self.pre, x, num_segments, hook_train)
    identity = self._shortcut(x, bn_train)
    y = self.hook(self.temporal, x, num_segments, hook_train)
    y = self.branch(y, bn_train,
                    lambda z: self.hook(self.inner, z, num_segments, hook_train),
                    lambda z: self.hook(self.mid, z, num_segments, hook_train))
    y = nn.relu(y + identity)
    return self.hook(self.post, y, num_segments, hook_train)


class BasicBlock(_Block):
  """3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU (R18/R34)."""

  def setup(self):
    w = self.info.width
    self.conv1 = conv2d(w, 3, self.info.stride, 1, dtype=self.dtype)
    self.bn1 = self.norm()
    self.conv2 = conv2d(w, 3, 1, 1, dtype=self.dtype)
    self.bn2 = self.norm()
    self._setup_common()

  def branch(self, y: jax.Array, bn_train: bool, inner, mid) -> jax.Array:
    y = inner(nn.relu(mid(self.bn1(self.conv1(y), bn_train))))
    return self.bn2(self.conv2(y), bn_train)


class Bottleneck(_Block):
  """1x1 -> BN -> ReLU -> 3x3 (stride) -> BN -> ReLU -> 1x1 -> BN, + shortcut, ReLU."""

  def setup(self):
    w, out = self.info.width, self.info.out_channels
    self.conv1 = conv2d(w, 1, dtype=self.dtype)
    self.bn1 = self.norm()
    self.conv2 = conv2d(w, 3, self.info.stride, 1, dtype=self.dtype)
    self.bn2 = self.norm()
    self.conv3 = conv2d(out, 1, dtype=self.dtype)
    self.bn3 = self.norm()
    self._setup_common()

  def branch(self, y: jax.Array, bn_train: bool, inner, mid) -> jax.Array:
    y = inner(nn.relu(self.bn1(self.conv1(y), bn_train)))
    y = nn.relu(mid(self.bn2(self.conv2(y), bn_train)))
    return self.bn3(self.conv3(y), bn_train)


class ResNet(Trunk):
  """torchvision ResNet trunk without pooling and fc.

  Attributes (besides the trunk policy of backbones/trunk.py; torchvision strides are
  (1, 2, 2, 2), TCPNet's (1, 2, 2, 1)):
    base_channels: the stem's and layer1's width (torchvision: 64); layer s has
      `base_channels * 2**(s-1)` planes. Smaller values give the cheap models of tests.
    in_channels: the input's channels, conv1's kernel [7, 7, in_channels, base]: 3 for
      RGB frames, 1 for MMAction2's audio ResNet on log-mel features.
    remat: recompute each block's activations in the backward pass (nn.remat): only
      block inputs are kept, for memory; parameters are the same.
    out_stages: the stages whose outputs are returned, e.g. (3, 4) for TPN: a tuple of
      arrays; one stage gives the array itself.
    pre_module, temporal_module, inner_module, mid_module, post_module: hook factories
      (models/hooks.py).
  """
  base_channels: int = 64
  in_channels: int = 3
  remat: bool = False
  out_stages: Sequence[int] = (4,)
  pre_module: Optional[HookFactory] = None
  temporal_module: Optional[HookFactory] = None
  inner_module: Optional[HookFactory] = None
  mid_module: Optional[HookFactory] = None
  post_module: Optional[HookFactory] = None

  specs = RESNET_SPECS

  @property
  def out_channels(self) -> int:
    kind, _ = RESNET_SPECS[self.depth]
    return self.base_channels * 8 * _EXPANSION[kind]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, num_segments: int = 1):
    """x: [N*T, H, W, in_channels] float (already normalised) -> [N*T, H/32, W/32, C_out].

    With strides (1, 2, 2, 2) the output is 32x smaller; C_out is 512 (R18/34) or 2048.
    With several `out_stages`, a tuple of those stages' outputs.
    """
    self.check_input(x, num_segments)
    if x.shape[-1] != self.in_channels:
      raise ValueError(f"ResNet with in_channels={self.in_channels} (model.backbone."
                       f"in_channels) got input of shape {x.shape}")
    kind, stage_sizes = RESNET_SPECS[self.depth]
    expansion = _EXPANSION[kind]
    block_cls = BasicBlock if kind == "basic" else Bottleneck
    if self.remat:  # num_segments, bn_train, hook_train are Python values: static
      block_cls = nn.remat(block_cls, static_argnums=(2, 3, 4))

    x = x.astype(self.dtype)
    x = conv2d(self.base_channels, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
    x = BatchNorm(self.bn_momentum, self.bn_eps, False, self.dtype, name="bn1")(
        x, self.stage_train(0, train))
    x = nn.relu(x)
    x = self.end_stage(max_pool2d(x, 3, 2, 1), 0)

    in_channels, block_id, outputs = self.base_channels, 0, []
    for s, num_blocks in enumerate(stage_sizes, start=1):
      width = self.base_channels * 2 ** (s - 1)
      for i in range(num_blocks):
        info = BlockInfo(
            stage=s, index=i, block_id=block_id, stage_sizes=tuple(stage_sizes),
            in_channels=in_channels, width=width, out_channels=width * expansion,
            stride=self.stride(s, i), expansion=expansion)
        x = block_cls(
            info=info, **self.block_norm(), pre_module=self.pre_module,
            temporal_module=self.temporal_module, inner_module=self.inner_module,
            mid_module=self.mid_module,
            post_module=self.post_module, name=info.name)(
                x, num_segments, self.bn_train(s, train), self.stage_train(s, train))
        in_channels = info.out_channels
        block_id += 1
      x = self.end_stage(x, s)
      if s in self.out_stages:
        outputs.append(x)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def resnet_defaults() -> ml_collections.ConfigDict:
  return trunk_defaults("resnet", depth=50, base_channels=64, in_channels=3, remat=False,
                        out_stages=(4,))


# Partial BN freezes the affines of every trunk BN but the stem's (hooks' BNs sit deeper).
resnet_frozen_rule = trunk_frozen_rule(
    stage_of_layer,
    lambda path: len(path) == 3 and path[-2].startswith(("bn", "downsample_bn")))


@register("backbone", "resnet", resnet_defaults, frozen_rule=resnet_frozen_rule)
def build_resnet(cfg: ml_collections.ConfigDict, dtype, **hooks) -> ResNet:
  stages = tuple(int(s) for s in cfg.out_stages)
  if not stages or any(s not in (1, 2, 3, 4) for s in stages):
    raise ValueError(f"model.backbone.out_stages={stages}: stages are 1..4")
  return build_trunk(ResNet, cfg, dtype, base_channels=int(cfg.base_channels),
                     in_channels=int(cfg.in_channels), remat=bool(cfg.remat),
                     out_stages=stages, **hooks)
