"""Recognizers: clips in, logits out. Pixel normalisation happens here, on device."""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.heads.linear import LinearHead
from vidjax.models.heads.linear import consensus as segment_consensus
from vidjax.models.layers import Dtype, global_avg_pool, normalize_pixels

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class Recognizer2D(nn.Module):
  """TSN-style recognizer: a 2D backbone on every frame, then segment consensus.

  clips [B, T, H, W, 3] (uint8 or float 0..255) -> normalise -> fold T into the batch
  (video-major, row b*T + t) -> backbone [B*T, h, w, C] -> global average pool ->
  dropout -> fc -> [B, T, K] -> consensus over T -> logits [B, K] float32.

  Attributes:
    backbone: a module called as `backbone(x, train=..., num_segments=T)`.
    num_classes: K.
    dropout_rate, fc_init_std: the head (TSM: dropout 0.5 to 0.8, fc std 0.001).
    pixel_mean, pixel_std: per-channel values in 0..255 units; None for raw pixels.
    consensus: 'avg'.
    dtype: computation dtype of the normalised input and the head.
  """
  backbone: nn.Module
  num_classes: int
  dropout_rate: float = 0.5
  fc_init_std: float = 0.001
  pixel_mean: Optional[Sequence[float]] = IMAGENET_MEAN
  pixel_std: Optional[Sequence[float]] = IMAGENET_STD
  consensus: str = "avg"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """clips: [B, T, H, W, 3] -> logits [B, num_classes] (float32)."""
    if clips.ndim != 5:
      raise ValueError(f"Recognizer2D expects clips [B, T, H, W, C], got shape {clips.shape}; "
                       "fold multiple views into B first.")
    b, t = clips.shape[:2]
    x = normalize_pixels(clips, self.pixel_mean, self.pixel_std, self.dtype)
    x = x.reshape((b * t,) + clips.shape[2:])
    features = global_avg_pool(self.backbone(x, train=train, num_segments=t))
    logits = LinearHead(self.num_classes, self.dropout_rate, self.fc_init_std, self.dtype,
                        name="head")(features.astype(self.dtype), train)
    return segment_consensus(logits.reshape(b, t, self.num_classes), self.consensus)
