"""MMAction2's TimeSformer (Bertasius et al., ICML 2021) on clips [N, T, H, W, C].

Written from reference/mmaction2_cost.md section 16. A ViT (ViT-B/16: 12 layers of 768
channels, 12 heads of 64, MLP 3072) over the patches of every frame:

  embed   `patch_embed.projection`: a p x p conv with stride p (bias) per frame -> the
          (H / p)(W / p) = P patches of a frame, row by row; `cls_token` prepended to each
          frame and `pos_embed` [1, 1 + P, C] added. Divided and joint attention then keep
          one class token (every frame's is the same in eval mode) and the patches
          patch-major, time-minor: token 1 + p T + t, each patch's T tokens plus
          `time_embed` [1, T, C]. Space-only attention has no time embedding and keeps
          the frames apart: N T sequences of 1 + P tokens.
  layers  `layers_{i}` (upstream `transformer_layers.layers.{i}`), by `attention_type`:
    divided_space_time: (a) `attentions_0`, temporal: each patch's T tokens attend to
          one another: x_p + temporal_fc(MHA(LN(x_p))), the class token untouched;
          (b) `attentions_1`, spatial: each frame's [class token, P patches] attend to
          one another: the class token is copied to every frame, and the residual it
          gets is the mean of its T outputs; no projection after the MHA; (c)
          `ffns_0`: x + fc2(GELU(fc1(LN(x)))). Each of the three has its own LN (`norm`).
    joint_space_time / space_only: the pre-norm ViT block: x + MHA(`norms_0`(x)), then
          x + FFN(`norms_1`(x)); jointly over all 1 + P T tokens, or per frame.
  out     space-only: the frames' sequences averaged over T; then `norm`, and the
          class token [N, C] is the feature.

MHA is torch's: packed q / k / v projection (`attn.in_proj`) and `attn.out_proj`, scale
1 / sqrt(64) (vidjax/models/clip/transformer.py's MultiheadAttention). LayerNorm eps 1e-6,
GELU exact (erf). Stochastic depth: linspace(0, drop_path_rate, layers), applied per
sample of the tensor where upstream applies it (per patch in temporal attention, per frame
in spatial attention, per clip in the FFN). The parameters are tied to the clip size
(`num_frames` rows of time_embed, (img_size / patch_size)^2 + 1 of pos_embed), so the
backbone takes clips of that size only.

Registered backbone: 'timesformer' (its example clip for tracing the model is
[1, num_frames, img_size, img_size, 3]).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax.models.clip.transformer import MultiheadAttention
from vidjax.models.layers import Dtype
from vidjax.models.registry import register

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")
# Upstream's init without ImageNet weights: truncated normal for the embeddings (the time
# embedding and temporal_fc start at 0, so divided attention starts as a spatial ViT).
EMBED_INIT = nn.initializers.truncated_normal(0.02)
# torch.nn.Linear's default weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
LINEAR_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
# torch's MultiheadAttention draws q / k / v Xavier-uniform (std 0.026 at 768 channels);
# normal 0.02, ViT's, is as near and needs no fan arithmetic per width.
ATTN_INIT_STD = 0.02


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
  """torch.nn.LayerNorm(eps): float32 statistics with the two-pass variance."""
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=jnp.float32, name=name)


def _drop_path(x: jax.Array, rate: float, train: bool) -> jax.Array:
  """Stochastic depth: zeroes whole samples (x's first axis) with probability `rate`,
  scaling the rest by 1 / (1 - rate), as mmcv's DropPath; rng 'dropout'."""
  return nn.Dropout(rate, broadcast_dims=tuple(range(1, x.ndim)))(
      x, deterministic=not train or rate == 0.0)


def _attention(width: int, heads: int, dtype: Dtype) -> MultiheadAttention:
  return MultiheadAttention(width, heads, dtype=dtype, init_std=ATTN_INIT_STD,
                            out_init_std=ATTN_INIT_STD, name="attn")


class PatchProjection(nn.Module):
  """Conv2d(3, C, p, stride p) with bias on frames [N, H, W, 3] -> [N, P, C], patches row
  by row. Computed as a product of non-overlapping patches (the same arithmetic as the
  strided conv, and a plain matmul for XLA:CPU); kernel [p, p, 3, C] as nn.Conv's."""
  features: int
  patch_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    p = self.patch_size
    # mmcv's kaiming_init(mode='fan_in', nonlinearity='linear'): std 1 / sqrt(fan_in).
    kernel = self.param("kernel", nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                        (p, p, c, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, (h // p) * (w // p), p * p * c).astype(self.dtype)
    y = x @ kernel.reshape(p * p * c, self.features).astype(self.dtype)
    return y + bias.astype(self.dtype)


class PatchEmbed(nn.Module):
  """Upstream's PatchEmbed: child `projection`."""
  features: int
  patch_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return PatchProjection(self.features, self.patch_size, self.dtype, name="projection")(x)


class FFN(nn.Module):
  """mmcv's FFN: `layers_0_0` (C -> 4C), GELU, `layers_1` (-> C); identity + drop_path of
  it. With `with_norm` (divided attention's FFNWithNorm) it normalises its input with its
  own `norm` first; otherwise the caller passes the normalised input and the identity."""
  width: int
  eps: float = 1e-6
  drop_path: float = 0.0
  with_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, identity: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    if self.with_norm:
      identity, x = x, _layer_norm(self.eps, "norm")(x).astype(x.dtype)
    dense = dict(dtype=self.dtype, kernel_init=LINEAR_INIT)
    y = nn.Dense(4 * self.width, name="layers_0_0", **dense)(x)
    y = nn.gelu(y, approximate=False)
    y = nn.Dense(self.width, name="layers_1", **dense)(y)
    return identity + _drop_path(y, self.drop_path, train)


class _DividedPart(nn.Module):
  """The fields of divided attention's temporal and spatial parts."""
  width: int
  heads: int
  num_frames: int
  eps: float = 1e-6
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32


class DividedTemporalAttention(_DividedPart):
  """Divided attention's temporal part on [N, 1 + P T, C] (patch-major, time-minor):
  children `norm`, `attn`, `temporal_fc` (zero-initialised, as upstream)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n, l, c = x.shape
    t = self.num_frames
    patches = x[:, 1:].reshape(n * ((l - 1) // t), t, c)   # one sequence per patch
    y = _layer_norm(self.eps, "norm")(patches).astype(x.dtype)
    y = _attention(self.width, self.heads, self.dtype)(y)
    # Upstream drops before temporal_fc: a dropped patch still gets its bias.
    y = _drop_path(y, self.drop_path, train)
    y = nn.Dense(c, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                 name="temporal_fc")(y)
    return jnp.concatenate([x[:, :1], x[:, 1:] + y.reshape(n, l - 1, c)], axis=1)


class DividedSpatialAttention(_DividedPart):
  """Divided attention's spatial part on [N, 1 + P T, C]: each frame attends over [class
  token, its P patches]; the class token's residual is the mean of its T outputs.
  Children `norm`, `attn`."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n, l, c = x.shape
    t = self.num_frames
    p = (l - 1) // t
    frames = x[:, 1:].reshape(n, p, t, c).transpose(0, 2, 1, 3).reshape(n * t, p, c)
    cls = jnp.broadcast_to(x[:, None, :1], (n, t, 1, c)).reshape(n * t, 1, c)
    y = jnp.concatenate([cls, frames], axis=1)
    y = _layer_norm(self.eps, "norm")(y).astype(x.dtype)
    y = _attention(self.width, self.heads, self.dtype)(y)
    y = _drop_path(y, self.drop_path, train)   # per frame, as upstream
    cls_res = jnp.mean(y[:, 0].reshape(n, t, c), axis=1, keepdims=True)
    res = y[:, 1:].reshape(n, t, p, c).transpose(0, 2, 1, 3).reshape(n, p * t, c)
    return x + jnp.concatenate([cls_res, res], axis=1)


class SelfAttention(nn.Module):
  """mmcv's MultiheadAttention: child `attn`; identity + drop_path(MHA(query))."""
  width: int
  heads: int
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, query: jax.Array, identity: jax.Array,
               train: bool = False) -> jax.Array:
    y = _attention(self.width, self.heads, self.dtype)(query)
    return identity + _drop_path(y, self.drop_path, train)


class TransformerLayer(nn.Module):
  """One of the `layers_{i}`: divided space-time (attentions_0 temporal, attentions_1
  spatial, ffns_0 with its own norm) or the pre-norm block (norms_0, attentions_0,
  norms_1, ffns_0) of joint space-time and space-only attention. x [N, L, C]."""
  width: int
  heads: int
  num_frames: int
  divided: bool
  eps: float = 1e-6
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    common = dict(drop_path=self.drop_path, dtype=self.dtype)
    if self.divided:
      x = DividedTemporalAttention(self.width, self.heads, self.num_frames, self.eps,
                                   name="attentions_0", **common)(x, train)
      x = DividedSpatialAttention(self.width, self.heads, self.num_frames, self.eps,
                                  name="attentions_1", **common)(x, train)
      return FFN(self.width, self.eps, with_norm=True, name="ffns_0", **common)(
          x, train=train)
    y = _layer_norm(self.eps, "norms_0")(x).astype(x.dtype)
    x = SelfAttention(self.width, self.heads, name="attentions_0", **common)(y, x, train)
    y = _layer_norm(self.eps, "norms_1")(x).astype(x.dtype)
    return FFN(self.width, self.eps, name="ffns_0", **common)(y, x, train)


class TimeSformer(nn.Module):
  """MMAction2's TimeSformer backbone (see the module docstring): [N, T, H, W, 3]
  normalised clips of `num_frames` x `img_size`^2 -> class-token features [N, C]."""
  num_frames: int = 8
  img_size: int = 224
  patch_size: int = 16
  embed_dims: int = 768
  num_heads: int = 12
  num_layers: int = 12
  attention_type: str = "divided_space_time"
  dropout_rate: float = 0.0
  drop_path_rate: float = 0.1
  ln_eps: float = 1e-6
  remat: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    want = (self.num_frames, self.img_size, self.img_size)
    if x.ndim != 5 or tuple(x.shape[1:4]) != want:
      raise ValueError(
          f"TimeSformer takes clips [N, T, H, W, C] of model.backbone.num_frames="
          f"{self.num_frames} x img_size={self.img_size} (its time and position "
          f"embeddings are tied to them); got shape {tuple(x.shape)}. Set data.num_frames "
          f"/ data.image_size to match.")
    n, t = x.shape[:2]
    c = self.embed_dims
    x = PatchEmbed(c, self.patch_size, self.dtype, name="patch_embed")(
        x.reshape((n * t,) + x.shape[2:]).astype(self.dtype))
    p = x.shape[1]
    cls_token = self.param("cls_token", EMBED_INIT, (1, 1, c), jnp.float32)
    pos_embed = self.param("pos_embed", EMBED_INIT, (1, p + 1, c), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls_token.astype(x.dtype), (n * t, 1, c)), x], 1)
    x = nn.Dropout(self.dropout_rate)(x + pos_embed.astype(x.dtype), deterministic=not train)
    if self.attention_type != "space_only":
      time_embed = self.param("time_embed", nn.initializers.zeros, (1, t, c), jnp.float32)
      x = x.reshape(n, t, p + 1, c)
      # Upstream keeps one class-token row per clip (all equal without dropout).
      cls = x[:, 0, :1]
      patches = x[:, :, 1:].transpose(0, 2, 1, 3) + time_embed.astype(x.dtype)
      patches = nn.Dropout(self.dropout_rate)(patches, deterministic=not train)
      x = jnp.concatenate([cls, patches.reshape(n, p * t, c)], axis=1)
    layer_cls = nn.remat(TransformerLayer, static_argnums=(2,)) if self.remat else (
        TransformerLayer)
    rates = np.linspace(0.0, self.drop_path_rate, self.num_layers)
    for i in range(self.num_layers):
      x = layer_cls(width=c, heads=self.num_heads, num_frames=t,
                    divided=self.attention_type == "divided_space_time", eps=self.ln_eps,
                    drop_path=float(rates[i]), dtype=self.dtype, name=f"layers_{i}")(x, train)
    cls = x[:, 0]
    if self.attention_type == "space_only":
      cls = jnp.mean(cls.reshape(n, t, c), axis=1)
    # LayerNorm acts per token: normalising the class token alone is the same.
    return _layer_norm(self.ln_eps, "norm")(cls).astype(self.dtype)


