"""The frame-wise CLIP video classifier (`model.name = "clip"`): ViFi-CLIP and vanilla
CLIP, the baselines of the TC-CLIP repository (reference/tcclip.md 3.4).

  clips [B, T, H, W, 3] -> normalise -> CLIP ViT per frame [B, T, E] -> mean over T
    -> L2-normalise = v [B, E]
  class names -> prompts (`model.prompt`, e.g. "a photo of a {}.") -> BPE ids [C, L]
    -> CLIP text tower -> L2-normalise = t [C, E]
  logits = exp(logit_scale) * v @ t.T                                     [B, C]

The class names are `model.class_names`, or the lines of `model.label_file` when set;
`model.split_camel_case` inserts a space before every capital ("ApplyEyeMakeup" ->
"Apply Eye Makeup", "Yo-Yo" -> "Yo- Yo", as upstream), `model.replace_underscores`
turns "_" into " " (TC-CLIP's prompt learner does; the CLIP baselines do not). They are
tokenized once, when the model is built; the text tower runs in every forward (it is
trained too). `model.num_classes` 0 means the count of the class names; any other value
must equal it.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.data import demo
from vidjax.models import registry
from vidjax.models.clip.encoders import TextTransformer, VisionTransformer
from vidjax.models.clip.transformer import LOGIT_SCALE_INIT
from vidjax.models.layers import Dtype, normalize_pixels, resolve_dtype

# ImageNet's, which the TC-CLIP repository's pipelines use for CLIP too (not CLIP's own).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """x / ||x|| along `axis` (as torch's `x / x.norm(dim=-1, keepdim=True)`, no epsilon)."""
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


class ClipClassifier(nn.Module):
  """What the CLIP-family video classifiers share: two towers, the class prompts, pixel
  normalisation and the learned logit scale.

  Attributes:
    visual: the image tower, frames [N, S, S, 3] -> [N, E].
    text: the text tower, ids [C, L] -> [C, E].
    prompt_tokens: ids of the class prompts, C rows of L ints (a tuple, so the module
      stays hashable).
    pixel_mean, pixel_std: per-channel values in 0..255 units; None for raw pixels.
    dtype: computation dtype; params stay float32; logits are float32.
  """
  visual: nn.Module
  text: nn.Module
  prompt_tokens: tuple[tuple[int, ...], ...]
  pixel_mean: Optional[Sequence[float]] = IMAGENET_MEAN
  pixel_std: Optional[Sequence[float]] = IMAGENET_STD
  dtype: Dtype = jnp.float32
  logit_scale_init: float = LOGIT_SCALE_INIT

  def setup(self):
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(
        self.logit_scale_init), ())

  def normalized_clips(self, clips: jax.Array) -> jax.Array:
    """clips [B, T, S, S, 3] in 0..255 -> the same, normalised, in `dtype`."""
    if clips.ndim != 5:
      raise ValueError(f"{type(self).__name__} expects clips [B, T, H, W, C], got shape "
                       f"{clips.shape}; fold multiple views into B first.")
    return normalize_pixels(clips, self.pixel_mean, self.pixel_std, self.dtype)

  def prompt_ids(self, tokens: Optional[jax.Array] = None) -> jax.Array:
    """`tokens` [C, L], by default the model's prompts."""
    return jnp.asarray(self.prompt_tokens, jnp.int32) if tokens is None else tokens


