"""MMAction2's X3DHead (reference/mmaction2_cost.md sections 8 and 17): global average
pool over T, H and W, fc1 without bias, ReLU, dropout, fc2. Registered as 'x3d'."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import Dtype
from vidjax.models.registry import register


class X3DHead(nn.Module):
  """[B, T, H, W, C] features -> mean over T, H, W -> fc1 (no bias) -> ReLU -> dropout
  -> fc2 -> logits [B, K] float32. Children `fc1`, `fc2` (upstream `cls_head.fc1/fc2`).

  Attributes:
    num_classes: K.
    hidden_dim: fc1's width (upstream: 2048).
    dropout_rate: after fc1 (upstream: 0.5).
    init_std: the fcs' weight init std (upstream: 0.01).
    fc1_bias: upstream's X3D configs build fc1 without a bias.
  """
  num_classes: int
  hidden_dim: int = 2048
  dropout_rate: float = 0.5
  init_std: float = 0.01
  fc1_bias: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int = 1, train: bool = False) -> jax.Array:
    """x: [B, T, H, W, C] -> logits [B, K]; `num_segments` is unused (3D features)."""
    del num_segments
    if x.ndim != 5:
      raise ValueError(f"X3DHead expects features [B, T, H, W, C], got shape {x.shape}")
    x = jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2, 3))
    dense = dict(dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.normal(self.init_std),
                 bias_init=nn.initializers.zeros)
    x = nn.relu(nn.Dense(self.hidden_dim, use_bias=self.fc1_bias, name="fc1",
                         **dense)(x.astype(self.dtype)))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.Dense(self.num_classes, name="fc2", **dense)(x).astype(jnp.float32)


def x3d_head_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="x3d",
      hidden_dim=2048,     # fc1's width
      dropout_rate=0.5,    # after fc1 + ReLU
      fc_init_std=0.01,
      fc1_bias=False,
  ))


@register("head", "x3d", x3d_head_defaults)
def build_x3d_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> X3DHead:
  return X3DHead(int(model_cfg.num_classes), int(cfg.hidden_dim), float(cfg.dropout_rate),
                 float(cfg.fc_init_std), bool(cfg.fc1_bias), dtype)
