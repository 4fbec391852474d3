"""The classifier every head ends with: dropout -> fc, logits in float32."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import Dtype


def dropout_fc(x: jax.Array, num_classes: int, dropout_rate: float, init_std: float,
               dtype: Dtype, train: bool) -> jax.Array:
  """x [N, C] -> logits [N, K] float32, inside the calling head's compact method.

  The fc becomes the head's child `fc` (TSM's `new_fc`): weights normal(init_std), bias 0.
  Dropout needs the rng 'dropout' in training when its rate is > 0.
  """
  x = nn.Dropout(dropout_rate)(x, deterministic=not train)
  x = nn.Dense(num_classes, dtype=dtype, param_dtype=jnp.float32,
               kernel_init=nn.initializers.normal(init_std),
               bias_init=nn.initializers.zeros, name="fc")(x)
  return x.astype(jnp.float32)


class ClassifierHead(nn.Module):
  """Base of the heads that pool their features to [N, C] and end in `dropout_fc`.

  Attributes:
    num_classes: K.
    dropout_rate: before the fc (MMAction2: 0.5).
    init_std: fc weight init std (MMAction2's 3D heads: 0.01).
    dtype: computation dtype (keyword-only, so a head's own fields follow init_std);
      logits are float32.
  """
  num_classes: int
  dropout_rate: float = 0.5
  init_std: float = 0.01
  dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)

  def classify(self, x: jax.Array, train: bool) -> jax.Array:
    """Pooled features [N, C] -> logits [N, K] float32 (the fc: the head's child `fc`)."""
    return dropout_fc(x.astype(self.dtype), self.num_classes, self.dropout_rate,
                      self.init_std, self.dtype, train)


def classifier_defaults(name: str, fc_init_std: float,
                        **fields: Any) -> ml_collections.ConfigDict:
  """`model.head` defaults of a ClassifierHead: dropout 0.5, the fc's init std, and the
  head's own `fields`."""
  return ml_collections.ConfigDict(dict(name=name, dropout_rate=0.5,
                                        fc_init_std=fc_init_std, **fields))


def classifier_fields(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                      dtype: Dtype) -> dict[str, Any]:
  """ClassifierHead's fields from `model.head` (`cfg`) and `model` (`model_cfg`)."""
  return dict(num_classes=int(model_cfg.num_classes), dropout_rate=float(cfg.dropout_rate),
              init_std=float(cfg.fc_init_std), dtype=dtype)
