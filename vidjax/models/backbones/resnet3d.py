"""MMAction2's ResNet3d (I3D, SlowOnly, C2D) on clips [N, T, H, W, C], channels last.

Written from reference/mmaction2_cost.md sections 1, 1a, 3 and 9. Layout:

  stem    conv1: ConvModule, kernel `conv1_kernel`, stride (conv1_stride_t, conv1_stride_s,
          conv1_stride_s), padding (k - 1) // 2 per axis; then (`with_pool1`) a max-pool
          (1, 3, 3) with stride (pool1_stride_t, pool1_stride_s, pool1_stride_s), padding
          (0, 1, 1).
  stages  layer1..layer4 of BasicBlock3d (depth 18/34) or Bottleneck3d (50/101/152),
          `base_channels * 2**i` planes; the first block of a stage takes the spatial
          stride (`strides`) and `temporal_strides`, and a `downsample` ConvModule 1x1x1
          (stride (t, s, s), no ReLU) when a stride is not 1 or the channels change.
  pool2   (`with_pool2`) max-pool (2, 1, 1) / (2, 1, 1) after layer1: T halves.

Bottleneck3d ("pytorch" style: the strides on conv2): `inflate_style` '3x1x1' gives conv1
(3, 1, 1) and conv2 (1, 3, 3); '3x3x3' gives conv1 1x1x1 and conv2 (3, 3, 3); a block that
is not inflated has conv1 1x1x1 and conv2 (1, 3, 3); conv3 1x1x1 without ReLU. BasicBlock3d:
conv1 (with the strides) and conv2 are (3, 3, 3) when inflated, else (1, 3, 3). out =
ReLU(residual + shortcut), then the block's non-local block (`non_local_block`, mmcv's
NonLocal3d: models/temporal/non_local.py's `NonLocal`) when its flag is set.

`inflate` and `non_local` hold one entry per stage: an int for every block of the stage,
or a tuple with one 0/1 per block, as MMAction2 writes them (I3D-R50: inflate ((1, 1, 1),
(1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))). `non_local_cfg`: mode (embedded_gaussian,
gaussian, dot_product), use_scale, sub_sample, reduction. BatchNorm eps `bn_eps` (1e-5;
CSN 1e-3); the non-local blocks' BN keeps mmcv's 1e-5.

Flax names mirror the upstream state_dict, so conversion is a rename: `conv1/conv`,
`conv1/bn`, `layer{s}_{i}/conv{k}/{conv,bn}`, `layer{s}_{i}/downsample/{conv,bn}`,
`layer{s}_{i}/non_local_block/{g,theta,phi,out_conv,out_bn}`.

Training policy (backbones/trunk.py): `frozen_stages` k >= 0 freezes conv1 and layer1..k
(no gradient, BN in eval mode), `norm_eval` keeps every BN in eval mode, `partial_bn`
freezes every BN but the stem's, `bn_momentum` in flax's convention.
`zero_init_residual` starts the last BN gain of every block at 0 (MMAction2's default for
ResNet3d trained from scratch). `remat` recomputes block activations in the backward pass.

Registered backbones: 'resnet3d' (MMAction2 ResNet3d's defaults) and 'c2d' (MMAction2
1.x's C2D: ResNet-50 per frame, conv1 (1, 7, 7), an unpadded (1, 3, 3) max-pool, pool2
after layer1, no inflation; its 2D checkpoint kernels gain a T axis of 1 on conversion).

Extension points, for the 3D families built on this trunk (SlowFast pathways, CSN,
R(2+1)D, CoST):

  * Blocks build every ConvModule through `Block3d.conv_module(...)` (R(2+1)D: a
    factorised conv there), conv2 through `Bottleneck3d.conv2_module(...)` (CSN's
    depthwise / ip sequence, CoST's collaborative conv), their kernel shapes through
    `kernels()` (new inflate styles) and the shortcut through `downsample_module()`.
    A trunk picks its block classes with the class attributes `basic_block` /
    `bottleneck` (its own block fields go through `make_block(spec, **fields)`) and
    lists the inflate styles it accepts in `inflate_styles`.
  * The trunk builds its stem through `make_stem(**fields)` (a `stem_module`, by default
    ConvBN3d) and pools it in `stem_pool(x)` (C2D's unpadded pool, CoST's (2, 3, 3)
    pool); `block_specs()` gives every block's planes, strides, inflation and non-local
    flag.
  * The forward pass is `stem(x, train)`, then `stage(x, s, train)` for s = 1..4, with
    `pool2` after stage 1 (`__call__`); a two-pathway model (SlowFast) holds two trunks as
    children and calls their `stem` / `stage` itself, concatenating lateral connections
    between stages. Blocks take their input width from their input, so a stage fed
    widened (lateral-concatenated) features sizes its first block and its downsample by
    itself, as MMAction2's `lateral_inplanes` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional, Sequence

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.backbones.resnet import RESNET_SPECS
from vidjax.models.backbones.trunk import (Trunk, build_trunk, stage_of_layer, trunk_defaults,
                                           trunk_frozen_rule)
from vidjax.models.layers import NormBlock
from vidjax.models.layers3d import (ConvBN3d, max_pool3d_spatial, max_pool3d_temporal,
                                    triple)
from vidjax.models.registry import register
from vidjax.models.temporal.non_local import MODES as NON_LOCAL_MODES
from vidjax.models.temporal.non_local import NonLocal

INFLATE_STYLES = ("3x1x1", "3x3x3")
_EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclasses.dataclass(frozen=True)
class NonLocalSettings:
  """mmcv NonLocal3d's options (MMAction2's `non_local_cfg`)."""
  mode: str = "embedded_gaussian"
  use_scale: bool = False
  sub_sample: bool = True
  reduction: int = 2


@dataclasses.dataclass(frozen=True)
class Block3dSpec:
  """One residual block: where it sits and how it is built.

  planes: inner width (Bottleneck) or width (BasicBlock); out_channels = planes *
  expansion; the strides apply to the first block of a stage only; inflate / non_local:
  the block's flags from the trunk's per-stage patterns.
  """
  stage: int
  index: int
  planes: int
  out_channels: int
  spatial_stride: int = 1
  temporal_stride: int = 1
  inflate: bool = True
  inflate_style: str = "3x1x1"
  non_local: bool = False

  @property
  def name(self) -> str:
    return f"layer{self.stage}_{self.index}"


class Block3d(NormBlock):
  """The residual frame shared by the 3D blocks: `residual(x)` + shortcut, ReLU, then the
  optional non-local block. Subclasses give `kernels()` and `residual()`."""
  spec: Optional[Block3dSpec] = None
  zero_init_residual: bool = False
  non_local_cfg: NonLocalSettings = NonLocalSettings()

  def conv_module(self, features: int, kernel: Sequence[int],
                  stride: Sequence[int] = (1, 1, 1), padding: Sequence[int] = (0, 0, 0), *,
                  name: str, activation: bool = True, last: bool = False) -> nn.Module:
    """Every ConvModule of the block (conv -> BN -> [ReLU]); `last` marks the residual
    branch's final one, whose BN gain starts at 0 under zero_init_residual."""
    zero = last and self.zero_init_residual
    return ConvBN3d(features, triple(kernel), triple(stride), triple(padding),
                    activation=activation,
                    bn_scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
                    name=name, **self.norm_fields())

  def downsample_module(self) -> nn.Module:
    s = self.spec
    return self.conv_module(s.out_channels, (1, 1, 1),
                            (s.temporal_stride, s.spatial_stride, s.spatial_stride),
                            name="downsample", activation=False)

  def non_local_module(self) -> nn.Module:
    c = self.non_local_cfg
    # mmcv's NonLocal3d keeps BN3d's eps whatever the trunk's; conv_out has no bias.
    return NonLocal(c.mode, c.reduction, c.sub_sample, c.use_scale, out_bias=False,
                    bn_eps=1e-5, bn_momentum=self.bn_momentum, name="non_local_block")

  def kernels(self) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """((kernel, padding) of conv1, (kernel, padding) of conv2)."""
    raise NotImplementedError

  def residual(self, x: jax.Array, train: bool) -> jax.Array:
    raise NotImplementedError

  def needs_downsample(self, in_channels: int) -> bool:
    s = self.spec
    return (s.spatial_stride != 1 or s.temporal_stride != 1
            or in_channels != s.out_channels)

  @nn.compact
  def __call__(self, x: jax.Array, bn_train: bool, nl_train: bool) -> jax.Array:
    """x: [N, T, H, W, C_in] -> [N, T / t, H / s, W / s, out_channels]."""
    y = self.residual(x, bn_train)
    identity = self.downsample_module()(x, bn_train) if self.needs_downsample(
        x.shape[-1]) else x
    y = nn.relu(y + identity)
    if self.spec.non_local:
      n, t = y.shape[:2]
      y = self.non_local_module()(y.reshape((n * t,) + y.shape[2:]), num_segments=t,
                                  train=nl_train).reshape(y.shape)
    return y


