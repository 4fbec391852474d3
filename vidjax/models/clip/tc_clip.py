"""TC-CLIP (`model.name = "tc_clip"`, reference/tcclip.md 1-3): temporal contextualization
in the image tower (tc_vision.py), video-conditional prompts in the text tower
(tc_text.py).

  clips [B, T, S, S, 3] -> normalise -> TC ViT -> per-frame class embeddings [B, T, E],
    context tokens [B, K, E]; video v = mean over T, L2-normalised          [B, E]
  class prompts "a photo of a {name}." (CamelCase split, "_" -> " "), positions 1..n_ctx
    replaced by the learned context; text tower with the VP layer fed the video's
    context tokens (no gradient into them) -> t [B, C, E], L2-normalised
  logits[b, c] = exp(logit_scale) * v_b . t_bc                              [B, C]

`__call__(clips, train=False, decisions=None)`: `decisions` forces the TC blocks'
discrete choices (tc_vision.py's docstring: what `mutable=["intermediates"]` records and
how to replay it). The token embedding table is CLIP's and stays fixed (upstream keeps
the embedded prompts as buffers): no gradient reaches it, and the recipes give it no
learning rate (vidjax/recipes/tc_clip.py).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models import registry
from vidjax.models.clip import recognizer as clip_recognizer
from vidjax.models.clip.recognizer import l2_normalize
from vidjax.models.clip.tc_text import PromptLearner, VPTextTransformer, splice_context
from vidjax.models.clip.tc_vision import Decisions, TCVisionTransformer
from vidjax.models.layers import resolve_dtype


class TCClip(clip_recognizer.ClipClassifier):
  """TC-CLIP video classifier (`ClipClassifier`'s fields, towers `TCVisionTransformer`
  and `VPTextTransformer`).

  Attributes:
    n_ctx: learned context slots (prompt positions 1..n_ctx).
  """
  n_ctx: int = 4

  def setup(self):
    super().setup()
    self.prompt_learner = PromptLearner(self.n_ctx, self.text.width)

  def encode_video(self, clips: jax.Array, decisions: Optional[Decisions] = None
                   ) -> tuple[jax.Array, jax.Array]:
    """clips [B, T, S, S, 3] in 0..255 -> (video embedding [B, E] float32, not
    normalised; context tokens [B, K, E])."""
    cls, context = self.visual.encode_video(self.normalized_clips(clips), decisions)
    return cls.astype(jnp.float32).mean(axis=1), context

  def encode_text(self, context: jax.Array, tokens: Optional[jax.Array] = None) -> jax.Array:
    """Class-prompt embeddings conditioned on each video's context tokens [B, K, E]
    -> [B, C, E] (not normalised)."""
    tokens = self.prompt_ids(tokens)
    embedded = jax.lax.stop_gradient(self.text.embed(tokens))
    prompts = splice_context(embedded, self.prompt_learner())
    return self.text.encode_video_prompts(prompts, tokens, jax.lax.stop_gradient(context),
                                          self.n_ctx)

  def __call__(self, clips: jax.Array, train: bool = False,
               decisions: Optional[Decisions] = None) -> jax.Array:
    del train   # no dropout; TC's choices are the same in training and evaluation
    video, context = self.encode_video(clips, decisions)
    text = l2_normalize(self.encode_text(context).astype(jnp.float32))
    return jnp.exp(self.logit_scale) * jnp.einsum("be,bce->bc", l2_normalize(video), text)


# ----------------------------------------------------------------------------- registration
def tc_clip_defaults() -> ml_collections.ConfigDict:
  """Every field of `config.model` for 'tc_clip': `clip`'s fields (clip_defaults) with
  TC-CLIP's prompt handling, plus the TC and VP settings."""
  cfg = clip_recognizer.clip_defaults()
  cfg.name = "tc_clip"
  cfg.replace_underscores = True   # TC-CLIP's prompt learner does; the baselines do not
  cfg.n_ctx = 4                    # the words before "{}" in the prompt: learned slots
  cfg.vp_index = -1                # the text block the VP layer precedes (-1: the last)
  cfg.tc = ml_collections.ConfigDict(dict(
      seed_ratio=0.3,      # seeds per frame: int(patches * ratio)
      context_tokens=96,   # K
      merge_r=100,         # tokens merged per ToMe step
  ))
  return cfg


def _check_context_slots(cfg: ml_collections.ConfigDict) -> None:
  from vidjax.text import tokenize  # pylint: disable=g-import-not-at-top
  words = cfg.prompt.split("{}")[0].strip()
  count = int((tokenize([words], cfg.text.max_length)[0] > 0).sum()) - 2
  if count != cfg.n_ctx:
    raise ValueError(f"model.prompt={cfg.prompt!r}: the {count} tokens before '{{}}' are "
                     f"the learned context slots, but model.n_ctx={cfg.n_ctx}")


def _input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  return (1, 2, cfg.vision.image_size, cfg.vision.image_size, 3)


@registry.register("recognizer", "tc_clip", tc_clip_defaults, input_shape=_input_shape)
def build_tc_clip(cfg: ml_collections.ConfigDict) -> TCClip:
  dtype = resolve_dtype(cfg.dtype)
  if cfg.embed_dim != cfg.text.width:
    raise ValueError(f"TC-CLIP: model.embed_dim={cfg.embed_dim} must equal "
                     f"model.text.width={cfg.text.width} (the VP layer reads the projected "
                     "context tokens)")
  _check_context_slots(cfg)
  vision = functools.partial(TCVisionTransformer, seed_ratio=float(cfg.tc.seed_ratio),
                             context_tokens=int(cfg.tc.context_tokens),
                             merge_r=int(cfg.tc.merge_r))
  text = functools.partial(VPTextTransformer, vp_index=int(cfg.vp_index))
  visual, text = clip_recognizer.build_towers(cfg, dtype, vision_cls=vision, text_cls=text)
  return TCClip(n_ctx=int(cfg.n_ctx),
                **clip_recognizer.classifier_fields(cfg, dtype, visual, text))


__all__ = ["TCClip", "build_tc_clip", "tc_clip_defaults"]
