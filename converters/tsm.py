"""Source 'tsm': TSN/TSM checkpoints of mit-han-lab/temporal-shift-module.

Key layout (reference/tsm_gc.md sections 1.2-1.8), after common's `module.` strip.
ResNet backbones (`model.backbone.name == 'resnet'`):

    base_model.<torchvision resnet key>  -> backbone.<vidjax resnet path>
    base_model.layer1.0.conv1.net.weight -> backbone.layer1_0.conv1.weight   (shift wrapper)
    base_model.layer1.0.net.conv1.weight -> backbone.layer1_0.conv1.weight   ('block' place)
    base_model.layer2.0.block.conv1.net.weight -> backbone.layer2_0.conv1.weight (NL wrapper)
    base_model.layer2.0.nl.g.0.{weight,bias}   -> backbone.layer2_0.post.g.*
    base_model.layer2.0.nl.theta.*             -> backbone.layer2_0.post.theta.*
    base_model.layer2.0.nl.phi.0.*             -> backbone.layer2_0.post.phi.*
    base_model.layer2.0.nl.W.0.*               -> backbone.layer2_0.post.out_conv.*
    base_model.layer2.0.nl.W.1.*   (BN3d)      -> backbone.layer2_0.post.out_bn.*

MobileNetV2 (`model.backbone.name == 'mobilenet_v2'`, archs/mobilenet_v2.py):

    base_model.features.{0,18}.{j}.*           -> backbone.features_{i}.layer_{j}.*
    base_model.features.{i}.conv.{j}[.net].*   -> backbone.features_{i}.conv_{j}.*

Classifier (both backbones):

    new_fc.{weight,bias}                 -> head.fc.*   (dropout > 0: the backbone's fc /
                                                          classifier is a Dropout)
    base_model.fc.*, base_model.classifier.*   -> head.fc.*   (dropout == 0; test_models.py
                                                          also renames classifier to new_fc)

The `.net` wrapper level says nothing we need: whether frames are shifted comes from the
model config, not from the keys (TSM's own `--tune_from` renames the same way).
"""

from __future__ import annotations

import re
from typing import Optional

import ml_collections

from converters.common import rename_by_rules, rename_torchvision_resnet, strip_infix

MODELS = ("recognizer2d/tsn",)

_NL_RULES = (
    (r"\.nl\.g\.0\.", ".post.g."),
    (r"\.nl\.theta\.", ".post.theta."),
    (r"\.nl\.phi\.0\.", ".post.phi."),
    (r"\.nl\.W\.0\.", ".post.out_conv."),
    (r"\.nl\.W\.1\.", ".post.out_bn."),
)


def _rename_resnet(key: str) -> Optional[str]:
  key = strip_infix(key, "block")   # NL3DWrapper(block) adds `.block`
  key = rename_torchvision_resnet(key)
  if ".nl." in key:
    return rename_by_rules(_NL_RULES, key)
  return key


def _rename_mobilenet_v2(key: str) -> Optional[str]:
  m = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(\w+)", key)
  if m:
    return f"features_{m[1]}.conv_{m[2]}.{m[3]}"
  m = re.fullmatch(r"features\.(\d+)\.(\d+)\.(\w+)", key)
  if m:
    return f"features_{m[1]}.layer_{m[2]}.{m[3]}"
  return None


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  key = strip_infix(key, "net")
  for head in ("new_fc.", "base_model.fc.", "base_model.classifier."):
    if key.startswith(head):
      return "head.fc." + key[len(head):]
  if not key.startswith("base_model."):
    return None
  key = key[len("base_model."):]
  backbone = model_config.backbone.name
  if backbone == "mobilenet_v2":
    path = _rename_mobilenet_v2(key)
  elif backbone == "resnet":
    path = _rename_resnet(key)
  else:
    raise ValueError(f"source 'tsm' reads ResNet and MobileNetV2 checkpoints, not "
                     f"model.backbone.name={backbone!r}")
  return None if path is None else "backbone." + path
