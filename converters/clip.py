"""Source 'clip': OpenAI CLIP state_dicts (reference/tcclip.md 6.1), including the
released TorchScript archives (`ViT-B-16.pt`, read by converters/torch_io.py), whose
fp16 tensors become float32 (common.clean_state_dict).

Key layout -> vidjax's `clip` model (vidjax/models/clip/):

    visual.conv1.weight, visual.class_embedding, visual.positional_embedding,
    visual.ln_pre.*, visual.ln_post.*, visual.proj             -> visual.<same>
    visual.transformer.resblocks.{i}.attn.in_proj_{weight,bias} -> visual.resblocks_{i}.attn.in_proj.*
    visual.transformer.resblocks.{i}.<rest>                     -> visual.resblocks_{i}.<rest>
    transformer.resblocks.{i}.*                                 -> text.resblocks_{i}.* (as above)
    token_embedding.weight                                      -> text.token_embedding.embedding
    positional_embedding, ln_final.*, text_projection           -> text.<same>
    logit_scale                                                 -> logit_scale

For a `tc_clip` model (configs/tc_clip.py) the same checkpoint starts TC-CLIP as
upstream does (reference/tcclip.md 6.3, converters/tc_clip.py's `from_openai_clip`):
convert with the TC-CLIP config and train with `--config.init_from=DIR`.

The TorchScript state_dict may also hold the ints `input_resolution`, `context_length`
and `vocab_size` (OpenAI's build_model drops them): they are checked against the model
config (image size, text positions, vocabulary) and dropped.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from converters.common import (ConversionError, assign, clean_state_dict, strip_module_prefix,
                               to_numpy)

MODELS = ("clip", "tc_clip")

_META = ("input_resolution", "context_length", "vocab_size")


def block_key(rest: str) -> str:
  """A residual block's key rest with nn.MultiheadAttention's packed q/k/v renamed to our
  `attn.in_proj` child (the TC-CLIP source shares it)."""
  return re.sub(r"^attn\.in_proj_(weight|bias)$", r"attn.in_proj.\1", rest)


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  del model_config
  m = re.fullmatch(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)", key)
  if m:
    tower = "visual" if m[1] else "text"
    return f"{tower}.resblocks_{m[2]}.{block_key(m[3])}"
  if key == "token_embedding.weight":
    return "text.token_embedding.embedding"
  if key in ("positional_embedding", "text_projection") or key.startswith("ln_final."):
    return "text." + key
  if key == "logit_scale":
    return key
  if re.fullmatch(r"visual\.(conv1\.weight|class_embedding|positional_embedding|proj|"
                  r"ln_pre\.\w+|ln_post\.\w+)", key):
    return key
  return None


def _expected_meta(model_config: ml_collections.ConfigDict) -> dict[str, int]:
  from vidjax import models  # pylint: disable=g-import-not-at-top
  m = models.resolve_model_config(model_config)
  return {"input_resolution": m.vision.image_size, "context_length": m.text.max_length,
          "vocab_size": m.text.vocab_size}


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  """Drops TorchScript's size entries once they agree with the config, then assigns."""
  expected = _expected_meta(model_config)
  weights, bad = {}, []
  for key, value in state_dict.items():
    name = strip_module_prefix(key)
    if name in _META:
      got = int(np.asarray(to_numpy(value)).reshape(()))
      if got != expected[name]:
        bad.append(f"{key} = {got}, the model config has {expected[name]}")
      continue
    weights[key] = value
  if bad:
    raise ConversionError("checkpoint does not fit the model:\n  "
                          f"{len(bad)} size entries that differ from the config:\n    "
                          + "\n    ".join(bad))
  if models_name(model_config) == "tc_clip":
    from converters import tc_clip  # pylint: disable=g-import-not-at-top
    return tc_clip.convert_variables(
        tc_clip.from_openai_clip(clean_state_dict(weights), model_config), model_config,
        abstract)
  return assign(weights, abstract, lambda key: rename_key(key, model_config))


def models_name(model_config: ml_collections.ConfigDict) -> str:
  from vidjax import models  # pylint: disable=g-import-not-at-top
  return models.resolve_model_config(model_config).name
