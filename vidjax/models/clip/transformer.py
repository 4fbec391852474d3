"""CLIP's transformer pieces: QuickGELU, packed-projection attention, the pre-LN block.

Module and parameter names mirror OpenAI CLIP's state_dict (`attn.in_proj`, `attn.out_proj`,
`ln_1`, `mlp.c_fc`, `mlp.c_proj`, `ln_2`), so converters/clip.py only renames indices.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.layers import Dtype

LN_EPS = 1e-5   # torch.nn.LayerNorm's default, which CLIP keeps


def quick_gelu(x: jax.Array) -> jax.Array:
  """CLIP's GELU approximation, x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def layer_norm() -> nn.LayerNorm:
  """CLIP's LayerNorm: computed in float32 (CLIP's fp16-safe subclass); callers cast back
  with `.astype(x.dtype)`. Its parameters are `scale` and `bias` (torch weight, bias)."""
  return nn.LayerNorm(epsilon=LN_EPS, dtype=jnp.float32)


def causal_mask(length: int) -> jax.Array:
  """Additive mask [L, L]: -inf above the diagonal (a token sees itself and earlier ones)."""
  return jnp.triu(jnp.full((length, length), -jnp.inf, jnp.float32), k=1)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          bias: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
  """Multi-head attention of split heads.

  Args:
    q: [N, Lq, H, Dh]; k, v: [N, Lk, H, Dh].
    bias: additive logits bias broadcastable to [N, H, Lq, Lk], or None.
  Returns:
    (out [N, Lq, H, Dh], weights [N, H, Lq, Lk] float32 after the softmax).
  """
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("nqhd,nkhd->nhqk", q * jnp.asarray(scale, q.dtype), k,
                      preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias
  weights = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("nhqk,nkhd->nqhd", weights.astype(v.dtype), v)
  return out, weights


class MultiheadAttention(nn.Module):
  """torch.nn.MultiheadAttention (batch first) with its packed q/k/v projection.

  `in_proj` holds [q | k | v] along its output axis (torch's in_proj_weight rows).
  """
  width: int
  heads: int
  dtype: Dtype = jnp.float32
  init_std: Optional[float] = None       # in_proj; None: width ** -0.5
  out_init_std: Optional[float] = None   # out_proj; None: width ** -0.5

  def setup(self):
    if self.width % self.heads:
      raise ValueError(f"attention width {self.width} is not divisible by {self.heads} heads")
    std = self.init_std or self.width ** -0.5
    out_std = self.out_init_std or self.width ** -0.5
    self.in_proj = nn.Dense(3 * self.width, dtype=self.dtype,
                            kernel_init=nn.initializers.normal(std))
    self.out_proj = nn.Dense(self.width, dtype=self.dtype,
                             kernel_init=nn.initializers.normal(out_std))

  def split_heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[:-1] + (self.heads, self.width // self.heads))

  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None) -> jax.Array:
    """Self-attention of x [N, L, W] (bias: see `dot_product_attention`) -> [N, L, W]."""
    q, k, v = jnp.split(self.in_proj(x), 3, axis=-1)
    out, _ = dot_product_attention(self.split_heads(q), self.split_heads(k),
                                   self.split_heads(v), bias)
    return self.out_proj(out.reshape(x.shape[:-1] + (self.width,)))


class Mlp(nn.Module):
  """c_fc (width -> 4 width), QuickGELU, c_proj (-> width)."""
  width: int
  dtype: Dtype = jnp.float32
  proj_std: Optional[float] = None

  def setup(self):
    self.c_fc = nn.Dense(4 * self.width, dtype=self.dtype,
                         kernel_init=nn.initializers.normal((2 * self.width) ** -0.5))
    self.c_proj = nn.Dense(self.width, dtype=self.dtype,
                           kernel_init=nn.initializers.normal(
                               self.proj_std or self.width ** -0.5))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.c_proj(quick_gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
  """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). x [N, L, W]."""
  width: int
  heads: int
  layers: int = 12   # of the tower: scales the output projections' init as CLIP does
  dtype: Dtype = jnp.float32

  def setup(self):
    proj_std = self.width ** -0.5 * (2 * self.layers) ** -0.5
    self.ln_1 = layer_norm()
    self.attn = MultiheadAttention(self.width, self.heads, dtype=self.dtype,
                                   out_init_std=proj_std)
    self.ln_2 = layer_norm()
    self.mlp = Mlp(self.width, dtype=self.dtype, proj_std=proj_std)

  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None) -> jax.Array:
    x = x + self.attn(self.ln_1(x).astype(x.dtype), bias)
    return x + self.mlp(self.ln_2(x).astype(x.dtype))


LOGIT_SCALE_INIT = math.log(1 / 0.07)   # CLIP's initial temperature, before training
