"""MMAction2's TPN neck, the temporal pyramid network (Yang et al., CVPR 2020;
reference/mmaction2_cost.md section 15), with its auxiliary head. Registered as neck
'tpn'.

The backbone returns several stages (`model.backbone.out_stages`, MMAction2's
out_indices (2, 3): res4 and res5), 3D [B, T, H, W, C] or 2D frames [B*T, H, W, C]
(folded back into clips here). On channels-last clips, with mmcv ConvModules (bias-free
Conv3d, BN, ReLU):

1. spatial modulation: each level but the widest gets log2(spatial_channels / C)
   stride-2 (1, 3, 3) ConvModules (`spatial_modulation_{level}_{j}`), so every level
   reaches the top level's width and size; the top level passes as it is.
2. temporal modulation (`temporal_modulation_{level}`): a (3, 1, 1) conv to
   `out_channels` in 32 groups without BN or activation, then a temporal max-pool of
   `temporal_scales[level]` (ceil mode: T -> ceil(T / s)).
3. top-down: each level adds the level above it (upsampling by (1, 1, 1), i.e. none);
   `level_fusion_1` (per level a 1x1x1 ConvModule in 32 groups, `downsamples_{level}`,
   then the concatenation through `fusion_conv`).
4. bottom-up: on the top-down sums ('cascade'; 'parallel': on the temporal modulation's
   outputs), each level adds a (3, 1, 1) conv of the level below (`downsample_ops_{i}`,
   no BN, no activation); `level_fusion_2` as above.
5. `pyramid_fusion`: a 1x1x1 ConvModule with BN and ReLU (mmcv's default activation) on
   [top-down, bottom-up] -> the head's features [B, T', H, W, pyramid_channels].

The auxiliary head (`aux_head`: a stride-2 (1, 3, 3) ConvModule doubling the second
widest level's channels, global average pool, dropout 0.5, `fc`) classifies that level's
backbone features during training only: it sows its logits in "aux_logits" with weight
`aux_loss_weight`, and the train step adds weight x their cross-entropy with the labels
(vidjax/train/steps.py). It is built at init (its weights are in upstream's checkpoints)
and skipped at evaluation.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import BatchNorm, Dtype
from vidjax.models.layers3d import Conv3d
from vidjax.models.registry import register

FLOW_TYPES = ("cascade", "parallel")
# mmcv's xavier_init(distribution='uniform'), as TPN's init_weights gives every Conv3d.
_XAVIER = nn.initializers.xavier_uniform()


class ConvModule3d(nn.Module):
  """mmcv ConvModule with a bias-free Conv3d (`conv`), optional BN3d (`bn`) and ReLU."""
  features: int
  kernel_size: tuple[int, int, int] = (1, 1, 1)
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (0, 0, 0)
  groups: int = 1
  norm: bool = True
  activation: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, T, H, W, C] -> [N, T', H', W', features]."""
    x = Conv3d(self.features, self.kernel_size, self.strides, self.padding, self.groups,
               dtype=self.dtype, kernel_init=_XAVIER, name="conv")(x)
    if self.norm:
      x = BatchNorm(0.9, 1e-5, dtype=self.dtype, name="bn")(x, train)
    return nn.relu(x) if self.activation else x


def temporal_max_pool(x: jax.Array, scale: int) -> jax.Array:
  """`MaxPool3d((s, 1, 1), (s, 1, 1), ceil_mode=True)` on [N, T, H, W, C] -> ceil(T / s)
  frames; the last window takes the frames that are left."""
  if scale == 1:
    return x
  n, t = x.shape[:2]
  out = -(-t // scale)
  pad = out * scale - t
  if pad:
    x = jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2), constant_values=-jnp.inf)
  return x.reshape((n, out, scale) + x.shape[2:]).max(axis=2)


class LevelFusion(nn.Module):
  """Per level a 1x1x1 ConvModule in `groups` groups (`downsamples_{i}`), concatenated,
  then `fusion_conv` (1x1x1 ConvModule) to `features` channels."""
  mid_channels: int
  features: int
  groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, levels: Sequence[jax.Array], train: bool = False) -> jax.Array:
    outs = [ConvModule3d(self.mid_channels, groups=self.groups, dtype=self.dtype,
                         name=f"downsamples_{i}")(x, train) for i, x in enumerate(levels)]
    return ConvModule3d(self.features, dtype=self.dtype, name="fusion_conv")(
        jnp.concatenate(outs, axis=-1), train)


class AuxHead(nn.Module):
  """The auxiliary classifier: stride-2 (1, 3, 3) ConvModule to 2C, global average pool,
  dropout, `fc` -> logits [B, K] float32."""
  num_classes: int
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = ConvModule3d(2 * x.shape[-1], (1, 3, 3), (1, 2, 2), (0, 1, 1), dtype=self.dtype,
                     name="conv")(x, train)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=nn.initializers.normal(0.01),
                    bias_init=nn.initializers.zeros, name="fc")(x).astype(jnp.float32)


