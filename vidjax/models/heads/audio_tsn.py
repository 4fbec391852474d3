"""MMAction2's AudioTSNHead (TSNAudioHead in 1.x; reference/mmaction2_cost.md sections 10,
17): global average pool over the spectrogram's time and mel axes, dropout, fc. Registered
as 'audio_tsn'; the audio recognizer's head."""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.heads.classifier import (ClassifierHead, classifier_defaults,
                                             classifier_fields)
from vidjax.models.layers import global_avg_pool
from vidjax.models.registry import register


class AudioTSNHead(ClassifierHead):
  """[B, t, f, C] features of one clip each -> pool -> dropout -> fc -> [B, K].

  Attributes:
    ClassifierHead's fields (upstream: dropout 0.5 in the zoo config, fc init std 0.01).
  The fc is the child `fc` (upstream `cls_head.fc_cls`). No consensus: each row of the
  batch is one clip (the recognizer folds test views into the batch).
  """

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int = 1, train: bool = False) -> jax.Array:
    """x: [B, t, f, C] -> logits [B, K] float32; `num_segments` is unused (always 1)."""
    del num_segments
    if x.ndim != 4:
      raise ValueError(f"AudioTSNHead expects features [B, t, f, C], got shape {x.shape}")
    return self.classify(global_avg_pool(x), train)


def audio_tsn_head_defaults() -> ml_collections.ConfigDict:
  return classifier_defaults("audio_tsn", 0.01)


@register("head", "audio_tsn", audio_tsn_head_defaults)
def build_audio_tsn_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                         dtype) -> AudioTSNHead:
  return AudioTSNHead(**classifier_fields(cfg, model_cfg, dtype))
