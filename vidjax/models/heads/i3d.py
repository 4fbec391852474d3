"""MMAction2's I3DHead (reference/mmaction2_cost.md section 17): global average pool over
T, H and W, dropout, fc. Registered as 'i3d'; the 3D recognizer's default head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.heads.classifier import (ClassifierHead, classifier_defaults,
                                             classifier_fields)
from vidjax.models.registry import register

SPATIAL_TYPES = ("avg", "none")


class I3DHead(ClassifierHead):
  """[B, T, H, W, C] features -> average over T, H, W -> dropout -> fc -> [B, K].

  Attributes:
    ClassifierHead's fields (init_std: MMAction2's 0.01).
    spatial_type: 'avg', or 'none' for features that are already vectors [B, C] (C3D).
  The fc is the child `fc` (upstream `cls_head.fc_cls`).
  """
  spatial_type: str = "avg"

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int = 1, train: bool = False) -> jax.Array:
    """x: [B, T, H, W, C] (or [B, C] with spatial_type 'none') -> logits [B, K] float32.
    `num_segments` is the recognizer's input frame count; the features carry their own."""
    del num_segments
    if self.spatial_type == "avg":
      if x.ndim != 5:
        raise ValueError(f"I3DHead expects features [B, T, H, W, C], got shape {x.shape}")
      x = jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2, 3))
    elif x.ndim != 2:
      raise ValueError(f"I3DHead with spatial_type 'none' expects features [B, C], got "
                       f"shape {x.shape}")
    return self.classify(x, train)


def i3d_head_defaults() -> ml_collections.ConfigDict:
  return classifier_defaults("i3d", 0.01,
                             spatial_type="avg")   # avg | none (features already [B, C])


@register("head", "i3d", i3d_head_defaults)
def build_i3d_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> I3DHead:
  if cfg.spatial_type not in SPATIAL_TYPES:
    raise ValueError(f"model.head.spatial_type={cfg.spatial_type!r}; known: {SPATIAL_TYPES}")
  return I3DHead(spatial_type=str(cfg.spatial_type),
                 **classifier_fields(cfg, model_cfg, dtype))
