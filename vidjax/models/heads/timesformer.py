"""MMAction2's TimeSformerHead (reference/mmaction2_cost.md section 17): the backbone's
class token [B, C] -> fc -> logits. No pooling, no dropout upstream (`dropout_rate` 0).
Registered as 'timesformer'."""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from vidjax.models.heads.classifier import (ClassifierHead, classifier_defaults,
                                             classifier_fields)
from vidjax.models.registry import register


class TimeSformerHead(ClassifierHead):
  """[B, C] class-token features -> (dropout) -> fc -> [B, K] float32.

  Attributes:
    ClassifierHead's fields (init_std: upstream's 0.02; dropout_rate: 0).
  The fc is the child `fc` (upstream `cls_head.fc_cls`).
  """

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int = 1, train: bool = False) -> jax.Array:
    """x: [B, C] -> logits [B, K] float32; `num_segments` is unused (the backbone has
    already attended over time)."""
    del num_segments
    if x.ndim != 2:
      raise ValueError(f"TimeSformerHead expects class-token features [B, C], got shape "
                       f"{x.shape}")
    return self.classify(x, train)


def timesformer_head_defaults() -> ml_collections.ConfigDict:
  config = classifier_defaults("timesformer", 0.02)
  config.dropout_rate = 0.0
  return config


@register("head", "timesformer", timesformer_head_defaults)
def build_timesformer_head(cfg: ml_collections.ConfigDict,
                           model_cfg: ml_collections.ConfigDict, dtype) -> TimeSformerHead:
  return TimeSformerHead(**classifier_fields(cfg, model_cfg, dtype))
