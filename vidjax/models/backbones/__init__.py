"""Backbones: 2D trunks applied per frame (frames folded into the batch).

Registered for configs (`model.backbone.name`):
  resnet: depth, strides, frozen_stages, norm_eval, partial_bn, bn_eps, bn_momentum
  preact_resnet: the same fields (depth 50/101/152; TCPNet's R152, raw 0..255 input)
  tea_res2net: the same fields (depth 50/101; TCPNet's TEA Res2Net-50 26w x 4s)
  mobilenet_v2: width_mult, partial_bn, bn_eps, bn_momentum (TSM's MobileNetV2)
"""

import ml_collections

from vidjax.models.backbones.resnet import (RESNET_SPECS, BasicBlock, BlockInfo, Bottleneck, ResNet,
                                            is_frozen_param)
from vidjax.models.backbones import preact_resnet as _preact_resnet
from vidjax.models.backbones import res2net_tea as _res2net_tea
from vidjax.models.backbones import mobilenet_v2 as _mobilenet_v2
from vidjax.models.backbones.mobilenet_v2 import MobileNetV2
from vidjax.models.backbones.preact_resnet import PREACT_SPECS, PreActResNet
from vidjax.models.backbones.res2net_tea import TEA_SPECS, TEARes2Net
from vidjax.models.registry import register_backbone

__all__ = ["RESNET_SPECS", "BasicBlock", "BlockInfo", "Bottleneck", "ResNet", "is_frozen_param",
           "resnet_defaults", "PreActResNet", "preact_resnet_defaults", "TEARes2Net",
           "tea_res2net_defaults", "MobileNetV2", "mobilenet_v2_defaults",
           "FROZEN_PARAM_RULES"]

# backbone name -> is_frozen_param(path, frozen_stages, partial_bn): parameters that must
# get no update at all, weight decay included (e.g. preact_resnet's bn_data gamma).
FROZEN_PARAM_RULES = {
    "resnet": is_frozen_param,
    "preact_resnet": _preact_resnet.is_frozen_param,
    "tea_res2net": _res2net_tea.is_frozen_param,
    "mobilenet_v2": _mobilenet_v2.is_frozen_param,
}


def resnet_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="resnet",
      depth=50,                 # 18, 34, 50, 101, 152
      strides=(1, 2, 2, 2),     # first-block stride of layer1..layer4
      frozen_stages=-1,         # k >= 0: stem and layer1..k frozen (no grad, BN eval)
      norm_eval=False,          # every BN in eval mode during training
      partial_bn=False,         # TSN partial BN: only the stem BN trains
      bn_eps=1e-5,
      bn_momentum=0.9,          # flax convention (PyTorch momentum 0.1)
  ))


@register_backbone("resnet", resnet_defaults)
def build_resnet(cfg: ml_collections.ConfigDict, dtype, **hooks) -> ResNet:
  if cfg.depth not in RESNET_SPECS:
    raise ValueError(f"model.backbone.depth={cfg.depth} is not one of {sorted(RESNET_SPECS)}")
  return ResNet(depth=int(cfg.depth), strides=tuple(int(s) for s in cfg.strides),
                frozen_stages=int(cfg.frozen_stages), norm_eval=bool(cfg.norm_eval),
                partial_bn=bool(cfg.partial_bn), bn_eps=float(cfg.bn_eps),
                bn_momentum=float(cfg.bn_momentum), dtype=dtype, **hooks)


def preact_resnet_defaults() -> ml_collections.ConfigDict:
  """TCPNet's pre-activation ResNet-152 (reference/tcpnet.md 2.2)."""
  return ml_collections.ConfigDict(dict(
      name="preact_resnet",
      depth=152,                # 50, 101, 152 (bottleneck pre-activation specs)
      strides=(1, 2, 2, 1),     # TCPNet: layer4 stride 1, features at 1/16
      frozen_stages=-1,         # k >= 0: stem (bn_data, conv1, bn1) and layer1..k frozen
      norm_eval=False,          # every BN in eval mode during training
      partial_bn=False,         # TSN partial BN: only bn_data (the first BN) trains
      bn_eps=2e-5,              # MXNet origin: every trunk BN
      bn_momentum=0.9,          # flax convention (PyTorch momentum 0.1)
  ))


@register_backbone("preact_resnet", preact_resnet_defaults)
def build_preact_resnet(cfg: ml_collections.ConfigDict, dtype, **hooks) -> PreActResNet:
  if hooks:
    raise ValueError(f"preact_resnet has no hook slots, got {sorted(hooks)}")
  if cfg.depth not in PREACT_SPECS:
    raise ValueError(f"model.backbone.depth={cfg.depth} is not one of {sorted(PREACT_SPECS)}")
  return PreActResNet(depth=int(cfg.depth), strides=tuple(int(s) for s in cfg.strides),
                      frozen_stages=int(cfg.frozen_stages), norm_eval=bool(cfg.norm_eval),
                      partial_bn=bool(cfg.partial_bn), bn_eps=float(cfg.bn_eps),
                      bn_momentum=float(cfg.bn_momentum), dtype=dtype)


def tea_res2net_defaults() -> ml_collections.ConfigDict:
  """TCPNet's TEA Res2Net-50 26w x 4s with ME and MTA (reference/tcpnet.md 6); T comes
  from the model's num_segments at call time (upstream ships T = 8 and 16)."""
  return ml_collections.ConfigDict(dict(
      name="tea_res2net",
      depth=50,                 # 50 (TCPNet), 101
      strides=(1, 2, 2, 1),     # TCPNet: layer4 stride 1, features at 1/16
      frozen_stages=-1,         # k >= 0: stem and layer1..k frozen (no grad, BN eval)
      norm_eval=False,          # every BN in eval mode during training
      partial_bn=False,         # TSN partial BN: only the stem bn1 trains
      bn_eps=1e-5,
      bn_momentum=0.9,          # flax convention (PyTorch momentum 0.1)
  ))


@register_backbone("tea_res2net", tea_res2net_defaults)
def build_tea_res2net(cfg: ml_collections.ConfigDict, dtype, **hooks) -> TEARes2Net:
  if hooks:
    raise ValueError(f"tea_res2net has no hook slots, got {sorted(hooks)}")
  if cfg.depth not in TEA_SPECS:
    raise ValueError(f"model.backbone.depth={cfg.depth} is not one of {sorted(TEA_SPECS)}")
  return TEARes2Net(depth=int(cfg.depth), strides=tuple(int(s) for s in cfg.strides),
                    frozen_stages=int(cfg.frozen_stages), norm_eval=bool(cfg.norm_eval),
                    partial_bn=bool(cfg.partial_bn), bn_eps=float(cfg.bn_eps),
                    bn_momentum=float(cfg.bn_momentum), dtype=dtype)


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


@register_backbone("mobilenet_v2", mobilenet_v2_defaults)
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
