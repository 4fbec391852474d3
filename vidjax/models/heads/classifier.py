"""The classifier every head ends with: dropout -> fc, logits in float32."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

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
