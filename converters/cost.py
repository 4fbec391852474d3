"""Source 'cost': checkpoints of CoST's release (hikvision-research/cost, an MMAction2
0.24.1 plug-in; reference/mmaction2_cost.md section 19), for backbone 'cost'.

MMAction2 0.x saves `{'state_dict': ..., 'meta': ..., 'optimizer': ...}`; a bare
state_dict is accepted too, and `module.` prefixes (DataParallel) are stripped by
common's clean step. The keys are MMAction2's ResNet3d keys plus the CoST conv's:

    backbone.conv1.{conv,bn}.*                    -> backbone.conv1.{conv,bn}.*
    backbone.layer{s}.{i}.conv{k}.{conv,bn}.*     -> backbone.layer{s}_{i}.conv{k}.{conv,bn}.*
    backbone.layer{s}.{i}.conv2.conv.weight       -> ...conv2.conv.kernel  (C_out, C_in, 1, 3, 3)
    backbone.layer{s}.{i}.conv2.conv.alpha        -> ...conv2.conv.alpha   (3, C_out), CoST(a)
    backbone.layer{s}.{i}.conv2.conv.fc{1,2}.weight -> ...conv2.conv.fc{1,2}.kernel, CoST(b)
    backbone.layer{s}.{i}.downsample.{conv,bn}.*  -> backbone.layer{s}_{i}.downsample.*
    cls_head.fc_cls.*                             -> head.fc.*

A checkpoint of another CoST variant (or of MMAction2's I3D) fails strictly: CoST(b)'s
fc weights for a CoST(a) config are unused keys and its alphas missing variables; an
I3D conv1 (5, 7, 7) kernel is a shape mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from converters.common import assign
from converters.mmaction2 import _rename_3d, unwrap

MODELS = ("recognizer3d/i3d",)


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> str | None:
  if model_config.backbone.name != "cost":
    raise ValueError(f"source 'cost' reads CoST's ResNet3dCoST checkpoints (model.backbone."
                     f"name='cost'), not model.backbone.name={model_config.backbone.name!r}")
  if key.startswith("cls_head.fc_cls."):
    return "head.fc." + key[len("cls_head.fc_cls."):]
  if not key.startswith("backbone."):
    return None
  path = _rename_3d(key[len("backbone."):])
  return None if path is None else "backbone." + path


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  """Called by `converters.convert`: unwraps the checkpoint, then assigns strictly."""
  from vidjax import models  # pylint: disable=g-import-not-at-top
  resolved = models.resolve_model_config(model_config)
  return assign(unwrap(state_dict), abstract, lambda key: rename_key(key, resolved))
