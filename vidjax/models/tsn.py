"""TSN (Temporal Segment Networks) as in the TSM code base: a 2D ResNet per frame, dropout,
fc, average consensus. Registered as model name 'tsn'."""

from __future__ import annotations

import ml_collections

from vidjax.models.backbones import resnet_defaults
from vidjax.models.heads.linear import CONSENSUS_TYPES
from vidjax.models.layers import resolve_dtype
from vidjax.models.recognizers import IMAGENET_MEAN, IMAGENET_STD, Recognizer2D
from vidjax.models.registry import build_backbone, register_model
from vidjax.models.temporal import build_hooks, temporal_defaults


def tsn_defaults() -> ml_collections.ConfigDict:
  """Every accepted field of `config.model` for name 'tsn', at its default."""
  return ml_collections.ConfigDict(dict(
      name="tsn",
      num_classes=400,
      dropout_rate=0.5,
      pixel_mean=IMAGENET_MEAN,   # 0..255 units; None (with pixel_std None) => raw pixels
      pixel_std=IMAGENET_STD,
      fc_init_std=0.001,
      consensus="avg",
      dtype="float32",            # computation dtype; params stay float32
      backbone=resnet_defaults(),
      # Temporal modules (TSM shift, non-local, GC's ECal, ...), all disabled by default:
      # one sub-config each, see vidjax/models/temporal/.
      **temporal_defaults(),
  ))


@register_model("tsn", tsn_defaults)
def build_tsn(cfg: ml_collections.ConfigDict) -> Recognizer2D:
  if cfg.consensus not in CONSENSUS_TYPES:
    raise ValueError(f"model.consensus={cfg.consensus!r}; known: {CONSENSUS_TYPES}")
  dtype = resolve_dtype(cfg.dtype)
  return Recognizer2D(
      backbone=build_backbone(cfg.backbone, dtype, **build_hooks(cfg)),
      num_classes=int(cfg.num_classes),
      dropout_rate=float(cfg.dropout_rate),
      fc_init_std=float(cfg.fc_init_std),
      pixel_mean=None if cfg.pixel_mean is None else tuple(cfg.pixel_mean),
      pixel_std=None if cfg.pixel_std is None else tuple(cfg.pixel_std),
      consensus=cfg.consensus,
      dtype=dtype)