def timesformer_defaults() -> ml_collections.ConfigDict:
  """TimeSformer's defaults (MMAction2's timesformer_divST_8xb8-8x32x1 model: ViT-B/16)."""
  return ml_collections.ConfigDict(dict(
      name="timesformer",
      num_frames=8,         # T the time embedding is built for (data.num_frames)
      img_size=224,         # frame side the position embedding is built for
      patch_size=16,
      embed_dims=768,
      num_heads=12,
      num_layers=12,
      attention_type="divided_space_time",   # | joint_space_time | space_only
      dropout_rate=0.0,     # after the position and time embeddings
      drop_path_rate=0.1,   # stochastic depth, linearly from 0 at the first layer
      ln_eps=1e-6,
      remat=False,          # recompute each layer's activations in the backward pass
  ))


def timesformer_input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The clip shape [1, T, S, S, 3] TimeSformer's embeddings are built for."""
  return (1, int(cfg.num_frames), int(cfg.img_size), int(cfg.img_size), 3)


@register("backbone", "timesformer", timesformer_defaults,
          input_shape=timesformer_input_shape)
def build_timesformer(cfg: ml_collections.ConfigDict, dtype: Any,
                      **hooks: Any) -> TimeSformer:
  if hooks:
    raise ValueError(f"model.backbone.name='timesformer' has no hook slots; got "
                     f"{sorted(hooks)}")
  if cfg.attention_type not in ATTENTION_TYPES:
    raise ValueError(f"model.backbone.attention_type={cfg.attention_type!r}; expected one "
                     f"of {ATTENTION_TYPES}")
  if int(cfg.img_size) % int(cfg.patch_size):
    raise ValueError(f"model.backbone.img_size={cfg.img_size} is not a multiple of "
                     f"patch_size={cfg.patch_size}")
  if int(cfg.embed_dims) % int(cfg.num_heads):
    raise ValueError(f"model.backbone.embed_dims={cfg.embed_dims} is not divisible by "
                     f"num_heads={cfg.num_heads}")
  return TimeSformer(num_frames=int(cfg.num_frames), img_size=int(cfg.img_size),
                     patch_size=int(cfg.patch_size), embed_dims=int(cfg.embed_dims),
                     num_heads=int(cfg.num_heads), num_layers=int(cfg.num_layers),
                     attention_type=str(cfg.attention_type),
                     dropout_rate=float(cfg.dropout_rate),
                     drop_path_rate=float(cfg.drop_path_rate), ln_eps=float(cfg.ln_eps),
                     remat=bool(cfg.remat), dtype=dtype)
