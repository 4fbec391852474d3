"""MobileNetV2 in the layout of TSM's archs/mobilenet_v2.py, with a temporal hook slot.

Written from reference/tsm_gc.md 1.7. `features_0` = 3x3/2 conv 3->32 (pad 1) + BN +
ReLU6; `features_1..17` = inverted residual blocks of the (t, c, n, s) table below;
`features_18` = 1x1 conv -> 1280 + BN + ReLU6. No pooling here (the recognizer averages
H, W). Names mirror the upstream Sequential indices so conversion is a rename:

  features.{0,18}.{j}       -> features_{0,18}/layer_{j}  (j: 0 conv, 1 BN)
  features.{i}.conv.{j}     -> features_{i}/conv_{j}      (the block's `conv` Sequential:
                               expand ratio t > 1: 0 pw conv, 1 BN, 3 dw 3x3 conv, 4 BN,
                               6 pw-linear conv, 7 BN; t == 1: 0 dw, 1 BN, 3 pw, 4 BN;
                               the ReLU6 indices hold no parameters)

A block adds its input iff stride 1 and in == out channels. Width: upstream's rule,
`make_divisible(c * width_mult, 8)` for blocks with t > 1 (the first conv stays 32 and
features_1 stays 16; the last conv is 1280 unless width_mult > 1).

Hook slot `temporal_module` (see backbones/resnet.py for the factory contract): TSM puts
its shift on the residual branch of every block with an expansion layer (t > 1) *and* a
residual connection, i.e. before `conv_0` of features 3, 5, 6, 8, 9, 10, 12, 13, 15, 16.
The factory is asked only for those blocks, with a BlockInfo whose `stage` is the table
row (1..7), `index` the block inside the row, `width` the hidden width and `expansion` t.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

import ml_collections

from vidjax.models.hooks import BlockInfo, HookFactory
from vidjax.models.layers import BatchNorm, Dtype, NormBlock, conv2d
from vidjax.models.registry import register

# (expand ratio t, channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# upstream initialises convs normal(0, sqrt(2 / (k*k*out))), i.e. He fan-out
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class DepthwiseConv2d(nn.Module):
  """`nn.Conv2d(C, C, k, stride, pad, groups=C, bias=False)` on NHWC, as a sum of k*k
  shifted, strided slices times per-channel taps. Kernel [k, k, 1, C] (torch (C, 1, k, k)).

  XLA:CPU's grouped convolution is slow, its gradient far slower (a TSM-MobileNetV2 train
  step on 2x2 frames of 32x32 took a minute); k*k multiply-adds are cheap on any backend.
  """
  kernel_size: int = 3
  stride: int = 1
  padding: int = 1
  dtype: Dtype = jnp.float32
  kernel_init: Any = _CONV_INIT

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, p = self.kernel_size, self.stride, self.padding
    c = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, 1, c), jnp.float32).astype(self.dtype)
    x = jnp.pad(x.astype(self.dtype), ((0, 0), (p, p), (p, p), (0, 0)))
    ho = (x.shape[1] - k) // s + 1
    wo = (x.shape[2] - k) // s + 1
    y = None
    for i in range(k):
      for j in range(k):
        tap = x[:, i:i + (ho - 1) * s + 1:s, j:j + (wo - 1) * s + 1:s] * kernel[i, j, 0]
        y = tap if y is None else y + tap
    return y


def make_divisible(x: float, divisible_by: int = 8) -> int:
  return int(math.ceil(x / divisible_by) * divisible_by)


def relu6(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0.0, 6.0)


class InvertedResidual(NormBlock):
  """[pw 1x1 -> BN -> ReLU6] -> dw 3x3 (stride) -> BN -> ReLU6 -> pw-linear -> BN (+ x)."""
  info: BlockInfo = dataclasses.field(kw_only=True)
  temporal_module: Optional[HookFactory] = None

  def setup(self):
    info = self.info
    hidden = info.width
    bn = self.norm

    def conv(features, kernel, stride, padding, groups, name):
      return conv2d(features, kernel, stride, padding, groups=groups, dtype=self.dtype,
                    kernel_init=_CONV_INIT, name=name)

    layers = []
    j = 0
    if info.expansion != 1:
      layers += [conv(hidden, 1, 1, 0, 1, "conv_0"), bn("conv_1"), relu6]
      j = 3
    layers += [DepthwiseConv2d(3, info.stride, 1, self.dtype, name=f"conv_{j}"),
               bn(f"conv_{j + 1}"), relu6,
               conv(info.out_channels, 1, 1, 0, 1, f"conv_{j + 3}"), bn(f"conv_{j + 4}")]
    self.layers = layers
    self.temporal = self.temporal_module(info) if self.temporal_module else None

  @property
  def use_residual(self) -> bool:
    return self.info.stride == 1 and self.info.in_channels == self.info.out_channels

  def __call__(self, x: jax.Array, num_segments: int, bn_train: bool,
               hook_train: bool) -> jax.Array:
    """x: [N*T, H, W, C_in] -> [N*T, H/stride, W/stride, C_out]."""
    y = x
    if self.temporal is not None:
      y = self.temporal(y, num_segments=num_segments, train=hook_train)
    for layer in self.layers:
      y = layer(y, bn_train) if isinstance(layer, BatchNorm) else layer(y)
    return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
  """TSM's MobileNetV2 trunk without pooling and classifier.

  Attributes:
    width_mult: channel multiplier (1.0 in every released TSM model).
    partial_bn: TSN's partial BN: only the first BN (features_0) uses batch statistics in
      training; every other BN uses its running statistics and its scale/bias get no
      gradient.
    bn_eps, bn_momentum, dtype: as in ResNet.
    temporal_module: hook factory for TSM's residual-branch shift (module docstring).
  """
  width_mult: float = 1.0
  partial_bn: bool = False
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32
  temporal_module: Optional[HookFactory] = None

  @property
  def out_channels(self) -> int:
    return make_divisible(1280 * self.width_mult) if self.width_mult > 1.0 else 1280

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, num_segments: int = 1) -> jax.Array:
    """x: [N*T, H, W, 3] float (normalised) -> [N*T, H/32, W/32, 1280]."""
    if x.shape[0] % num_segments:
      raise ValueError(f"batch {x.shape[0]} is not a multiple of num_segments={num_segments}")
    bn_train = train and not self.partial_bn
    x = x.astype(self.dtype)
    x = _ConvBNReLU6(bn_eps=self.bn_eps, bn_momentum=self.bn_momentum, dtype=self.dtype,
                     features=32, kernel=3,
                     stride=2, padding=1, name="features_0")(x, train)
    stage_sizes = tuple(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING)
    in_channels, block_id = 32, 0
    for row, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTING, start=1):
      out = make_divisible(c * self.width_mult) if t > 1 else c
      for i in range(n):
        info = BlockInfo(stage=row, index=i, block_id=block_id, stage_sizes=stage_sizes,
                         in_channels=in_channels, width=int(in_channels * t),
                         out_channels=out, stride=s if i == 0 else 1, expansion=t)
        shifted = t != 1 and info.stride == 1 and in_channels == out
        x = InvertedResidual(
            info=info, bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
            freeze_bn_affine=self.partial_bn, dtype=self.dtype,
            temporal_module=self.temporal_module if shifted else None,
            name=f"features_{block_id + 1}")(x, num_segments, bn_train, train)
        in_channels = out
        block_id += 1
    head = _ConvBNReLU6(bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
                        freeze_bn_affine=self.partial_bn, dtype=self.dtype,
                        features=self.out_channels, kernel=1, stride=1, padding=0,
                        name=f"features_{block_id + 1}")
    return head(x, bn_train)

class _ConvBNReLU6(NormBlock):
  """conv (`layer_0`) -> BN (`layer_1`) -> ReLU6: upstream `conv_bn` / `conv_1x1_bn`."""
  features: int = dataclasses.field(kw_only=True)
  kernel: int = dataclasses.field(kw_only=True)
  stride: int = dataclasses.field(kw_only=True)
  padding: int = dataclasses.field(kw_only=True)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = conv2d(self.features, self.kernel, self.stride, self.padding, dtype=self.dtype,
               kernel_init=_CONV_INIT, name="layer_0")(x)
    x = self.norm("layer_1")(x, train)
    return relu6(x)


def mobilenet_frozen_rule(path, cfg: ml_collections.ConfigDict) -> bool:
  """Partial BN: every BN's scale/bias but the first one's get no update at all."""
  if not cfg.partial_bn or path[0] == "features_0":
    return False
  return len(path) == 3 and path[-1] in ("scale", "bias") and (
      path[1].startswith("layer_1") or (path[1].startswith("conv_") and
                                        int(path[1][5:]) in (1, 4, 7)))


def mobilenet_v2_defaults() -> ml_collections.ConfigDict:
  """TSM's MobileNetV2 (reference/tsm_gc.md 1.7); takes the `temporal_module` hook only."""
  return ml_collections.ConfigDict(dict(
      name="mobilenet_v2",
      width_mult=1.0,           # channel multiplier (upstream make_divisible rule)
      frozen_stages=-1,         # not supported: must stay -1
      partial_bn=False,         # TSN partial BN: only features_0's BN trains
      bn_eps=1e-5,
      bn_momentum=0.9,          # flax convention (PyTorch momentum 0.1)
  ))


@register("backbone", "mobilenet_v2", mobilenet_v2_defaults, frozen_rule=mobilenet_frozen_rule)
def build_mobilenet_v2(cfg: ml_collections.ConfigDict, dtype, **hooks) -> MobileNetV2:
  extra = sorted(k for k in hooks if k != "temporal_module")
  if extra:
    raise ValueError(f"mobilenet_v2 offers only the 'temporal_module' hook slot (TSM's "
                     f"'blockres' shift), got {extra}; e.g. model.shift.place='block' or "
                     f"model.non_local need a ResNet backbone")
  if int(cfg.frozen_stages) != -1:
    raise ValueError(f"model.backbone.frozen_stages={cfg.frozen_stages}: mobilenet_v2 "
                     "supports only -1")
  return MobileNetV2(width_mult=float(cfg.width_mult), partial_bn=bool(cfg.partial_bn),
                     bn_eps=float(cfg.bn_eps), bn_momentum=float(cfg.bn_momentum),
                     dtype=dtype, **hooks)
