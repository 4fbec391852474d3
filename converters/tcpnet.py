"""Source 'tcpnet': checkpoints of the official TCPNet code (reference/tcpnet.md section 5).

Three layouts are read, told apart by their keys (after common's `module.` strip):

1. TCP checkpoints, new names (section 5.2):

       base_model.<backbone key>              -> backbone.<vidjax path>  (torchvision
                                                 ResNet, or converters/tcpnet_backbones.py
                                                 for preact_resnet and tea_res2net)
       base_model.TCP.layer_reduce{1,2}.*     -> head.layer_reduce{1,2}.*
       base_model.TCP.layer_reduce_bn{1,2}.*  -> head.layer_reduce_bn{1,2}.*
       base_model.TCP.TCP_att.TSA.*           -> head.att.tsa.*  (conv_phi_1, conv_phi_2,
                                                 conv_phi0, norm)
       base_model.TCP.TCP_att.TCA.g{1,2}.*    -> head.att.tca.g{1,2}.*
       base_model.TCP.TCP_att.conv_1d.*       -> head.att.conv_1d.*
       new_fc.*                               -> head.fc.*

2. TCP checkpoints, old "iSQRT" names (section 5.3; the released K400 models most likely
   use these). Rewritten to layout 1 first, as upstream's keys_mapping does:

       base_model.layer4.iSQRT.  (R50) / base_model.iSQRT.  (TEA, R152) -> base_model.TCP.
       layer_reduce{k}.0. -> layer_reduce{k}.      layer_reduce{k}.1. -> layer_reduce_bn{k}.
       att_module.conv_{1,2}          -> TCP_att.TCA.g{1,2}
       att_module.sp_att.conv_theta   -> TCP_att.TSA.conv_phi_1
       att_module.sp_att.conv_phi     -> TCP_att.TSA.conv_phi_2
       att_module.sp_att.conv_g       -> TCP_att.TSA.conv_phi0
       att_module.sp_att.*            -> TCP_att.TSA.*      att_module.* -> TCP_att.*

   Both layouts give identical variables (tests/test_tcp.py).

3. ImageNet "GCP" checkpoints used to initialise training (section 5.4): no
   `base_model.` or `new_fc.` key at all. Backbone keys at the top level (`conv1.*`,
   `layer1.*`, ...), the reduction layers as `layer_reduce*` (R50) or
   `iSQRT.layer_reduce{k}.{0,1}.*` (Res2Net, R152), and an ImageNet classifier `fc.*`,
   which is dropped: it is the only key allowed to go unused. The checkpoint holds no
   attention module and no classifier for our classes, so those variables take the
   model's initialisation (TCPHead's upstream init, seed 0; fc N(0, fc_init_std)); the
   result is a complete variables tree that `config.init_from` loads strictly. Every
   other key must map and every backbone and reduction variable must be filled.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from converters.common import (ConversionError, assign, clean_state_dict,
                               rename_torchvision_resnet)
from converters.tcpnet_backbones import BACKBONE_RENAMES as _TCPNET_BACKBONE_RENAMES

MODELS = ("recognizer2d/tcp",)

# model.backbone.name -> rename of a key relative to the upstream backbone module:
# resnet (R50, torchvision names), preact_resnet (R152), tea_res2net (TEA-R50).
_BACKBONE_RENAMES: dict[str, Callable[[str], Optional[str]]] = {
    "resnet": rename_torchvision_resnet,
    **_TCPNET_BACKBONE_RENAMES,
}

# Old attention names, tried in order (upstream keeps the first candidate that exists;
# on the keys of a real model the order below gives the same answer, since the specific
# `sp_att.conv_*` rules come before the generic `sp_att.` one).
_OLD_ATT_RULES = (
    ("att_module.conv_1.", "TCP_att.TCA.g1."),
    ("att_module.conv_2.", "TCP_att.TCA.g2."),
    ("att_module.sp_att.conv_theta.", "TCP_att.TSA.conv_phi_1."),
    ("att_module.sp_att.conv_phi.", "TCP_att.TSA.conv_phi_2."),
    ("att_module.sp_att.conv_g.", "TCP_att.TSA.conv_phi0."),
    ("att_module.sp_att.", "TCP_att.TSA."),
    ("att_module.", "TCP_att."),
)

_NEW_HEAD_RULES = (
    ("TCP_att.TSA.", "att.tsa."),
    ("TCP_att.TCA.", "att.tca."),
    ("TCP_att.", "att."),
)

# The only keys a GCP checkpoint may carry that the model does not take.
_GCP_DROPPED = re.compile(r"^fc\.(weight|bias)$")


def upgrade_old_key(key: str) -> str:
  """An old-layout ('iSQRT') key -> the new layout; other keys are returned unchanged."""
  for old in ("base_model.layer4.iSQRT.", "base_model.iSQRT."):
    if key.startswith(old):
      key = "base_model.TCP." + key[len(old):]
      break
  else:
    return key
  key = re.sub(r"^base_model\.TCP\.layer_reduce(\d)\.0\.", r"base_model.TCP.layer_reduce\1.", key)
  key = re.sub(r"^base_model\.TCP\.layer_reduce(\d)\.1\.", r"base_model.TCP.layer_reduce_bn\1.",
               key)
  tail = key[len("base_model.TCP."):]
  for old, new in _OLD_ATT_RULES:
    if tail.startswith(old):
      return "base_model.TCP." + new + tail[len(old):]
  return key


def _rename_head(tail: str) -> str:
  """A key relative to upstream's `TCP` module -> relative to our `tcp`."""
  for old, new in _NEW_HEAD_RULES:
    if tail.startswith(old):
      return new + tail[len(old):]
  return tail


