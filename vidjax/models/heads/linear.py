"""Linear classifier head (TSN's dropout + new_fc) and segment consensus."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.layers import Dtype


class LinearHead(nn.Module):
  """Dropout -> fc, the TSN/TSM head (`new_fc` upstream, child `fc` here).

  Attributes:
    num_classes: K.
    dropout_rate: dropout before the fc (needs rng 'dropout' in training when > 0).
    init_std: fc weight init, normal with this std (TSM: 0.001); bias init 0.
    dtype: computation dtype; the logits are returned in float32.
  """
  num_classes: int
  dropout_rate: float = 0.5
  init_std: float = 0.001
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, C] pooled features -> logits [N, K] float32."""
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.normal(self.init_std),
                 bias_init=nn.initializers.zeros, name="fc")(x)
    return x.astype(jnp.float32)


CONSENSUS_TYPES = ("avg",)


def consensus(logits: jax.Array, kind: str = "avg") -> jax.Array:
  """Fuses per-segment logits [B, T, K] -> [B, K]. 'avg' is TSN's mean over T."""
  if kind == "avg":
    return jnp.mean(logits, axis=1)
  raise ValueError(f"unknown consensus {kind!r}; known: {CONSENSUS_TYPES}")