class TPN(nn.Module):
  """The TPN neck (module docstring).

  Attributes:
    num_classes: K of the auxiliary head.
    out_channels: the pyramid's width (temporal modulation, level fusion inputs).
    spatial_channels: the width spatial modulation brings every level to (the top
      stage's, 2048 for a ResNet-50).
    fusion_channels: each level fusion's output width.
    pyramid_channels: pyramid_fusion's output width (upstream: 2048), the head's input.
    temporal_scales: per level, the temporal max-pool's window and stride.
    flow_type: 'cascade' (bottom-up on the top-down sums) or 'parallel'.
    groups: channel groups of the temporal modulation and level fusion convs.
    aux_loss_weight: the auxiliary cross-entropy's weight; 0 builds no auxiliary head.
    aux_dropout_rate: the auxiliary head's dropout.
  """
  num_classes: int
  out_channels: int = 1024
  spatial_channels: int = 2048
  fusion_channels: int = 2048
  pyramid_channels: int = 2048
  temporal_scales: Sequence[int] = (8, 8)
  flow_type: str = "cascade"
  groups: int = 32
  aux_loss_weight: float = 0.5
  aux_dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Any, num_segments: int, train: bool = False) -> jax.Array:
    """features: the backbone's stages, each [B, T, H, W, C] or [B*T, H, W, C] (rows
    b*T + t) -> [B, T', H', W', pyramid_channels]."""
    if not isinstance(features, (tuple, list)) or len(features) != len(self.temporal_scales):
      got = len(features) if isinstance(features, (tuple, list)) else "1 array"
      raise ValueError(f"TPN takes {len(self.temporal_scales)} backbone stages (one per "
                       f"model.neck.temporal_scales); got {got}: set "
                       f"model.backbone.out_stages")
    levels = [f if f.ndim == 5 else f.reshape((-1, num_segments) + f.shape[1:])
              for f in features]
    if self.aux_loss_weight and (train or self.is_initializing()):
      aux = AuxHead(self.num_classes, self.aux_dropout_rate, self.dtype, name="aux_head")(
          levels[-2], train)
      if train and not self.is_initializing():
        self.sow("aux_logits", "aux",
                 {"logits": aux, "weight": jnp.float32(self.aux_loss_weight)})

    spatial = []
    for i, x in enumerate(levels):
      for j in range(max(int(math.log2(self.spatial_channels // x.shape[-1])), 0)):
        x = ConvModule3d(2 * x.shape[-1], (1, 3, 3), (1, 2, 2), (0, 1, 1), dtype=self.dtype,
                         name=f"spatial_modulation_{i}_{j}")(x, train)
      spatial.append(x)
    temporal = [temporal_max_pool(
        ConvModule3d(self.out_channels, (3, 1, 1), padding=(1, 0, 0), groups=self.groups,
                     norm=False, activation=False, dtype=self.dtype,
                     name=f"temporal_modulation_{i}")(x, train), int(s))
                for i, (x, s) in enumerate(zip(spatial, self.temporal_scales))]
    shapes = {x.shape for x in temporal}
    if len(shapes) != 1:
      raise ValueError(f"TPN's levels must meet in one shape after modulation, got "
                       f"{sorted(shapes)}; check model.neck.temporal_scales and the stages")

    outs = list(temporal)
    for i in range(len(outs) - 1, 0, -1):   # top-down (upsampling by (1, 1, 1))
      outs[i - 1] = outs[i - 1] + outs[i]
    top_down = LevelFusion(self.out_channels, self.fusion_channels, self.groups, self.dtype,
                           name="level_fusion_1")(outs, train)
    if self.flow_type == "parallel":
      outs = list(temporal)
    for i in range(len(outs) - 1):   # bottom-up
      outs[i + 1] = outs[i + 1] + ConvModule3d(
          self.out_channels, (3, 1, 1), padding=(1, 0, 0), norm=False, activation=False,
          dtype=self.dtype, name=f"downsample_ops_{i}")(outs[i], train)
    bottom_up = LevelFusion(self.out_channels, self.fusion_channels, self.groups, self.dtype,
                            name="level_fusion_2")(outs, train)
    return ConvModule3d(self.pyramid_channels, dtype=self.dtype, name="pyramid_fusion")(
        jnp.concatenate([top_down, bottom_up], axis=-1), train)


def tpn_defaults() -> ml_collections.ConfigDict:
  """MMAction2's TPN on ResNet-50's res4 and res5 (tpn_slowonly_r50 / tpn_tsm_r50)."""
  return ml_collections.ConfigDict(dict(
      name="tpn",
      out_channels=1024,        # the pyramid's width
      spatial_channels=2048,    # every level's width after spatial modulation
      fusion_channels=2048,     # each level fusion's output
      pyramid_channels=2048,    # the neck's output (the head's input)
      temporal_scales=(8, 8),   # per level: temporal max-pool window = stride (ceil mode)
      flow_type="cascade",      # cascade | parallel
      groups=32,                # temporal modulation and level fusion conv groups
      aux_loss_weight=0.5,      # 0: no auxiliary head
      aux_dropout_rate=0.5,
  ))


@register("neck", "tpn", tpn_defaults)
def build_tpn(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
              dtype) -> TPN:
  if cfg.flow_type not in FLOW_TYPES:
    raise ValueError(f"model.neck.flow_type={cfg.flow_type!r}; known: {FLOW_TYPES}")
  scales = tuple(int(s) for s in cfg.temporal_scales)
  if len(scales) < 2 or min(scales) < 1:
    raise ValueError(f"model.neck.temporal_scales={scales}: one scale >= 1 per level, at "
                     f"least two levels")
  return TPN(num_classes=int(model_cfg.num_classes), out_channels=int(cfg.out_channels),
             spatial_channels=int(cfg.spatial_channels),
             fusion_channels=int(cfg.fusion_channels),
             pyramid_channels=int(cfg.pyramid_channels), temporal_scales=scales,
             flow_type=str(cfg.flow_type), groups=int(cfg.groups),
             aux_loss_weight=float(cfg.aux_loss_weight),
             aux_dropout_rate=float(cfg.aux_dropout_rate), dtype=dtype)
