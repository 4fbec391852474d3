"""Source 'mmaction2': MMAction2 0.x and 1.x recognizer checkpoints (the same keys in both,
reference/mmaction2_cost.md section 0), as `{'state_dict': ..., 'meta': ...}` or a bare
state_dict; after common's `module.` strip.

3D recognizers (`recognizer3d/i3d`: backbones `resnet3d` and `c2d`):

    backbone.conv1.{conv,bn}.*                    -> backbone.conv1.{conv,bn}.*
    backbone.layer{s}.{i}.conv{k}.{conv,bn}.*     -> backbone.layer{s}_{i}.conv{k}.{conv,bn}.*
    backbone.layer{s}.{i}.downsample.{conv,bn}.*  -> backbone.layer{s}_{i}.downsample.*
    backbone.layer{s}.{i}.non_local_block.g[.0].conv.*   -> ...non_local_block.g.*
    ...non_local_block.theta.conv.*                      -> ...non_local_block.theta.*
    ...non_local_block.phi[.0].conv.*                    -> ...non_local_block.phi.*
    ...non_local_block.conv_out.conv.*                   -> ...non_local_block.out_conv.*
    ...non_local_block.conv_out.bn.*                     -> ...non_local_block.out_bn.*
    cls_head.fc_cls.*                             -> head.fc.*

SlowFast (`recognizer3d/slowfast`, backbone `slowfast`): each pathway as ResNet3d above,
plus the slow pathway's lateral convs, whose names need no change:

    backbone.{slow,fast}_path.<ResNet3d key>      -> backbone.{slow,fast}_path.<as above>
    backbone.slow_path.conv1_lateral.{conv,bn}.*  -> backbone.slow_path.conv1_lateral.*
    backbone.slow_path.layer{s}_lateral.{conv,bn}.*  -> ...slow_path.layer{s}_lateral.*

C2D's backbone is MMAction2's 2D ResNet: its 4-D conv kernels (O, I, kH, kW) get a time
axis of 1, and only there (a 4-D kernel for an inflated 3D trunk is an error).

2D recognizers (`recognizer2d/tsn`, backbone `resnet`: C2D-nopool, TSN-style models of
MMAction2's 2D ResNet) map the ConvModules onto torchvision names:

    backbone.conv1.conv.* / .bn.*                 -> backbone.conv1.* / backbone.bn1.*
    backbone.layer{s}.{i}.conv{k}.conv.* / .bn.*  -> backbone.layer{s}_{i}.conv{k}.* / .bn{k}.*
    backbone.layer{s}.{i}.downsample.conv.* / .bn.*  -> ...downsample_conv.* / downsample_bn.*
    cls_head.fc_cls.*                             -> head.fc.*

`data_preprocessor.mean` / `.std` (1.x, when not published away) must equal the config's
`model.pixel_mean` / `pixel_std` (0..255 units), or the conversion fails; they are no
variables.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np
from flax import traverse_util

from converters.common import (ConversionError, assign, clean_state_dict, rename_by_rules,
                               rename_torchvision_resnet)

MODELS = ("recognizer3d/i3d", "recognizer2d/tsn", "recognizer3d/slowfast")
BACKBONES_3D = ("resnet3d", "c2d")

_NL_RULES = (
    (r"\.non_local_block\.(g|phi)(\.0)?\.conv\.", r".non_local_block.\1."),
    (r"\.non_local_block\.theta\.conv\.", ".non_local_block.theta."),
    (r"\.non_local_block\.conv_out\.conv\.", ".non_local_block.out_conv."),
    (r"\.non_local_block\.conv_out\.bn\.", ".non_local_block.out_bn."),
)
_PREPROCESSOR = ("data_preprocessor.mean", "data_preprocessor.std")


def _rename_3d(key: str) -> Optional[str]:
  key = re.sub(r"^layer(\d+)\.(\d+)\.", r"layer\1_\2.", key)
  if ".non_local_block." in key:
    return rename_by_rules(_NL_RULES, key)
  return key


def _rename_2d(key: str) -> Optional[str]:
  key = re.sub(r"^conv1\.conv\.", "conv1.", key)
  key = re.sub(r"^conv1\.bn\.", "bn1.", key)
  key = rename_torchvision_resnet(key)
  key = re.sub(r"^(layer\d+_\d+)\.conv(\d)\.conv\.", r"\1.conv\2.", key)
  key = re.sub(r"^(layer\d+_\d+)\.conv(\d)\.bn\.", r"\1.bn\2.", key)
  key = re.sub(r"^(layer\d+_\d+)\.downsample\.conv\.", r"\1.downsample_conv.", key)
  return re.sub(r"^(layer\d+_\d+)\.downsample\.bn\.", r"\1.downsample_bn.", key)


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  if key.startswith("cls_head.fc_cls."):
    return "head.fc." + key[len("cls_head.fc_cls."):]
  if not key.startswith("backbone."):
    return None
  key = key[len("backbone."):]
  backbone = model_config.backbone.name
  if backbone in BACKBONES_3D:
    path = _rename_3d(key)
  elif backbone == "slowfast":
    path = _rename_slowfast(key)
  elif backbone == "resnet":
    path = _rename_2d(key)
  else:
    raise ValueError(f"source 'mmaction2' reads ResNet3d, C2D, SlowFast and 2D ResNet "
                     f"checkpoints, not "
                     f"model.backbone.name={backbone!r}")
  return None if path is None else "backbone." + path


def _rename_slowfast(key: str) -> Optional[str]:
  """A SlowFast key below `backbone.`: its pathway's prefix, then the ResNet3d rules."""
  pathway = re.match(r"^(slow_path|fast_path)\.", key)
  if pathway is None:
    return None
  path = _rename_3d(key[pathway.end():])
  return None if path is None else pathway.group(0) + path


def unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
  """An MMAction2 checkpoint `{'state_dict': ..., 'meta': ...}` -> its state_dict; a bare
  state_dict as it is."""
  inner = checkpoint.get("state_dict") if hasattr(checkpoint, "get") else None
  return inner if isinstance(inner, Mapping) else checkpoint


def _check_preprocessor(cleaned: dict, model_config: ml_collections.ConfigDict) -> None:
  """Consumes the data preprocessor's mean / std, which must match the config's."""
  problems = []
  for key, field in zip(_PREPROCESSOR, ("pixel_mean", "pixel_std")):
    if key not in cleaned:
      continue
    value = np.asarray(cleaned.pop(key), np.float64).reshape(-1)
    want = model_config.get(field)
    if want is None or value.shape != (len(want),) or not np.allclose(value, want, atol=1e-3):
      problems.append(f"{key} {tuple(np.round(value, 3))} != model.{field} {want}")
  if problems:
    raise ConversionError("checkpoint does not fit the model:\n  "
                          f"{len(problems)} preprocessor mismatches:\n    "
                          + "\n    ".join(problems))


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  """Called by `converters.convert`: unwraps the checkpoint, checks the preprocessor,
  gives C2D's 2D kernels their time axis, then assigns strictly."""
  from vidjax import models  # pylint: disable=g-import-not-at-top
  resolved = models.resolve_model_config(model_config)
  cleaned = clean_state_dict(unwrap(state_dict))
  _check_preprocessor(cleaned, resolved)
  if resolved.backbone.name == "c2d":
    expected = traverse_util.flatten_dict(dict(abstract))
    for key, value in cleaned.items():
      path = rename_key(key, resolved)
      if value.ndim == 4 and path is not None and path.endswith(".weight"):
        target = ("params",) + tuple(path.split(".")[:-1]) + ("kernel",)
        if target in expected and len(expected[target].shape) == 5:
          cleaned[key] = value[:, :, None]
  return assign(cleaned, abstract, lambda key: rename_key(key, resolved))


# --- CSN and R(2+1)D: their flax names mirror the upstream keys (`conv2.0.conv`, --------
# `conv1.conv.conv_s`, `conv1.conv.bn_s`), so ResNet3d's rename reads them.
BACKBONES_3D += ("csn", "r2plus1d")


# --- C3D and X3D: flax names mirror the upstream keys (`conv1a.conv`, `fc6`, `conv1_s.conv`,
# `layer1.0.se_module.fc1`), so ResNet3d's rename reads their backbones; X3DHead's fc1 / fc2
# keep their names:
#
#     cls_head.fc1.weight (no bias), cls_head.fc2.*  -> head.fc1.*, head.fc2.*
#
# C3D's fc6 needs no permutation: the model flattens pool5 in PyTorch's (C, T, H, W) order.
MODELS += ("recognizer3d/x3d",)
BACKBONES_3D += ("c3d", "x3d")
_rename_before_x3d = rename_key


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:  # noqa: F811
  match = re.match(r"^cls_head\.(fc[12])\.", key)
  if match and model_config.head.name == "x3d":
    return f"head.{match.group(1)}." + key[match.end():]
  return _rename_before_x3d(key, model_config)