class BasicBlock3d(Block3d):
  """conv1 (strides) -> BN -> ReLU -> conv2 -> BN (R18/R34); (3, 3, 3) kernels when
  inflated, else (1, 3, 3)."""

  def kernels(self):
    if self.spec.inflate:
      return ((3, 3, 3), (1, 1, 1)), ((3, 3, 3), (1, 1, 1))
    return ((1, 3, 3), (0, 1, 1)), ((1, 3, 3), (0, 1, 1))

  def residual(self, x, train):
    s = self.spec
    (k1, p1), (k2, p2) = self.kernels()
    y = self.conv_module(s.planes, k1, (s.temporal_stride, s.spatial_stride,
                                        s.spatial_stride), p1, name="conv1")(x, train)
    return self.conv_module(s.out_channels, k2, (1, 1, 1), p2, name="conv2",
                            activation=False, last=True)(y, train)


class Bottleneck3d(Block3d):
  """conv1 -> conv2 (strides) -> conv3 (no ReLU), each conv -> BN; kernels by inflation."""

  def kernels(self):
    s = self.spec
    if not s.inflate:
      return ((1, 1, 1), (0, 0, 0)), ((1, 3, 3), (0, 1, 1))
    if s.inflate_style == "3x1x1":
      return ((3, 1, 1), (1, 0, 0)), ((1, 3, 3), (0, 1, 1))
    return ((1, 1, 1), (0, 0, 0)), ((3, 3, 3), (1, 1, 1))

  def conv2_module(self, kernel: Sequence[int], stride: Sequence[int],
                   padding: Sequence[int]) -> nn.Module:
    """The block's spatial (or spatio-temporal) conv, with ReLU."""
    return self.conv_module(self.spec.planes, kernel, stride, padding, name="conv2")

  def residual(self, x, train):
    s = self.spec
    (k1, p1), (k2, p2) = self.kernels()
    y = self.conv_module(s.planes, k1, (1, 1, 1), p1, name="conv1")(x, train)
    y = self.conv2_module(k2, (s.temporal_stride, s.spatial_stride, s.spatial_stride),
                          p2)(y, train)
    return self.conv_module(s.out_channels, (1, 1, 1), name="conv3", activation=False,
                            last=True)(y, train)


