"""TCPNet (Temporal-attentive Covariance Pooling): a 2D backbone per frame, the TCP head
over the whole clip, dropout, fc. Registered as model name 'tcp'.

One prediction per clip: the covariance pools all frames, so there is no segment
consensus (reference/tcpnet.md section 1). Variables: `backbone/...` (upstream
`base_model.*`), `tcp/...` (`base_model.TCP.*`), `head/fc` (`new_fc`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.backbones import resnet_defaults
from vidjax.models.heads.linear import LinearHead
from vidjax.models.heads.tcp import TCPHead
from vidjax.models.layers import Dtype, normalize_pixels, resolve_dtype
from vidjax.models.recognizers import IMAGENET_MEAN, IMAGENET_STD
from vidjax.models.registry import build_backbone, register_model


def tcp_defaults() -> ml_collections.ConfigDict:
  """Every accepted field of `config.model` for name 'tcp', at its default (TCP TSN-R50)."""
  backbone = resnet_defaults()
  backbone.strides = (1, 2, 2, 1)   # TCPNet: layer4 stride 1, features at 1/16
  return ml_collections.ConfigDict(dict(
      name="tcp",
      num_classes=400,
      num_segments=8,             # T; fixes conv_1d's kernel T//2+1, so clips must match
      dropout_rate=0.5,           # on the covariance vector (K400 0.5, HMDB TSN 0.8)
      pixel_mean=IMAGENET_MEAN,   # 0..255 units; None (with pixel_std None) => raw pixels
      pixel_std=IMAGENET_STD,     #   (pre-activation R152 takes raw pixels)
      fc_init_std=0.001,
      dtype="float32",            # computation dtype; params, covariance, sqrt stay float32
      backbone=backbone,
      tcp=ml_collections.ConfigDict(dict(
          dim_reduce=256,         # first 1x1 reduction (hard-coded upstream)
          dim=128,                # covariance size C: C(C+1)/2 = 8256 features
          use_tsa=True,           # temporal-based spatial attention
          use_tca=True,           # temporal-based channel attention
          use_conv1d=True,        # circular temporal conv (and the attention residual)
          sqrt_iters=3,           # Newton-Schulz iterations of the iSQRT square root
      )),
  ))


class TCPRecognizer(nn.Module):
  """clips [B, T, H, W, 3] (uint8 or float 0..255) -> normalise -> fold T into the batch
  (row b*T + t) -> backbone [B*T, h, w, C] -> TCP head [B, D] -> dropout -> fc [B, K].

  Attributes:
    backbone: called as `backbone(x, train=..., num_segments=T)`.
    tcp: the TCPHead.
    num_classes, num_segments, dropout_rate, fc_init_std: see `tcp_defaults`.
    pixel_mean, pixel_std: per-channel values in 0..255 units; None for raw pixels.
    dtype: computation dtype of the normalised input and the classifier.
  """
  backbone: nn.Module
  tcp: TCPHead
  num_classes: int
  num_segments: int
  dropout_rate: float = 0.5
  fc_init_std: float = 0.001
  pixel_mean: Optional[Sequence[float]] = IMAGENET_MEAN
  pixel_std: Optional[Sequence[float]] = IMAGENET_STD
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, clips: jax.Array, train: bool = False) -> jax.Array:
    """clips: [B, T, H, W, 3] -> logits [B, num_classes] (float32)."""
    if clips.ndim != 5:
      raise ValueError(f"TCPRecognizer expects clips [B, T, H, W, C], got shape "
                       f"{clips.shape}; fold multiple views into B first.")
    b, t = clips.shape[:2]
    if t != self.num_segments:
      raise ValueError(f"tcp model built for num_segments={self.num_segments} (conv_1d "
                       f"kernel {self.num_segments // 2 + 1}) got clips with T={t}")
    x = normalize_pixels(clips, self.pixel_mean, self.pixel_std, self.dtype)
    x = x.reshape((b * t,) + clips.shape[2:])
    features = self.backbone(x, train=train, num_segments=t)
    pooled = self.tcp(features, num_segments=t, train=train)
    return LinearHead(self.num_classes, self.dropout_rate, self.fc_init_std, self.dtype,
                      name="head")(pooled.astype(self.dtype), train)


def _input_shape(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  return (1, int(cfg.num_segments), 224, 224, 3)


@register_model("tcp", tcp_defaults, input_shape=_input_shape)
def build_tcp(cfg: ml_collections.ConfigDict) -> TCPRecognizer:
  dtype = resolve_dtype(cfg.dtype)
  head = TCPHead(
      dim_reduce=int(cfg.tcp.dim_reduce), dim=int(cfg.tcp.dim),
      use_tsa=bool(cfg.tcp.use_tsa), use_tca=bool(cfg.tcp.use_tca),
      use_conv1d=bool(cfg.tcp.use_conv1d), sqrt_iters=int(cfg.tcp.sqrt_iters),
      bn_momentum=float(cfg.backbone.get("bn_momentum", 0.9)),
      # Upstream's partial BN freezes every BatchNorm2d of base_model after the first,
      # and TCP sits inside base_model.
      freeze_bn=bool(cfg.backbone.get("partial_bn", False)),
      dtype=dtype)
  return TCPRecognizer(
      backbone=build_backbone(cfg.backbone, dtype),
      tcp=head,
      num_classes=int(cfg.num_classes),
      num_segments=int(cfg.num_segments),
      dropout_rate=float(cfg.dropout_rate),
      fc_init_std=float(cfg.fc_init_std),
      pixel_mean=None if cfg.pixel_mean is None else tuple(cfg.pixel_mean),
      pixel_std=None if cfg.pixel_std is None else tuple(cfg.pixel_std),
      dtype=dtype)
