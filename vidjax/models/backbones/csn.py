"""MMAction2's ResNet3dCSN (channel-separated networks: ir-CSN / ip-CSN) on clips
[N, T, H, W, C], built on the ResNet3d trunk (resnet3d.py).

Written from reference/mmaction2_cost.md section 5. The trunk is ResNet3d-50/101/152
with every block inflated in the 3x3x3 style (conv1 1x1x1, conv2 3x3x3 padding 1), conv1
(3, 7, 7) with stride (1, 2, 2), the padded (1, 3, 3) max-pool, no pool2, spatial strides
(1, 2, 2, 2) and temporal strides (1, 2, 2, 2) (on conv2 and the downsample of the first
block of layer2..4) and every BatchNorm at eps 1e-3. Each bottleneck's conv2 is a
sequence, so its names carry an index:

  ir  conv2/0: depthwise (3, 3, 3) conv (groups = planes, the strides) -> BN -> ReLU
  ip  conv2/0: 1x1x1 conv planes -> planes -> BN, no ReLU;
      conv2/1: the depthwise conv -> BN -> ReLU

`bn_frozen` (with `norm_eval`, as MMAction2's "bnfrozen" recipes set both): every BN of
the trunk stays in eval mode in training and its scale and bias get no update (no weight
decay either: upstream takes them out of the optimiser). It changes nothing at test time.

Registered backbone: 'csn'. Flax names mirror the upstream state_dict
(`layer{s}_{i}/conv2/0/conv/kernel`), so conversion is ResNet3d's rename.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.backbones.resnet import RESNET_SPECS
from vidjax.models.backbones.resnet3d import (Bottleneck3d, ResNet3d, build_resnet3d_fields,
                                              resnet3d_defaults, resnet3d_frozen_rule)
from vidjax.models.backbones.trunk import build_trunk
from vidjax.models.layers import NormBlock
from vidjax.models.layers3d import ConvBN3d, triple
from vidjax.models.registry import register

BOTTLENECK_MODES = ("ir", "ip")


class CSNConv2(NormBlock):
  """A CSN bottleneck's conv2: [ip: 1x1x1 ConvModule without ReLU (`0`)] then the
  depthwise ConvModule with the strides and ReLU (`0` for ir, `1` for ip)."""
  features: int
  kernel_size: tuple[int, int, int]
  strides: tuple[int, int, int]
  padding: tuple[int, int, int]
  bottleneck_mode: str = "ir"
  bn_eps: float = dataclasses.field(default=1e-3, kw_only=True)   # CSN's every BN

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, T, H, W, planes] -> [N, T / t, H / s, W / s, planes]."""
    index = 0
    if self.bottleneck_mode == "ip":
      x = ConvBN3d(self.features, (1, 1, 1), activation=False, name="0",
                   **self.norm_fields())(x, train)
      index = 1
    return ConvBN3d(self.features, self.kernel_size, self.strides, self.padding,
                    groups=self.features, name=str(index), **self.norm_fields())(x, train)


class CSNBottleneck3d(Bottleneck3d):
  """Bottleneck3d whose conv2 is CSN's channel-separated sequence (`bottleneck_mode`)."""
  bottleneck_mode: str = "ir"

  def conv2_module(self, kernel: Sequence[int], stride: Sequence[int],
                   padding: Sequence[int]) -> nn.Module:
    return CSNConv2(self.spec.planes, triple(kernel), triple(stride), triple(padding),
                    self.bottleneck_mode, name="conv2", **self.norm_fields())


class ResNet3dCSN(ResNet3d):
  """MMAction2's ResNet3dCSN trunk (see the module docstring); depths 50, 101, 152."""
  bottleneck_mode: str = "ir"
  bn_frozen: bool = False

  specs = {d: RESNET_SPECS[d] for d in (50, 101, 152)}
  bottleneck: ClassVar[type] = CSNBottleneck3d

  def block_norm(self) -> dict[str, Any]:
    # bn_frozen: the BN affines get no gradient either (the optimiser skips them too).
    return {**super().block_norm(), "freeze_bn_affine": self.partial_bn or self.bn_frozen}

  def make_stem(self) -> nn.Module:
    return super().make_stem(freeze_bn_affine=self.bn_frozen)

  def make_block(self, spec):
    if self.bottleneck_mode not in BOTTLENECK_MODES:
      raise ValueError(f"model.backbone.bottleneck_mode={self.bottleneck_mode!r}; expected "
                       f"one of {BOTTLENECK_MODES}")
    return super().make_block(spec, bottleneck_mode=self.bottleneck_mode)


def csn_defaults() -> ml_collections.ConfigDict:
  """ResNet3dCSN's defaults (ir-CSN-152, as MMAction2's ircsn_r152 model file)."""
  return resnet3d_defaults(
      "csn", depth=152, temporal_strides=(1, 2, 2, 2), conv1_kernel=(3, 7, 7),
      inflate=(1, 1, 1, 1), inflate_style="3x3x3", with_pool2=False, bn_eps=1e-3,
      zero_init_residual=False, bottleneck_mode="ir",  # ir | ip
      bn_frozen=False)  # with norm_eval: BN affines get no update


def _is_bn_affine(path: Sequence[str]) -> bool:
  return len(path) >= 2 and path[-2] == "bn" and path[-1] in ("scale", "bias")


def csn_frozen_rule(path: Sequence[str], cfg: ml_collections.ConfigDict) -> bool:
  """ResNet3d's rule, plus every BN scale and bias of the trunk under bn_frozen."""
  return (bool(cfg.bn_frozen) and _is_bn_affine(path)) or resnet3d_frozen_rule(path, cfg)


@register("backbone", "csn", csn_defaults, frozen_rule=csn_frozen_rule)
def build_csn(cfg: ml_collections.ConfigDict, dtype, **hooks) -> ResNet3dCSN:
  if hooks:
    raise ValueError(f"model.backbone.name='csn' has no hook slots; got {sorted(hooks)}")
  if cfg.bn_frozen and not cfg.norm_eval:
    raise ValueError("model.backbone.bn_frozen=True needs model.backbone.norm_eval=True "
                     "(MMAction2 freezes BN affines only for BNs kept in eval mode)")
  if cfg.bottleneck_mode not in BOTTLENECK_MODES:
    raise ValueError(f"model.backbone.bottleneck_mode={cfg.bottleneck_mode!r}; expected "
                     f"one of {BOTTLENECK_MODES}")
  return build_trunk(ResNet3dCSN, cfg, dtype, **build_resnet3d_fields(cfg),
                     bottleneck_mode=str(cfg.bottleneck_mode), bn_frozen=bool(cfg.bn_frozen))
