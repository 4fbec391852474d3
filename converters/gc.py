"""Source 'gc': GC-TSN, GC-TSM and ECal checkpoints of haoyanbin918/Group-Contextualization.

Key layout (reference/tsm_gc.md 2.3-2.5), after common's `module.` strip:

    base_model.<torchvision resnet key>     -> backbone.<vidjax resnet path>
    base_model.layerS.B.eft{1..4}.conv.weight -> backbone.layerS_B.mid.eft{k}.conv.weight
    base_model.layerS.B.eft{k}.bn1.*        -> backbone.layerS_B.mid.eft{k}.bn1.*
    base_model.layerS.B.eft.*               -> backbone.layerS_B.mid.eft.*  (single ECal)
    new_fc.{weight,bias}                    -> head.fc.*
    base_model.fc.{weight,bias}             -> head.fc.*   (dropout == 0)

The one explicit drop: ECal-S (upstream GC_S23DD) stores a BatchNorm2d `bn1` that its
forward never applies, so `eft3.bn1.*` (GC) or `eft.bn1.*` (ECal-S) are accepted and
ignored, only in blocks where the model has that ECal-S and only when their shape is the
calibrator's width. Everything else is strict (converters/common.py).

GC-TSN and GC-TSM checkpoints have the same keys (the shift is inline, no `.net` level):
whether frames are shifted comes from the config (`model.shift`), never from the keys.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import ml_collections
from flax import traverse_util

from converters.common import (ConversionError, assign, clean_state_dict,
                               rename_torchvision_resnet)

MODELS = ("recognizer2d/tsn",)

_BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  del model_config  # GC-TSN, GC-TSM and the ECal models share these rules
  for head in ("new_fc.", "base_model.fc."):
    if key.startswith(head):
      return "head.fc." + key[len(head):]
  if not key.startswith("base_model."):
    return None
  key = rename_torchvision_resnet(key[len("base_model."):])
  return "backbone." + re.sub(r"^(layer\d+_\d+)\.(eft\d*)\.", r"\1.mid.\2.", key)


def _spatial_calibrator_name(model_config: ml_collections.ConfigDict) -> Optional[str]:
  """The child name of ECal-S in a calibrated block ('eft3' for GC), or None."""
  from vidjax.models import resolve_model_config  # pylint: disable=g-import-not-at-top
  ecal = resolve_model_config(model_config).get("ecal")
  if ecal is None or not ecal.enabled:
    return None
  kinds = (ecal.calibrators,) if isinstance(ecal.calibrators, str) else tuple(ecal.calibrators)
  if "S" not in kinds:
    return None
  return "eft" if len(kinds) == 1 else f"eft{kinds.index('S') + 1}"


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  """Called by `converters.convert`: drops the unused ECal-S BatchNorm, the rest strictly."""
  cleaned = clean_state_dict(state_dict)
  name = _spatial_calibrator_name(model_config)
  expected = traverse_util.flatten_dict(dict(abstract))
  kept, problems = {}, []
  pattern = None if name is None else re.compile(
      rf"^base_model\.layer(\d+)\.(\d+)\.{name}\.bn1\.({'|'.join(_BN_LEAVES)})$")
  for key, value in cleaned.items():
    match = pattern.match(key) if pattern else None
    if match is None:
      kept[key] = value
      continue
    block = f"layer{match.group(1)}_{match.group(2)}"
    kernel = expected.get(("params", "backbone", block, "mid", name, "conv", "kernel"))
    if kernel is None:  # no ECal-S in this block: an ordinary unused key
      kept[key] = value
    elif tuple(value.shape) != (kernel.shape[-1],):
      problems.append(f"{key} {tuple(value.shape)}: the unused ECal-S BatchNorm of "
                      f"{block} must have shape ({kernel.shape[-1]},)")
  try:
    variables = assign(kept, abstract, lambda k: rename_key(k, model_config))
  except ConversionError as e:
    if not problems:
      raise
    raise ConversionError(f"{e}\n  {len(problems)} ECal-S BatchNorm shape mismatches:\n    "
                          + "\n    ".join(problems)) from None
  if problems:
    raise ConversionError("checkpoint does not fit the model:\n  "
                          f"{len(problems)} ECal-S BatchNorm shape mismatches:\n    "
                          + "\n    ".join(problems))
  return variables
