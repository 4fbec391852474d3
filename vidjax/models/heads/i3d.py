"""MMAction2's I3DHead (reference/mmaction2_cost.md section 17): global average pool over
T, H and W, dropout, fc. Registered as 'i3d'; the 3D recognizer's default head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.heads.classifier import dropout_fc
from vidjax.models.layers import Dtype
from vidjax.models.registry import register

SPATIAL_TYPES = ("avg", "none")


class I3DHead(nn.Module):
  """[B, T, H, W, C] features -> average over T, H, W -> dropout -> fc -> [B, K].

  Attributes:
    num_classes: K.
    dropout_rate: before the fc (MMAction2: 0.5).
    init_std: fc weight init std (MMAction2: 0.01).
    spatial_type: 'avg', or 'none' for features that are already vectors [B, C] (C3D).
    dtype: computation dtype; logits are float32.
  The fc is the child `fc` (upstream `cls_head.fc_cls`).
  """
  num_classes: int
  dropout_rate: float = 0.5
  init_std: float = 0.01
  spatial_type: str = "avg"
  dtype: Dtype = jnp.float32

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
    return dropout_fc(x.astype(self.dtype), self.num_classes, self.dropout_rate,
                      self.init_std, self.dtype, train)


def i3d_head_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="i3d",
      dropout_rate=0.5,
      fc_init_std=0.01,
      spatial_type="avg",   # avg | none (features already [B, C])
  ))


@register("head", "i3d", i3d_head_defaults)
def build_i3d_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> I3DHead:
  if cfg.spatial_type not in SPATIAL_TYPES:
    raise ValueError(f"model.head.spatial_type={cfg.spatial_type!r}; known: {SPATIAL_TYPES}")
  return I3DHead(int(model_cfg.num_classes), float(cfg.dropout_rate), float(cfg.fc_init_std),
                 str(cfg.spatial_type), dtype)