def _rename_backbone(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  rename = _BACKBONE_RENAMES.get(model_config.backbone.name)
  path = None if rename is None else rename(key)
  return None if path is None else "backbone." + path


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  """A TCP checkpoint key (layout 1 or 2, `module.` stripped) -> our dotted path."""
  key = upgrade_old_key(key)
  if key.startswith("new_fc."):
    return "head.fc." + key[len("new_fc."):]
  if key.startswith("base_model.TCP."):
    return "head." + _rename_head(key[len("base_model.TCP."):])
  if key.startswith("base_model."):
    return _rename_backbone(key[len("base_model."):], model_config)
  return None


def rename_gcp_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  """An ImageNet GCP key (layout 3, `module.` stripped) -> our dotted path."""
  m = re.match(r"^iSQRT\.layer_reduce(\d)\.([01])\.(.*)$", key)
  if m:
    name = "layer_reduce" if m.group(2) == "0" else "layer_reduce_bn"
    return f"head.{name}{m.group(1)}.{m.group(3)}"
  if key.startswith("layer_reduce"):
    return "head." + key
  return _rename_backbone(key, model_config)


def is_gcp_layout(keys) -> bool:
  """True for an ImageNet GCP checkpoint: no key of a TCP video model."""
  return not any(k.startswith(("base_model.", "new_fc.")) for k in keys)


def _fresh_head_variables(module, abstract: Mapping[str, Any]) -> dict:
  """The model's initialisation of the TCP head: its pooling with seed 0, its classifier
  `fc` with seed 1, computed on the head alone: no backbone is run."""
  head = module.head.clone(parent=None)
  t = head.num_segments
  c_in = abstract["params"]["head"]["layer_reduce1"]["kernel"].shape[2]
  init = jax.jit(lambda k: head.init(k, jnp.zeros((t, 2, 2, c_in), jnp.float32),
                                     num_segments=t))
  pooling, classifier = init(jax.random.key(0)), init(jax.random.key(1))
  params = dict(pooling["params"], fc=classifier["params"]["fc"])
  out = {"params": {"head": params}, "batch_stats": {"head": pooling.get("batch_stats", {})}}
  return traverse_util.flatten_dict(out)


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  """Called by `converters.convert`: layouts 1 and 2 strictly; layout 3 (GCP) strictly for
  the backbone and reduction layers, the rest from the model's initialisation."""
  cleaned = clean_state_dict(state_dict)
  if not is_gcp_layout(cleaned):
    return assign(cleaned, abstract, lambda k: rename_key(k, model_config))

  from vidjax import models  # pylint: disable=g-import-not-at-top
  module = models.build_model(model_config)
  fresh = _fresh_head_variables(module, abstract)
  flat = traverse_util.flatten_dict(dict(abstract))
  # Variables a GCP checkpoint does not hold: the attention module and the classifier.
  from_init = {k for k in flat
               if k[1] == "head" and len(k) > 2 and k[2] in ("att", "fc")}
  wanted = traverse_util.unflatten_dict({k: v for k, v in flat.items() if k not in from_init})
  kept = {k: v for k, v in cleaned.items() if not _GCP_DROPPED.match(k)}
  loaded = traverse_util.flatten_dict(assign(kept, wanted,
                                             lambda k: rename_gcp_key(k, model_config)))
  problems = [("/".join(k) + f" {tuple(flat[k].shape)}") for k in sorted(from_init)
              if k not in fresh or fresh[k].shape != flat[k].shape]
  if problems:  # our own init disagrees with the model: a bug, not a checkpoint problem
    raise ConversionError("GCP init: cannot initialise:\n  " + "\n  ".join(problems))
  for k in from_init:
    loaded[k] = jnp.asarray(np.asarray(fresh[k]), flat[k].dtype)
  return traverse_util.unflatten_dict(loaded)
