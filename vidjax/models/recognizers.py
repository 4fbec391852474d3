"""Recognizers, one per input kind: clips in, logits out; pixel normalisation on device.

`config.model` names the recognizer (`name`), the class count, the pixel normalisation
and the computation dtype; its parts are named sub-configs resolved in their registries:
`model.backbone.name`, `model.neck.name` (empty: no neck) and `model.head.name`.

  recognizer2d: time folded into the batch (TSN, TSM, GC, TCPNet, TIN, TANet, TRN). The
    temporal modules (`model.shift`, `model.non_local`, `model.ecal`, `model.tin`,
    `model.tam`; models/temporal/) enter the backbone's blocks through the hook slots of
    models/hooks.py.
  recognizer3d: clips to the backbone as they are, [B, T, H, W, 3].
  recognizer_audio: log-mel features [B, T, F] (design.md 'Audio') as one-channel images
    to a 2D backbone (MMAction2's audio ResNet); no pixel normalisation.
The 2D and 3D recognizers take a neck on several backbone stages (TPN: `model.neck.name =
"tpn"`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models import registry
from vidjax.models.hooks import build_hooks, temporal_defaults
from vidjax.models.layers import Dtype, normalize_pixels, resolve_dtype

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class Recognizer(nn.Module):
  """Shared fields: parts (built modules) and the input normalisation.

  Attributes:
    backbone: called as `backbone(x, train=..., num_segments=T)` (2D) or
      `backbone(x, train=...)` (3D); may return one array or a tuple of stages.
    head: called as `head(features, num_segments=T, train=...)` -> logits [B, K].
    neck: None, or called as `neck(features, num_segments=T, train=...)`.
    pixel_mean, pixel_std: per-channel values in 0..255 units; None for raw pixels.
    dtype: computation dtype of the normalised input.
  A head or neck may add an auxiliary loss with `self.sow("losses", name, scalar)`, or
  an auxiliary classifier's logits with `self.sow("aux_logits", name, {"logits": [B, K],
  "weight": w})` (TPN); the train step adds them to the loss (vidjax/train/steps.py).
  """
  backbone: nn.Module
  head: nn.Module
  neck: Optional[nn.Module] = None
  pixel_mean: Optional[Sequence[float]] = IMAGENET_MEAN
  pixel_std: Optional[Sequence[float]] = IMAGENET_STD
  dtype: Dtype = jnp.float32

  def _check(self, clips: jax.Array) -> None:
    if clips.ndim != 5:
      raise ValueError(f"{type(self).__name__} expects clips [B, T, H, W, C], got shape "
                       f"{clips.shape}; fold multiple views into B first.")

  def _neck_and_head(self, features: Any, t: int, train: bool) -> jax.Array:
    if self.neck is not None:
      features = self.neck(features, num_segments=t, train=train)
    return self.head(features, num_segments=t, train=train)


class Recognizer2D(Recognizer):
  """clips [B, T, H, W, 3] (uint8 or float 0..255) -> normalise -> fold T into the batch
  (video-major, row b*T + t) -> backbone -> [neck] -> head -> logits [B, K] float32."""

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    self._check(clips)
    b, t = clips.shape[:2]
    x = normalize_pixels(clips, self.pixel_mean, self.pixel_std, self.dtype)
    x = x.reshape((b * t,) + clips.shape[2:])
    return self._neck_and_head(self.backbone(x, train=train, num_segments=t), t, train)


class Recognizer3D(Recognizer):
  """clips [B, T, H, W, 3] (uint8 or float 0..255) -> normalise -> backbone (as they
  are) -> [neck] -> head -> logits [B, K] float32."""

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    self._check(clips)
    t = clips.shape[1]
    x = normalize_pixels(clips, self.pixel_mean, self.pixel_std, self.dtype)
    return self._neck_and_head(self.backbone(x, train=train), t, train)


def _recognizer_defaults(name: str, backbone: str, head: str,
                         **extra: Any) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name=name,
      num_classes=400,
      pixel_mean=IMAGENET_MEAN,   # 0..255 units; None (with pixel_std None) => raw pixels
      pixel_std=IMAGENET_STD,
      dtype="float32",            # computation dtype; params stay float32
      backbone=registry.default_config("backbone", backbone),
      neck=ml_collections.ConfigDict(dict(name="")),   # "" => no neck
      head=registry.default_config("head", head),
      **extra,
  ))


def recognizer2d_defaults() -> ml_collections.ConfigDict:
  """Every field of `config.model` for 'recognizer2d' (TSN-R50 by default); the temporal
  modules are sub-configs, all disabled."""
  # relation_seed: the seed of TRN's eval relation draws (heads/trn.py; design.md's
  # `model.relation_seed`), unused by other heads.
  return _recognizer_defaults("recognizer2d", "resnet", "tsn", relation_seed=0,
                              **temporal_defaults())


def recognizer3d_defaults() -> ml_collections.ConfigDict:
  """Every field of `config.model` for 'recognizer3d' (MMAction2's ResNet3d-50 with
  I3DHead by default)."""
  return _recognizer_defaults("recognizer3d", "resnet3d", "i3d")


def _build(cls: type, cfg: ml_collections.ConfigDict, **hooks: Any) -> Recognizer:
  dtype = resolve_dtype(cfg.dtype)
  return cls(backbone=registry.build_backbone(cfg.backbone, dtype, **hooks),
             head=registry.build_part("head", cfg, dtype),
             neck=registry.build_part("neck", cfg, dtype),
             pixel_mean=None if cfg.pixel_mean is None else tuple(cfg.pixel_mean),
             pixel_std=None if cfg.pixel_std is None else tuple(cfg.pixel_std),
             dtype=dtype)


def _input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  # Heads and temporal modules bound to a frame count (TCP's conv_1d, TIN's fc1) name
  # it; others take any T.
  t = cfg.head.get("num_segments", 0)
  for field, _ in registry.temporal_entries():
    sub = cfg.get(field)
    if not t and sub is not None and sub.enabled:
      t = sub.get("num_segments", 0)
  return (1, int(t or 2), 224, 224, 3)


@registry.register("recognizer", "recognizer2d", recognizer2d_defaults, input_shape=_input_shape)
def build_recognizer2d(cfg: ml_collections.ConfigDict) -> Recognizer2D:
  return _build(Recognizer2D, cfg, **build_hooks(cfg))


def _input_shape_3d(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  # A backbone tied to one clip size (C3D's fc6) registers it; others get enough frames
  # for every temporal stride of the 3D trunks (I3D: T / 8).
  backbone = registry.lookup("backbone", cfg.backbone.name, "model.backbone")
  if backbone.input_shape is not None:
    return tuple(backbone.input_shape(cfg.backbone))
  return (1, 32, 224, 224, 3)


@registry.register("recognizer", "recognizer3d", recognizer3d_defaults,
                   input_shape=_input_shape_3d)
def build_recognizer3d(cfg: ml_collections.ConfigDict) -> Recognizer3D:
  return _build(Recognizer3D, cfg)


# --- Audio (MMAction2's RecognizerAudio, reference/mmaction2_cost.md sections 10, 17) ------

class RecognizerAudio(nn.Module):
  """log-mel features [B, T, F] float32 (unnormalised) -> a channel axis [B, T, F, 1]
  (time as the image's height, mel bins as its width) -> backbone -> head -> logits
  [B, K] float32. Test views are folded into B by the eval step, as for clips.

  Attributes:
    backbone: a 2D trunk with `in_channels` 1, called with `num_segments=1`.
    head: called as `head(features, num_segments=1, train=...)`.
    dtype: computation dtype of the features.
  """
  backbone: nn.Module
  head: nn.Module
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
    if features.ndim != 3:
      raise ValueError(f"RecognizerAudio expects log-mel features [B, T, F], got shape "
                       f"{features.shape}; fold multiple views into B first.")
    x = features.astype(self.dtype)[..., None]
    return self.head(self.backbone(x, train=train, num_segments=1), num_segments=1,
                     train=train)


def recognizer_audio_defaults() -> ml_collections.ConfigDict:
  """Every field of `config.model` for 'recognizer_audio': MMAction2's audio TSN-R18 (a
  ResNet-18 on one input channel, AudioTSNHead). No pixel normalisation: the features
  are used as they are."""
  backbone = registry.default_config("backbone", "resnet")
  backbone.update(depth=18, in_channels=1)
  return ml_collections.ConfigDict(dict(
      name="recognizer_audio",
      num_classes=400,
      dtype="float32",            # computation dtype; params stay float32
      backbone=backbone,
      neck=ml_collections.ConfigDict(dict(name="")),   # no neck
      head=registry.default_config("head", "audio_tsn"),
  ))


@registry.register("recognizer", "recognizer_audio", recognizer_audio_defaults,
                   input_shape=lambda cfg: (1, 128, 80))
def build_recognizer_audio(cfg: ml_collections.ConfigDict) -> RecognizerAudio:
  if cfg.backbone.get("in_channels", 1) != 1:
    raise ValueError(f"model.backbone.in_channels={cfg.backbone.in_channels}: the audio "
                     "recognizer feeds log-mel features as one channel; set it to 1.")
  if cfg.neck.name:
    raise ValueError(f"model.neck.name={cfg.neck.name!r}: the audio recognizer takes no neck.")
  dtype = resolve_dtype(cfg.dtype)
  return RecognizerAudio(backbone=registry.build_backbone(cfg.backbone, dtype),
                         head=registry.build_part("head", cfg, dtype), dtype=dtype)
