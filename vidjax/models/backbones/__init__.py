"""Backbones: 2D trunks applied per frame (frames folded into the batch).

Registered for configs (`model.backbone.name`):
  resnet: depth, strides, frozen_stages, norm_eval, partial_bn, bn_eps, bn_momentum
"""

import ml_collections

from vidjax.models.backbones.resnet import (RESNET_SPECS, BasicBlock, BlockInfo, Bottleneck, ResNet,
                                            is_frozen_param)
from vidjax.models.registry import register_backbone

__all__ = ["RESNET_SPECS", "BasicBlock", "BlockInfo", "Bottleneck", "ResNet", "is_frozen_param",
           "resnet_defaults"]


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
