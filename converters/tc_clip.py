"""Source 'tc_clip': TC-CLIP's released checkpoints (reference/tcclip.md 6.2, 6.4), and
the start of TC-CLIP training from OpenAI CLIP (6.3, `from_openai_clip`, used by source
'clip' for a `tc_clip` model).

Key layout -> vidjax's `tc_clip` model (vidjax/models/clip/tc_clip.py), `module.` stripped:

    image_encoder.{conv1.weight, class_embedding, positional_embedding, proj,
                   ln_pre.*, ln_post.*}                         -> visual.<same>
    image_encoder.transformer.resblocks.{i}.attn.{q,k,v,out}_proj.*,
        .attn.local_global_bias_table (i >= 1), .ln_1/.ln_2.*, .mlp.*
                                                                -> visual.resblocks_{i}.<same>
    text_encoder.transformer.resblocks.{i}.*                    -> text.resblocks_{i}.*
    text_encoder.{positional_embedding, text_projection, ln_final.*} -> text.<same>
    text_encoder.prompt_generation_layer.0.*                    -> text.prompt_generation.*
    prompt_learner.ctx                                          -> prompt_learner.ctx
    logit_scale                                                 -> logit_scale
    prompt_learner.token_prefix, token_suffix                   dropped (the training
        classes' embedded prompts; the model embeds its own class names), once their
        context length agrees with model.context_length
    token_embedding.weight (from OpenAI CLIP's checkpoint)      -> text.token_embedding.embedding

TC-CLIP's checkpoints do not hold CLIP's token embedding table, which embeds new class
names: the CLI takes it from `--clip_checkpoint ViT-B-16.pt`; in Python add OpenAI's
`token_embedding.weight` to the state_dict.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from converters.clip import block_key
from converters.common import ConversionError, assign, clean_state_dict

MODELS = ("tc_clip",)

TOKEN_EMBEDDING = "token_embedding.weight"
_PROMPT_BUFFERS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
# Upstream draws the new bias tables from trunc_normal(std 0.02); a fixed seed here.
BIAS_TABLE_SEED = 0


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  del model_config
  m = re.fullmatch(r"image_encoder\.transformer\.resblocks\.(\d+)\.(.+)", key)
  if m:
    return f"visual.resblocks_{m[1]}.{m[2]}"
  m = re.fullmatch(r"image_encoder\.(conv1\.weight|class_embedding|positional_embedding|"
                   r"proj|ln_pre\.\w+|ln_post\.\w+)", key)
  if m:
    return "visual." + m[1]
  m = re.fullmatch(r"text_encoder\.transformer\.resblocks\.(\d+)\.(.+)", key)
  if m:
    return f"text.resblocks_{m[1]}.{block_key(m[2])}"
  m = re.fullmatch(r"text_encoder\.(positional_embedding|text_projection|ln_final\.\w+)", key)
  if m:
    return "text." + m[1]
  m = re.fullmatch(r"text_encoder\.prompt_generation_layer\.0\.(.+)", key)
  if m:
    return "text.prompt_generation." + block_key(m[1])
  if key == TOKEN_EMBEDDING:
    return "text.token_embedding.embedding"
  if key in ("prompt_learner.ctx", "logit_scale"):
    return key
  return None


def _resolved(model_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  from vidjax import models  # pylint: disable=g-import-not-at-top
  return models.resolve_model_config(model_config)


def drop_prompt_buffers(weights: dict[str, np.ndarray],
                        model_config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Removes the training classes' prompt buffers after checking their context length
  (suffix length + 1 + n_ctx) against model.context_length."""
  m = _resolved(model_config)
  suffix = weights.get("prompt_learner.token_suffix")
  if suffix is not None:
    length = suffix.shape[1] + 1 + m.n_ctx
    if length != m.context_length:
      raise ConversionError(
          f"checkpoint does not fit the model:\n  prompt_learner.token_suffix "
          f"{tuple(suffix.shape)} belongs to prompts of {length} tokens, but "
          f"model.context_length={m.context_length} (77: the LLM variants, "
          "configs/tc_clip.py:llm)")
  return {k: v for k, v in weights.items() if k not in _PROMPT_BUFFERS}


def convert_variables(state_dict: Mapping[str, Any], model_config: ml_collections.ConfigDict,
                      abstract: Mapping[str, Any]) -> dict:
  weights = drop_prompt_buffers(clean_state_dict(state_dict), model_config)
  if TOKEN_EMBEDDING not in weights:
    raise ConversionError(
        "checkpoint does not fit the model:\n  1 missing model variables:\n    "
        "text/token_embedding/embedding: TC-CLIP checkpoints lack CLIP's token embedding, "
        "which embeds the class names; give OpenAI CLIP's checkpoint too (--clip_checkpoint "
        f"ViT-B-16.pt; in Python add its {TOKEN_EMBEDDING!r} to the state_dict)")
  return assign(weights, abstract, lambda key: rename_key(key, model_config))


def from_openai_clip(weights: Mapping[str, np.ndarray],
                     model_config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """An OpenAI CLIP state_dict (cleaned, numpy) -> TC-CLIP's layout as upstream builds
  it (reference/tcclip.md 6.3): visual in_proj split into q/k/v, new local-global bias
  tables (blocks 1..), the VP layer copied from the text block it precedes (ln_1 also
  into ln_1_kv), `ctx` from the embeddings of the prompt's words before the class name,
  CLIP's token embedding kept. Unknown keys stay as they are, for the strict check."""
  from vidjax.text import tokenize  # pylint: disable=g-import-not-at-top
  m = _resolved(model_config)
  out: dict[str, np.ndarray] = {}
  rng = np.random.default_rng(BIAS_TABLE_SEED)
  for key, value in weights.items():
    hit = re.fullmatch(r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", key)
    if hit:
      base = f"image_encoder.transformer.resblocks.{hit[1]}.attn."
      for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
        out[f"{base}{name}.{hit[2]}"] = part
      if int(hit[1]) > 0 and hit[2] == "weight":
        out[base + "local_global_bias_table"] = np.clip(
            rng.normal(0.0, 0.02, (m.vision.heads, 1, 2)), -2.0, 2.0).astype(np.float32)
    elif key.startswith("visual."):
      out["image_encoder." + key[len("visual."):]] = value
    elif key.startswith(("transformer.", "ln_final.")) or key in ("positional_embedding",
                                                                   "text_projection"):
      out["text_encoder." + key] = value
    else:
      out[key] = value   # token_embedding.weight, logit_scale, anything unknown
  vp = f"text_encoder.transformer.resblocks.{m.vp_index % m.text.layers}."
  for key, value in list(out.items()):
    if key.startswith(vp):
      rest = key[len(vp):]
      out["text_encoder.prompt_generation_layer.0." + rest] = value.copy()
      if rest.startswith("ln_1."):
        out["text_encoder.prompt_generation_layer.0.ln_1_kv." + rest[len("ln_1."):]] = value.copy()
  if TOKEN_EMBEDDING in out:
    words = m.prompt.split("{}")[0].strip()
    ids = tokenize([words], m.text.max_length)[0][1:1 + m.n_ctx]
    out["prompt_learner.ctx"] = np.asarray(out[TOKEN_EMBEDDING])[ids].copy()
  return out
