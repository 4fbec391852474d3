"""MMAction2's C3D (Tran et al., ICCV 2015) on clips [N, T, H, W, C], channels last.

Written from reference/mmaction2_cost.md section 7. Eight 3x3x3 convs with bias and no
BatchNorm (padding 1, each followed by ReLU), max-pools between them, then two fully
connected layers:

  conv1a 3 -> 64        pool1 (1, 2, 2) / (1, 2, 2)
  conv2a -> 128         pool2 (2, 2, 2) / (2, 2, 2)
  conv3a, conv3b -> 256 pool3 (2, 2, 2) / (2, 2, 2)
  conv4a, conv4b -> 512 pool4 (2, 2, 2) / (2, 2, 2)
  conv5a, conv5b 512    pool5 (2, 2, 2) / (2, 2, 2), padding (0, 1, 1)
  flatten in PyTorch's channels-first order (C, T, H, W) -> fc6 -> ReLU -> dropout
  -> fc7 -> ReLU: features [N, 4096]

A 16x112x112 clip reaches pool5 as 512 x 1 x 4 x 4 = 8192 values, fc6's input width, so
the backbone takes clips of `input_size` (T, H, W) only: fc6's weights are tied to it.
The features are transposed to [N, C, T, H, W] before flattening, so fc6's kernel is
upstream's Linear weight transposed, as every other Linear.

Widths `base_channels` x (1, 2, 4, 8, 8) and `hidden_dim` (fc6 / fc7) are upstream's 64
and 4096; smaller values only serve the smoke model of tests. Flax names mirror the
upstream state_dict (`conv1a/conv/{kernel,bias}`, `fc6/{kernel,bias}`).

Registered backbone: 'c3d' (its example clip for tracing the model is `input_size`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import Dtype
from vidjax.models.layers3d import Conv3d, max_pool3d_spatial, max_pool3d_temporal, triple
from vidjax.models.registry import register

# (name, width multiple of base_channels, pool after it: None | (temporal?, spatial pad)).
LAYOUT = (("conv1a", 1, (False, 0)), ("conv2a", 2, (True, 0)), ("conv3a", 4, None),
          ("conv3b", 4, (True, 0)), ("conv4a", 8, None), ("conv4b", 8, (True, 0)),
          ("conv5a", 8, None), ("conv5b", 8, (True, 1)))
# mmcv's normal_init of C3D's Linears (its init_std).
FC_INIT_STD = 0.005


class ConvReLU3d(nn.Module):
  """mmcv ConvModule without a norm: 3x3x3 conv with bias (child `conv`) -> ReLU."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.relu(Conv3d(self.features, (3, 3, 3), padding=(1, 1, 1), use_bias=True,
                          dtype=self.dtype, name="conv")(x))


class C3D(nn.Module):
  """MMAction2's C3D backbone (see the module docstring): [N, T, H, W, 3] normalised
  clips of `input_size` -> fc7 features [N, hidden_dim]."""
  input_size: tuple[int, int, int] = (16, 112, 112)
  base_channels: int = 64
  hidden_dim: int = 4096
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 5 or tuple(x.shape[1:4]) != tuple(self.input_size):
      raise ValueError(
          f"C3D takes clips [N, T, H, W, C] of model.backbone.input_size="
          f"{tuple(self.input_size)} (fc6's weights are tied to the pool5 size); got "
          f"shape {tuple(x.shape)}. Set data.num_frames / data.image_size to match, or "
          f"input_size for a model trained at another size.")
    x = x.astype(self.dtype)
    for name, width, pool in LAYOUT:
      x = ConvReLU3d(self.base_channels * width, self.dtype, name=name)(x)
      if pool is not None:
        temporal, pad = pool
        if temporal:
          x = max_pool3d_temporal(x, f"C3D's pool after {name}")
        x = max_pool3d_spatial(x, 2, (1, 2, 2), pad)
    # PyTorch's flatten order (C, T, H, W), so fc6 is upstream's weight as it is.
    x = jnp.transpose(x, (0, 4, 1, 2, 3)).reshape((x.shape[0], -1))
    dense = dict(dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.normal(FC_INIT_STD),
                 bias_init=nn.initializers.zeros)
    x = nn.relu(nn.Dense(self.hidden_dim, name="fc6", **dense)(x))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.relu(nn.Dense(self.hidden_dim, name="fc7", **dense)(x))


def c3d_defaults() -> ml_collections.ConfigDict:
  """C3D's defaults (MMAction2's c3d_sports1m_pretrained model file)."""
  return ml_collections.ConfigDict(dict(
      name="c3d",
      input_size=(16, 112, 112),  # clips (T, H, W) the fc6 weights are built for
      base_channels=64,           # conv1a's width; the convs have 1, 2, 4, 8, 8 times it
      hidden_dim=4096,            # fc6 and fc7 widths
      dropout_rate=0.5,           # between fc6 and fc7
  ))


def c3d_input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The clip shape [1, T, H, W, 3] that C3D's fc6 is built for."""
  return (1,) + triple(tuple(cfg.input_size), "model.backbone.input_size") + (3,)


@register("backbone", "c3d", c3d_defaults, input_shape=c3d_input_shape)
def build_c3d(cfg: ml_collections.ConfigDict, dtype: Any, **hooks: Any) -> C3D:
  if hooks:
    raise ValueError(f"model.backbone.name='c3d' has no hook slots; got {sorted(hooks)}")
  size = triple(tuple(cfg.input_size), "model.backbone.input_size")
  if size[0] < 16:
    raise ValueError(f"model.backbone.input_size={size}: C3D halves time four times before "
                     f"pool5's 2-frame window, so it needs at least 16 frames")
  return C3D(size, int(cfg.base_channels), int(cfg.hidden_dim), float(cfg.dropout_rate),
             dtype)