# --- TIN and TANet (`recognizer2d/tsn` with `model.tin` / `model.tam`): the wrappers around
# a block's parts are dropped, the temporal modules go to their hook slots:
#
#     backbone.layer{s}.{i}.conv1.conv.net2.weight  -> backbone.layer{s}_{i}.conv1.weight
#     backbone.layer{s}.{i}.conv1.conv.net1.<rest>  -> backbone.layer{s}_{i}.temporal.<rest>
#       (<rest>: offset_net.{conv,fc1,fc2}.*, weight_net.conv.*)
#     backbone.layer{s}.{i}.block.<block key>       -> as the 2D ResNet's <block key>
#     backbone.layer{s}.{i}.tam.{G,L}.{j}.*         -> backbone.layer{s}_{i}.inner.{G,L}_{j}.*
_rename_before_tin_tam = rename_key


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:  # noqa: F811
  if model_config.backbone.name == "resnet" and key.startswith("backbone.layer"):
    block = re.match(r"^backbone\.layer(\d+)\.(\d+)\.", key)
    ours, rest = f"backbone.layer{block.group(1)}_{block.group(2)}.", key[block.end():]
    if rest.startswith("conv1.conv.net1."):
      return ours + "temporal." + rest[len("conv1.conv.net1."):]
    tam = re.match(r"^tam\.([GL])\.(\d+)\.", rest)
    if tam:
      return ours + f"inner.{tam.group(1)}_{tam.group(2)}." + rest[tam.end():]
    rest = re.sub(r"^conv1\.conv\.net2\.", "conv1.conv.", rest)
    rest = re.sub(r"^block\.", "", rest)
    key = key[:block.end()] + rest
  return _rename_before_tin_tam(key, model_config)


# --- Audio TSN-R18 (`recognizer_audio/audio_tsn`): MMAction2's 2D ResNet (one input channel,
# conv1 (64, 1, 7, 7) -> kernel (7, 7, 1, 64)) and AudioTSNHead, the 2D rules above:
#
#     backbone.<2D ResNet key>  -> backbone.<as recognizer2d>
#     cls_head.fc_cls.*         -> head.fc.*
MODELS += ("recognizer_audio/audio_tsn",)


# --- TimeSformer (`recognizer3d/timesformer`, backbone `timesformer`): the layer list loses
# its `transformer_layers.layers` level, list indices join their names, torch's packed
# q / k / v tensors go to the `in_proj` Dense (reference/mmaction2_cost.md section 16):
#
#     backbone.patch_embed.projection.*      -> backbone.patch_embed.projection.*
#     backbone.{cls_token,pos_embed,time_embed}, backbone.norm.*   -> the same names
#     backbone.transformer_layers.layers.{i}.<rest>  -> backbone.layers_{i}.<rest>, where
#       attentions.{j}. / norms.{j}. / ffns.0.   -> attentions_{j}. / norms_{j}. / ffns_0.
#       ffns.0.layers.0.0.* / ffns.0.layers.1.*  -> ffns_0.layers_0_0.* / ffns_0.layers_1.*
#       attn.in_proj_weight / attn.in_proj_bias  -> attn.in_proj.weight / .bias
#     cls_head.fc_cls.*                      -> head.fc.*
MODELS += ("recognizer3d/timesformer",)
_TIMESFORMER_RULES = (
    (r"^transformer_layers\.layers\.(\d+)\.", r"layers_\1."),
    (r"\.(attentions|norms|ffns)\.(\d+)\.", r".\1_\2."),
    (r"\.ffns_0\.layers\.0\.0\.", ".ffns_0.layers_0_0."),
    (r"\.ffns_0\.layers\.1\.", ".ffns_0.layers_1."),
    (r"\.attn\.in_proj_(weight|bias)$", r".attn.in_proj.\1"),
)
_rename_before_timesformer = rename_key


def _rename_timesformer(key: str) -> str:
  for pattern, replacement in _TIMESFORMER_RULES:
    key = re.sub(pattern, replacement, key)
  return key


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:  # noqa: F811
  if model_config.backbone.name == "timesformer" and key.startswith("backbone."):
    return "backbone." + _rename_timesformer(key[len("backbone."):])
  return _rename_before_timesformer(key, model_config)