def stage_pattern(value: Any, num_blocks: int, field: str, stage: int) -> tuple[int, ...]:
  """One stage's entry of a per-stage pattern (`inflate`, `non_local`): an int for every
  block, or one 0/1 per block."""
  if isinstance(value, (int, bool)):
    return (int(value),) * num_blocks
  flags = tuple(int(v) for v in value)
  if len(flags) != num_blocks or any(f not in (0, 1) for f in flags):
    raise ValueError(f"model.backbone.{field}: stage {stage} entry {tuple(value)} must be "
                     f"0, 1 or one 0/1 flag per block ({num_blocks} blocks)")
  return flags


def fit_pattern(pattern: Sequence[Any], stage_blocks: Sequence[int]) -> tuple:
  """A per-stage pattern carried to other block counts (a smaller or deeper trunk of the
  same family): per-block tuples repeat cyclically or are cut; ints stay."""
  return tuple(v if isinstance(v, int) else tuple(v[i % len(v)] for i in range(n))
               for v, n in zip(pattern, stage_blocks))


class ResNet3d(Trunk):
  """MMAction2's ResNet3d trunk without pooling and fc (see the module docstring).

  `strides` are the spatial strides of layer1..layer4 (MMAction2's spatial_strides).
  """
  temporal_strides: Sequence[int] = (1, 1, 1, 1)
  base_channels: int = 64
  conv1_kernel: Sequence[int] = (3, 7, 7)
  conv1_stride_s: int = 2
  conv1_stride_t: int = 1
  pool1_stride_s: int = 2
  pool1_stride_t: int = 1
  with_pool1: bool = True
  with_pool2: bool = True
  inflate: Sequence[Any] = (1, 1, 1, 1)
  inflate_style: str = "3x1x1"
  non_local: Sequence[Any] = (0, 0, 0, 0)
  non_local_cfg: NonLocalSettings = NonLocalSettings()
  zero_init_residual: bool = True
  remat: bool = False
  out_stages: Sequence[int] = (4,)

  specs = RESNET_SPECS
  basic_block: ClassVar[type] = BasicBlock3d
  bottleneck: ClassVar[type] = Bottleneck3d
  stem_module: ClassVar[type] = ConvBN3d   # conv1: a ConvModule
  inflate_styles: ClassVar[tuple[str, ...]] = INFLATE_STYLES   # CoST adds its own

  @property
  def out_channels(self) -> int:
    kind, _ = self.specs[self.depth]
    return self.base_channels * 8 * _EXPANSION[kind]

  def block_specs(self) -> list[list[Block3dSpec]]:
    """Every block's spec, per stage; checks the per-stage patterns."""
    if self.depth not in self.specs:
      raise ValueError(f"{type(self).__name__} depth {self.depth} is not one of "
                       f"{sorted(self.specs)}")
    kind, stage_blocks = self.specs[self.depth]
    for field in ("strides", "temporal_strides", "inflate", "non_local"):
      if len(getattr(self, field)) != len(stage_blocks):
        raise ValueError(f"model.backbone.{field}={tuple(getattr(self, field))} needs one "
                         f"entry per stage ({len(stage_blocks)})")
    if self.inflate_style not in self.inflate_styles:
      raise ValueError(f"model.backbone.inflate_style={self.inflate_style!r}; expected one "
                       f"of {self.inflate_styles}")
    if self.non_local_cfg.mode not in NON_LOCAL_MODES:
      raise ValueError(f"model.backbone.non_local_cfg.mode={self.non_local_cfg.mode!r}; "
                       f"expected one of {NON_LOCAL_MODES}")
    specs = []
    for s, n in enumerate(stage_blocks, start=1):
      inflate = stage_pattern(self.inflate[s - 1], n, "inflate", s)
      non_local = stage_pattern(self.non_local[s - 1], n, "non_local", s)
      planes = self.base_channels * 2 ** (s - 1)
      specs.append([Block3dSpec(
          stage=s, index=i, planes=planes, out_channels=planes * _EXPANSION[kind],
          spatial_stride=int(self.strides[s - 1]) if i == 0 else 1,
          temporal_stride=int(self.temporal_strides[s - 1]) if i == 0 else 1,
          inflate=bool(inflate[i]), inflate_style=self.inflate_style,
          non_local=bool(non_local[i])) for i in range(n)])
    return specs

  def make_stem(self, **fields: Any) -> nn.Module:
    """conv1, a `stem_module` ('same' padding); `fields`: a subclass's own settings."""
    kernel = triple(self.conv1_kernel, "model.backbone.conv1_kernel")
    return self.stem_module(self.base_channels, kernel,
                            (self.conv1_stride_t, self.conv1_stride_s, self.conv1_stride_s),
                            tuple((k - 1) // 2 for k in kernel), bn_eps=self.bn_eps,
                            bn_momentum=self.bn_momentum, dtype=self.dtype, name="conv1",
                            **fields)

  def stem_pool(self, x: jax.Array, frames_picked: bool = False) -> jax.Array:
    """The (1, 3, 3) max-pool; `frames_picked`: the stem conv already kept only the
    frames its temporal stride takes (`stem_pool_frame_stride`)."""
    return max_pool3d_spatial(x, 3, (1 if frames_picked else self.pool1_stride_t,
                                     self.pool1_stride_s, self.pool1_stride_s), 1)

  def stem_pool_frame_stride(self) -> int:
    """The temporal stride of a stem pool whose time window is 1 frame (it only picks
    frames; I3D's 2), else 1. A subclass with its own `stem_pool` gets 1 unless it
    overrides this too."""
    own = type(self).stem_pool in (ResNet3d.stem_pool, C2D.stem_pool)
    return self.pool1_stride_t if own and self.with_pool1 else 1

  def make_block(self, spec: Block3dSpec, **fields: Any) -> nn.Module:
    """The block of `spec`; `fields`: a subclass's own block settings."""
    kind, _ = self.specs[self.depth]
    cls = self.basic_block if kind == "basic" else self.bottleneck
    if self.remat:  # bn_train and nl_train are Python values: static
      cls = nn.remat(cls, static_argnums=(2, 3))
    return cls(spec=spec, zero_init_residual=self.zero_init_residual,
               non_local_cfg=self.non_local_cfg, **self.block_norm(), **fields,
               name=spec.name)

  def setup(self):
    self.conv1 = self.make_stem()
    self.layers = [[self.make_block(b) for b in stage] for stage in self.block_specs()]

  def stem(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, T, H, W, C] normalised -> conv1 (+ max-pool) features."""
    bn_train = self.stage_train(0, train)
    # With running BN statistics each conv1 frame is independent of the others, so conv1
    # computes only the frames the pool keeps (half of I3D's stem), the same values.
    picked = 1 if bn_train else self.stem_pool_frame_stride()
    x = x.astype(self.dtype)
    x = self.conv1(x, bn_train, picked) if picked > 1 else self.conv1(x, bn_train)
    if self.with_pool1:
      x = self.stem_pool(x, frames_picked=True) if picked > 1 else self.stem_pool(x)
    return self.end_stage(x, 0)

  def stage(self, x: jax.Array, s: int, train: bool = False) -> jax.Array:
    """Stage s (1..4) on [N, T, H, W, C]."""
    for block in self.layers[s - 1]:
      x = block(x, self.bn_train(s, train), self.stage_train(s, train))
    return self.end_stage(x, s)

  def __call__(self, x: jax.Array, train: bool = False):
    """x: [N, T, H, W, 3] float (normalised) -> layer4 features [N, T', H/32, W/32, C_out]
    (a tuple of the `out_stages` when there are several)."""
    if x.ndim != 5:
      raise ValueError(f"{type(self).__name__} expects clips [N, T, H, W, C], got shape "
                       f"{x.shape}")
    self.check_input(x, 1)
    x = self.stem(x, train)
    outputs = []
    for s in range(1, len(self.layers) + 1):
      x = self.stage(x, s, train)
      if s == 1 and self.with_pool2:
        x = max_pool3d_temporal(x, "model.backbone.with_pool2")
      if s in self.out_stages:
        outputs.append(x)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


class C2D(ResNet3d):
  """MMAction2 1.x's C2D: the stem's max-pool has no padding (112 -> 55 px)."""

  def stem_pool(self, x: jax.Array, frames_picked: bool = False) -> jax.Array:
    return max_pool3d_spatial(x, 3, (1 if frames_picked else self.pool1_stride_t,
                                     self.pool1_stride_s, self.pool1_stride_s), 0)


def resnet3d_defaults(name: str = "resnet3d", **changes: Any) -> ml_collections.ConfigDict:
  """Every field of a ResNet3d backbone at MMAction2's ResNet3d defaults; `changes` sets
  a registered variant's own defaults."""
  cfg = trunk_defaults(
      name, depth=50,
      temporal_strides=(1, 1, 1, 1),
      base_channels=64,
      conv1_kernel=(3, 7, 7),
      conv1_stride_s=2,
      conv1_stride_t=1,
      pool1_stride_s=2,
      pool1_stride_t=1,
      with_pool1=True,
      with_pool2=True,
      inflate=(1, 1, 1, 1),     # per stage: an int, or one 0/1 per block
      inflate_style="3x1x1",    # 3x1x1 | 3x3x3
      non_local=(0, 0, 0, 0),   # per stage: an int, or one 0/1 per block
      non_local_cfg=ml_collections.ConfigDict(dict(
          mode="embedded_gaussian",   # embedded_gaussian | gaussian | dot_product
          use_scale=False,            # embedded_gaussian: / sqrt(C / reduction)
          sub_sample=True,            # max-pool (1, 2, 2) on phi and g
          reduction=2)),
      zero_init_residual=True,  # last BN gain of each block starts at 0 (from scratch)
      remat=False,
      out_stages=(4,))
  cfg.update(changes)
  return cfg


def c2d_defaults() -> ml_collections.ConfigDict:
  return resnet3d_defaults("c2d", conv1_kernel=(1, 7, 7), inflate=(0, 0, 0, 0),
                           zero_init_residual=False)


# Partial BN freezes the affines of every trunk BN but the stem's; non-local BNs train.
resnet3d_frozen_rule = trunk_frozen_rule(
    lambda top: stage_of_layer(top, stem=("conv1",)),
    lambda path: path[0] != "conv1" and len(path) >= 2 and path[-2] == "bn")


def _tuple(value: Any) -> Any:
  return value if isinstance(value, (int, bool)) else tuple(_tuple(v) for v in value)


def build_resnet3d_fields(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """The ResNet3d-specific module fields of a resolved config (besides the trunk's)."""
  stages = tuple(int(s) for s in cfg.out_stages)
  if not stages or any(s not in (1, 2, 3, 4) for s in stages):
    raise ValueError(f"model.backbone.out_stages={stages}: stages are 1..4")
  nl = cfg.non_local_cfg
  return dict(
      temporal_strides=tuple(int(s) for s in cfg.temporal_strides),
      base_channels=int(cfg.base_channels),
      conv1_kernel=triple(_tuple(cfg.conv1_kernel), "model.backbone.conv1_kernel"),
      conv1_stride_s=int(cfg.conv1_stride_s), conv1_stride_t=int(cfg.conv1_stride_t),
      pool1_stride_s=int(cfg.pool1_stride_s), pool1_stride_t=int(cfg.pool1_stride_t),
      with_pool1=bool(cfg.with_pool1), with_pool2=bool(cfg.with_pool2),
      inflate=_tuple(cfg.inflate), inflate_style=str(cfg.inflate_style),
      non_local=_tuple(cfg.non_local),
      non_local_cfg=NonLocalSettings(str(nl.mode), bool(nl.use_scale), bool(nl.sub_sample),
                                     int(nl.reduction)),
      zero_init_residual=bool(cfg.zero_init_residual), remat=bool(cfg.remat),
      out_stages=stages)


@register("backbone", "resnet3d", resnet3d_defaults, frozen_rule=resnet3d_frozen_rule)
def build_resnet3d(cfg: ml_collections.ConfigDict, dtype, **hooks) -> ResNet3d:
  if hooks:
    raise ValueError(f"model.backbone.name='resnet3d' has no hook slots; got {sorted(hooks)}")
  return build_trunk(ResNet3d, cfg, dtype, **build_resnet3d_fields(cfg))


@register("backbone", "c2d", c2d_defaults, frozen_rule=resnet3d_frozen_rule)
def build_c2d(cfg: ml_collections.ConfigDict, dtype, **hooks) -> C2D:
  if hooks:
    raise ValueError(f"model.backbone.name='c2d' has no hook slots; got {sorted(hooks)}")
  return build_trunk(C2D, cfg, dtype, **build_resnet3d_fields(cfg))
