"""MMAction2's SlowFastHead (reference/mmaction2_cost.md sections 4 and 17): each
pathway's features averaged over T, H and W, concatenated fast first, then slow (R50:
256 + 2048 = 2304), dropout, fc. Registered as 'slowfast'."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.heads.classifier import (ClassifierHead, classifier_defaults,
                                             classifier_fields)
from vidjax.models.registry import register


class SlowFastHead(ClassifierHead):
  """(slow [B, T, H, W, C_s], fast [B, T', H', W', C_f]) -> [B, K], with
  ClassifierHead's fields (init_std: MMAction2's 0.01). The fc is the child `fc`
  (upstream `cls_head.fc_cls`), on [fast, slow] features.
  """

  @nn.compact
  def __call__(self, x: Sequence[jax.Array], num_segments: int = 1,
               train: bool = False) -> jax.Array:
    """x: the SlowFast backbone's (slow, fast) features -> logits [B, K] float32.
    `num_segments` is the recognizer's input frame count; the features carry their own."""
    del num_segments
    if not isinstance(x, (tuple, list)) or len(x) != 2 or any(f.ndim != 5 for f in x):
      shapes = [getattr(f, "shape", None) for f in x] if isinstance(x, (tuple, list)) else (
          getattr(x, "shape", None))
      raise ValueError(f"SlowFastHead expects (slow, fast) features, each [B, T, H, W, C], "
                       f"got {shapes}; use it with model.backbone.name='slowfast'")
    slow, fast = x
    pooled = [jnp.mean(f.astype(jnp.promote_types(f.dtype, jnp.float32)), axis=(1, 2, 3))
              for f in (fast, slow)]   # upstream's order: fast first
    return self.classify(jnp.concatenate(pooled, axis=-1), train)


def slowfast_head_defaults() -> ml_collections.ConfigDict:
  return classifier_defaults("slowfast", 0.01)


@register("head", "slowfast", slowfast_head_defaults)
def build_slowfast_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                        dtype) -> SlowFastHead:
  return SlowFastHead(**classifier_fields(cfg, model_cfg, dtype))