# --- TRN and TPN (`recognizer2d/trn`; TPN: `model.neck.name = "tpn"` on `recognizer3d/i3d`
# or `recognizer2d/i3d`, the TPNHead). TRNHead's relation MLPs and TPN's neck get flat
# flax names; MMAction2's TSM wraps each shifted conv1 in `.net`:
#
#     cls_head.consensus.fc_fusion_scales.{i}.{j}.*  -> head.fc_fusion_scales_{i}_{j}.*
#     backbone.layer{s}.{i}.conv1.conv.net.weight    -> backbone.layer{s}_{i}.conv1.weight
#     neck.spatial_modulation.spatial_modulation.{i}.{j}.{conv,bn}.*
#                                                    -> neck.spatial_modulation_{i}_{j}.*
#     neck.temporal_modulation_ops.{i}.conv.conv.*   -> neck.temporal_modulation_{i}.conv.*
#     neck.level_fusion_{k}.downsamples.{i}.conv.{conv,bn}.*
#                                                    -> neck.level_fusion_{k}.downsamples_{i}.*
#     neck.downsample_ops.{i}.conv.conv.*            -> neck.downsample_ops_{i}.conv.*
#     neck.{level_fusion_{k}.fusion_conv,pyramid_fusion,aux_head.conv}.{conv,bn}.*,
#     neck.aux_head.fc.*                             -> the same names
#
# TPNHead's fcn test creates `cls_head.new_cls.*` (fc_cls as a 1x1x1 conv) on its first
# test forward, so checkpoints saved after a test hold it: accepted when it equals fc_cls.
MODELS += ("recognizer2d/trn", "recognizer2d/i3d")
_TPN_RULES = (
    (r"^neck\.spatial_modulation\.spatial_modulation\.(\d+)\.(\d+)\.",
     r"neck.spatial_modulation_\1_\2."),
    (r"^neck\.temporal_modulation_ops\.(\d+)\.conv\.", r"neck.temporal_modulation_\1."),
    (r"^neck\.level_fusion_(\d)\.downsamples\.(\d+)\.conv\.",
     r"neck.level_fusion_\1.downsamples_\2."),
    (r"^neck\.downsample_ops\.(\d+)\.conv\.", r"neck.downsample_ops_\1."),
    (r"^neck\.(level_fusion_\d\.fusion_conv|pyramid_fusion|aux_head)\.", r"neck.\1."),
)
_rename_before_trn_tpn = rename_key


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:  # noqa: F811
  relation = re.match(r"^cls_head\.consensus\.fc_fusion_scales\.(\d+)\.(\d+)\.", key)
  if relation and model_config.head.name == "trn":
    return f"head.fc_fusion_scales_{relation.group(1)}_{relation.group(2)}." + key[
        relation.end():]
  if key.startswith("neck."):
    return rename_by_rules(_TPN_RULES, key) if model_config.neck.name == "tpn" else None
  shift = model_config.get("shift")
  if shift is not None and shift.enabled and model_config.backbone.name == "resnet":
    key = re.sub(r"^(backbone\.layer\d+\.\d+\.conv1\.conv)\.net\.", r"\1.", key)
  return _rename_before_trn_tpn(key, model_config)


_convert_before_tpn = convert_variables


def convert_variables(state_dict: Mapping[str, Any],   # noqa: F811
                      model_config: ml_collections.ConfigDict, abstract: Mapping[str, Any]
                      ) -> dict:
  """`convert_variables`, after dropping TPNHead's fcn-test copy of fc_cls (an error when
  it is not a copy)."""
  cleaned = clean_state_dict(unwrap(state_dict))
  copies = {k: cleaned.pop(k) for k in ("cls_head.new_cls.weight", "cls_head.new_cls.bias")
            if k in cleaned}
  for key, value in copies.items():
    fc = cleaned.get(key.replace("new_cls", "fc_cls"))
    if fc is None or value.size != fc.size or not np.array_equal(value.reshape(fc.shape), fc):
      raise ConversionError(f"checkpoint does not fit the model:\n  {key} "
                            f"{tuple(value.shape)} is not TPNHead's copy of "
                            f"{key.replace('new_cls', 'fc_cls')}")
  return _convert_before_tpn(cleaned, model_config, abstract)