class ClipVideoClassifier(ClipClassifier):
  """Frame-wise CLIP: mean of the frame embeddings against class-prompt embeddings
  (towers: `VisionTransformer`, `TextTransformer`)."""

  def encode_frames(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """clips [B, T, S, S, 3] in 0..255 -> frame embeddings [B, T, E] (not normalised)."""
    b, t = clips.shape[:2]
    x = self.normalized_clips(clips)
    features = self.visual(x.reshape((b * t,) + x.shape[2:]), train=train)
    return features.reshape(b, t, -1)

  def encode_text(self, tokens: Optional[jax.Array] = None) -> jax.Array:
    """Class-prompt embeddings [C, E] (not normalised); `tokens` [C, L] default to the
    model's prompts."""
    return self.text(self.prompt_ids(tokens))

  def similarity(self, video: jax.Array, text: jax.Array) -> jax.Array:
    """exp(logit_scale) * cosine: video [B, E], text [C, E] -> logits [B, C] float32."""
    video = l2_normalize(video.astype(jnp.float32))
    text = l2_normalize(text.astype(jnp.float32))
    return jnp.exp(self.logit_scale) * video @ text.T

  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    video = self.encode_frames(clips, train).astype(jnp.float32).mean(axis=1)
    return self.similarity(video, self.encode_text())


# ----------------------------------------------------------------------------- class names
def prepare_class_name(name: str, split_camel_case: bool = True,
                       replace_underscores: bool = False) -> str:
  """Upstream's class-name clean-up: a space before each capital (then stripped), and
  optionally '_' -> ' ' (reference/tcclip.md 3.1)."""
  if split_camel_case:
    name = re.sub("([A-Z])", r" \1", name).strip()
  if replace_underscores:
    name = name.replace("_", " ")
  return name


def class_names(cfg: ml_collections.ConfigDict) -> list[str]:
  """The model's class names: `model.label_file`'s lines when set, else
  `model.class_names`; checked against `model.num_classes` (0: any count)."""
  if cfg.label_file:
    from vidjax.data import sources  # pylint: disable=g-import-not-at-top
    try:
      names = sources.read_label_names(cfg.label_file)
    except OSError as e:
      raise ValueError(f"model.label_file: cannot read {cfg.label_file}: {e}") from e
    where = f"model.label_file ({cfg.label_file})"
  else:
    names = cfg.class_names
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
      raise ValueError(f"model.class_names must be a non-empty tuple of strings, got "
                       f"{names!r}")
    names = list(names)
    where = "model.class_names"
  if cfg.num_classes and cfg.num_classes != len(names):
    raise ValueError(f"{where} has {len(names)} class names but model.num_classes="
                     f"{cfg.num_classes}; set model.class_names (or model.label_file) to the "
                     "data's classes, or model.num_classes=0 to take their count.")
  return names


def prompts(cfg: ml_collections.ConfigDict) -> list[str]:
  """The text of each class prompt: `model.prompt` with the prepared class name."""
  if cfg.prompt.count("{}") != 1:
    raise ValueError(f"model.prompt={cfg.prompt!r} must hold one '{{}}' for the class name")
  return [cfg.prompt.replace("{}", prepare_class_name(n, cfg.split_camel_case,
                                                      cfg.replace_underscores))
          for n in class_names(cfg)]


def prompt_tokens(cfg: ml_collections.ConfigDict) -> tuple[tuple[int, ...], ...]:
  """BPE ids of the class prompts, C rows of `model.context_length`."""
  from vidjax.text import tokenize  # pylint: disable=g-import-not-at-top
  texts = prompts(cfg)
  if cfg.context_length > cfg.text.max_length:
    raise ValueError(f"model.context_length={cfg.context_length} exceeds the text tower's "
                     f"model.text.max_length={cfg.text.max_length}")
  try:
    ids = tokenize(texts, cfg.context_length)
  except ValueError as e:
    raise ValueError(f"model.class_names: a prompt does not fit model.context_length="
                     f"{cfg.context_length}: {e}") from e
  return tuple(tuple(int(i) for i in row) for row in ids)


# ----------------------------------------------------------------------------- registration
def clip_defaults() -> ml_collections.ConfigDict:
  """Every field of `config.model` for 'clip': CLIP ViT-B/16, ViFi-CLIP's prompt."""
  return ml_collections.ConfigDict(dict(
      name="clip",
      num_classes=0,                # 0: the count of the class names
      class_names=demo.CLASS_NAMES,  # a non-empty tuple of str (the demo set's by default)
      label_file="",                # class names, one a line; overrides class_names
      prompt="a photo of a {}.",    # ViFi-CLIP; vanilla CLIP: "{}"
      split_camel_case=True,
      replace_underscores=False,
      context_length=30,            # prompt tokens L (the TC-CLIP repository's)
      embed_dim=512,                # joint embedding E
      vision=ml_collections.ConfigDict(dict(
          image_size=224, patch_size=16, width=768, layers=12, heads=12)),
      text=ml_collections.ConfigDict(dict(
          vocab_size=49408, max_length=77, width=512, layers=12, heads=8)),
      logit_scale_init=LOGIT_SCALE_INIT,
      pixel_mean=IMAGENET_MEAN,     # 0..255 units; None (with pixel_std None) => raw pixels
      pixel_std=IMAGENET_STD,
      dtype="float32",
  ))


def build_towers(cfg: ml_collections.ConfigDict, dtype: Any,
                 vision_cls: type = VisionTransformer,
                 text_cls: type = TextTransformer) -> tuple[nn.Module, nn.Module]:
  """The image and text towers of a resolved CLIP-family model config."""
  v, t = cfg.vision, cfg.text
  visual = vision_cls(image_size=v.image_size, patch_size=v.patch_size, width=v.width,
                      layers=v.layers, heads=v.heads, output_dim=cfg.embed_dim, dtype=dtype)
  text = text_cls(vocab_size=t.vocab_size, max_length=t.max_length, width=t.width,
                  layers=t.layers, heads=t.heads, output_dim=cfg.embed_dim, dtype=dtype)
  return visual, text


def classifier_fields(cfg: ml_collections.ConfigDict, dtype: Any, visual: nn.Module,
                      text: nn.Module) -> dict[str, Any]:
  """`ClipClassifier`'s fields from a resolved CLIP-family model config."""
  return dict(visual=visual, text=text, prompt_tokens=prompt_tokens(cfg),
              pixel_mean=None if cfg.pixel_mean is None else tuple(cfg.pixel_mean),
              pixel_std=None if cfg.pixel_std is None else tuple(cfg.pixel_std),
              dtype=dtype, logit_scale_init=float(cfg.logit_scale_init))


def _input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  return (1, 2, cfg.vision.image_size, cfg.vision.image_size, 3)


@registry.register("recognizer", "clip", clip_defaults, input_shape=_input_shape)
def build_clip(cfg: ml_collections.ConfigDict) -> ClipVideoClassifier:
  dtype = resolve_dtype(cfg.dtype)
  visual, text = build_towers(cfg, dtype)
  return ClipVideoClassifier(**classifier_fields(cfg, dtype, visual, text))
