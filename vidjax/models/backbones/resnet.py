"""2D ResNet-18/34/50/101/152 in torchvision layout, with per-block hook slots.

Layout (v1.5): stem = conv1 7x7/2 pad 3 -> bn1 -> ReLU -> max-pool 3x3/2 pad 1; stages
`layer1..layer4` of BasicBlocks (R18/34) or Bottlenecks (R50+), the stride on the 3x3
conv; the first block of a stage gets `downsample` (1x1 conv with the stride + BN) when
the stride or the channel count changes. Flax names mirror torchvision so conversion is
a rename (converters/common.py): `conv1`, `bn1`, `layer{s}_{i}` with `conv1..3`,
`bn1..3`, `downsample_conv`, `downsample_bn`.

Frames are folded into the batch, video-major: row `n * T + t` is frame t of clip n.
The backbone never mixes frames itself; `num_segments` (T) is handed to the hooks.

Hook slots (how temporal models plug in). Each is an optional factory
`factory(info: BlockInfo) -> nn.Module | None` (a plain function or functools.partial,
pure: flax may run a block's setup more than once). It is called in the setup of every
residual block; a returned module becomes a child of that block under a fixed name
(`pre`, `temporal`, `mid`, `post`), None leaves the slot empty. The module is called as
`module(x, num_segments=T, train=hook_train)`: x is [N*T, H, W, C], the result must have
the same shape. `hook_train` is False when the stage's BNs are in eval mode (train=False,
norm_eval, frozen stages), so hook modules with BatchNorm follow their stage; partial_bn
does not affect hooks. Hook parameters are ordinary params of the block, so a converter
only adds rename rules for them.

* `pre_module` -> child `pre`: on the block input before the split, so the residual
  branch and the identity/downsample path both see its output. TSM's 'block' shift
  placement goes here (no released checkpoint uses it).
* `temporal_module` -> child `temporal`: on the residual branch before conv1, the
  identity/downsample path sees the unshifted input. TSM's 'blockres' shift goes here
  (no params; `fold = C // 8` from `x.shape[-1]`; for R101/152 TSM shifts only blocks
  with `info.index % 2 == 0`, i.e. when `info.stage_sizes[2] >= 23`).
* `mid_module` -> child `mid`: after the BN that follows the block's 3x3 spatial conv and
  before its ReLU (bn2 in a Bottleneck, bn1 in a BasicBlock). GC's four ECal calibrators
  go here (one module holding eft1..eft4; the converter renames `eft*` to `mid/eft*`).
* `post_module` -> child `post`: on the block output after the final ReLU. TSM's
  non-local blocks go here (the factory returns NL for layer2 blocks 0, 2 and layer3
  blocks 0, 2, 4; the converter renames `layerS.B.nl.*` to `layerS_B/post/*` and
  `layerS.B.block.*` to `layerS_B.*`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.layers import BatchNorm, Dtype, conv2d, max_pool2d


@dataclasses.dataclass(frozen=True)
class BlockInfo:
  """Where a residual block sits, for hook factories.

  stage: 1..4 (torchvision `layer{stage}`); index: block index inside the stage;
  block_id: running index over the whole network (0-based); stage_sizes: blocks per
  stage, e.g. (3, 4, 6, 3); in_channels / width / out_channels: the block's input,
  inner (3x3 conv) and output channel counts; stride: the block's spatial stride;
  expansion: 1 (BasicBlock) or 4 (Bottleneck).
  """
  stage: int
  index: int
  block_id: int
  stage_sizes: tuple[int, ...]
  in_channels: int
  width: int
  out_channels: int
  stride: int
  expansion: int

  @property
  def name(self) -> str:
    return f"layer{self.stage}_{self.index}"


HookFactory = Callable[[BlockInfo], Optional[nn.Module]]

# depth -> (block kind, blocks per stage)
RESNET_SPECS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}
_STAGE_WIDTHS = (64, 128, 256, 512)


class _Block(nn.Module):
  """Shared fields and hook plumbing of the two residual block kinds."""
  info: BlockInfo
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  freeze_bn_affine: bool = False
  dtype: Dtype = jnp.float32
  pre_module: Optional[HookFactory] = None
  temporal_module: Optional[HookFactory] = None
  mid_module: Optional[HookFactory] = None
  post_module: Optional[HookFactory] = None

  def _bn(self) -> BatchNorm:
    return BatchNorm(self.bn_momentum, self.bn_eps, self.freeze_bn_affine, self.dtype)

  def _setup_common(self) -> None:
    info = self.info
    if info.stride != 1 or info.in_channels != info.out_channels:
      self.downsample_conv = conv2d(info.out_channels, 1, info.stride, dtype=self.dtype)
      self.downsample_bn = self._bn()
    else:
      self.downsample_conv = None
      self.downsample_bn = None
    # Assigning in setup names the children after the attribute: pre, temporal, mid, post.
    self.pre = self.pre_module(info) if self.pre_module else None
    self.temporal = self.temporal_module(info) if self.temporal_module else None
    self.mid = self.mid_module(info) if self.mid_module else None
    self.post = self.post_module(info) if self.post_module else None

  def _hook(self, m: Optional[nn.Module], x: jax.Array, num_segments: int,
            train: bool) -> jax.Array:
    return x if m is None else m(x, num_segments=num_segments, train=train)

  def _shortcut(self, x: jax.Array, bn_train: bool) -> jax.Array:
    if self.downsample_conv is None:
      return x
    return self.downsample_bn(self.downsample_conv(x), bn_train)


class BasicBlock(_Block):
  """3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU (R18/R34)."""

  def setup(self):
    w = self.info.width
    self.conv1 = conv2d(w, 3, self.info.stride, 1, dtype=self.dtype)
    self.bn1 = self._bn()
    self.conv2 = conv2d(w, 3, 1, 1, dtype=self.dtype)
    self.bn2 = self._bn()
    self._setup_common()

  def __call__(self, x: jax.Array, num_segments: int, bn_train: bool,
               hook_train: bool) -> jax.Array:
    """x: [N*T, H, W, C_in] -> [N*T, H/stride, W/stride, C_out]."""
    x = self._hook(self.pre, x, num_segments, hook_train)
    identity = self._shortcut(x, bn_train)
    y = self._hook(self.temporal, x, num_segments, hook_train)
    y = self.bn1(self.conv1(y), bn_train)
    y = nn.relu(self._hook(self.mid, y, num_segments, hook_train))
    y = self.bn2(self.conv2(y), bn_train)
    y = nn.relu(y + identity)
    return self._hook(self.post, y, num_segments, hook_train)


class Bottleneck(_Block):
  """1x1 -> BN -> ReLU -> 3x3 (stride) -> BN -> ReLU -> 1x1 -> BN, + shortcut, ReLU."""

  def setup(self):
    w, out = self.info.width, self.info.out_channels
    self.conv1 = conv2d(w, 1, dtype=self.dtype)
    self.bn1 = self._bn()
    self.conv2 = conv2d(w, 3, self.info.stride, 1, dtype=self.dtype)
    self.bn2 = self._bn()
    self.conv3 = conv2d(out, 1, dtype=self.dtype)
    self.bn3 = self._bn()
    self._setup_common()

  def __call__(self, x: jax.Array, num_segments: int, bn_train: bool,
               hook_train: bool) -> jax.Array:
    """x: [N*T, H, W, C_in] -> [N*T, H/stride, W/stride, 4 * width]."""
    x = self._hook(self.pre, x, num_segments, hook_train)
    identity = self._shortcut(x, bn_train)
    y = self._hook(self.temporal, x, num_segments, hook_train)
    y = nn.relu(self.bn1(self.conv1(y), bn_train))
    y = self.bn2(self.conv2(y), bn_train)
    y = nn.relu(self._hook(self.mid, y, num_segments, hook_train))
    y = self.bn3(self.conv3(y), bn_train)
    y = nn.relu(y + identity)
    return self._hook(self.post, y, num_segments, hook_train)


class ResNet(nn.Module):
  """torchvision ResNet trunk without pooling and fc.

  Attributes:
    depth: 18, 34, 50, 101 or 152.
    strides: stride of the first block of layer1..layer4 (torchvision: 1, 2, 2, 2;
      TCPNet uses 1, 2, 2, 1).
    frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and layer1..layer k:
      no gradient reaches their parameters and their BNs stay in eval mode (MMAction2).
      The optimizer should also skip their weight decay.
    norm_eval: every BN (hooks included) in eval mode even when train=True; the affine
      parameters still train (MMAction2's norm_eval).
    partial_bn: TSN's partial BN: only the stem's bn1 uses batch statistics and updates
      its running statistics in training; every other BatchNorm of the trunk uses its
      running statistics and gets no gradient for scale/bias (TSM freezes them with
      `requires_grad=False`). Hook modules are not affected (upstream only freezes the
      trunk's BatchNorm2d layers).
    bn_eps, bn_momentum: BatchNorm epsilon and momentum (flax convention: 0.9 is
      PyTorch's 0.1).
    dtype: computation dtype; parameters and BN statistics stay float32.
    remat: recompute each block's activations in the backward pass (nn.remat): only
      block inputs are kept, for memory; parameters are the same.
    pre_module, temporal_module, mid_module, post_module: hook factories, see the module
      docstring.
  """
  depth: int = 50
  strides: Sequence[int] = (1, 2, 2, 2)
  frozen_stages: int = -1
  norm_eval: bool = False
  partial_bn: bool = False
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32
  remat: bool = False
  pre_module: Optional[HookFactory] = None
  temporal_module: Optional[HookFactory] = None
  mid_module: Optional[HookFactory] = None
  post_module: Optional[HookFactory] = None

  @property
  def out_channels(self) -> int:
    kind, _ = RESNET_SPECS[self.depth]
    return _STAGE_WIDTHS[-1] * _EXPANSION[kind]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, num_segments: int = 1) -> jax.Array:
    """x: [N*T, H, W, 3] float (already normalised) -> [N*T, H/32, W/32, C_out].

    With strides (1, 2, 2, 2) the output is 32x smaller; C_out is 512 (R18/34) or 2048.
    """
    if self.depth not in RESNET_SPECS:
      raise ValueError(f"ResNet depth {self.depth} is not one of {sorted(RESNET_SPECS)}")
    if len(self.strides) != 4:
      raise ValueError(f"ResNet strides must have 4 entries, got {tuple(self.strides)}")
    if x.shape[0] % num_segments:
      raise ValueError(f"batch {x.shape[0]} is not a multiple of num_segments={num_segments}")
    kind, stage_sizes = RESNET_SPECS[self.depth]
    expansion = _EXPANSION[kind]
    block_cls = BasicBlock if kind == "basic" else Bottleneck
    if self.remat:  # num_segments, bn_train, hook_train are Python values: static
      block_cls = nn.remat(block_cls, static_argnums=(2, 3, 4))

    def stage_train(stage: int) -> bool:  # stage 0 is the stem
      return train and not self.norm_eval and stage > self.frozen_stages

    x = x.astype(self.dtype)
    x = conv2d(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
    x = BatchNorm(self.bn_momentum, self.bn_eps, False, self.dtype, name="bn1")(
        x, stage_train(0))
    x = nn.relu(x)
    x = max_pool2d(x, 3, 2, 1)
    if self.frozen_stages >= 0:
      x = jax.lax.stop_gradient(x)

    in_channels, block_id = 64, 0
    for s, (num_blocks, width) in enumerate(zip(stage_sizes, _STAGE_WIDTHS), start=1):
      hook_train = stage_train(s)
      bn_train = hook_train and not self.partial_bn
      for i in range(num_blocks):
        info = BlockInfo(
            stage=s, index=i, block_id=block_id, stage_sizes=tuple(stage_sizes),
            in_channels=in_channels, width=width, out_channels=width * expansion,
            stride=int(self.strides[s - 1]) if i == 0 else 1, expansion=expansion)
        x = block_cls(
            info=info, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
            freeze_bn_affine=self.partial_bn, dtype=self.dtype,
            pre_module=self.pre_module, temporal_module=self.temporal_module,
            mid_module=self.mid_module,
            post_module=self.post_module, name=info.name)(
                x, num_segments, bn_train, hook_train)
        in_channels = info.out_channels
        block_id += 1
      if s <= self.frozen_stages:
        x = jax.lax.stop_gradient(x)
    return x


def is_frozen_param(path: Sequence[str], frozen_stages: int = -1, partial_bn: bool = False) -> bool:
  """Whether a trunk parameter must receive no update at all, weight decay included.

  The model already stops their gradients; upstream additionally leaves them out of the
  optimizer (`requires_grad=False`), so an optimizer with decoupled or L2 weight decay
  must mask them too.

  Args:
    path: parameter names below the backbone, e.g. ('layer1_0', 'bn2', 'scale').
    frozen_stages, partial_bn: as in `ResNet`.
  """
  top = path[0]
  stage = 0 if top in ("conv1", "bn1") else int(top[len("layer"):].split("_")[0])
  if stage <= frozen_stages:
    return True
  # partial BN freezes the affine params of every trunk BN but the stem's (not hooks').
  return (partial_bn and len(path) == 3 and path[-2].startswith(("bn", "downsample_bn"))
          and path[-1] in ("scale", "bias"))
