"""TSN's head: global average pool, dropout, fc, segment consensus. Registered as 'tsn'."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.heads.classifier import (ClassifierHead, classifier_defaults,
                                             classifier_fields)
from vidjax.models.layers import global_avg_pool
from vidjax.models.registry import register

CONSENSUS_TYPES = ("avg",)


def consensus(logits: jax.Array, kind: str = "avg") -> jax.Array:
  """Fuses per-segment logits [B, T, K] -> [B, K]. 'avg' is TSN's mean over T."""
  if kind == "avg":
    return jnp.mean(logits, axis=1)
  raise ValueError(f"unknown consensus {kind!r}; known: {CONSENSUS_TYPES}")


class TSNHead(ClassifierHead):
  """[B*T, h, w, C] frame features -> pool -> dropout -> fc -> [B, T, K] -> consensus.

  Attributes:
    ClassifierHead's fields (dropout_rate, TSM: 0.5 to 0.8; init_std, TSM: 0.001).
    consensus: 'avg'.
  """
  init_std: float = 0.001
  consensus: str = "avg"

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [B*T, h, w, C] (rows b*T + t) -> logits [B, num_classes] float32."""
    logits = self.classify(global_avg_pool(x), train)
    return consensus(logits.reshape(-1, num_segments, self.num_classes), self.consensus)


def tsn_head_defaults() -> ml_collections.ConfigDict:
  return classifier_defaults("tsn", 0.001, consensus="avg")


@register("head", "tsn", tsn_head_defaults)
def build_tsn_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> TSNHead:
  if cfg.consensus not in CONSENSUS_TYPES:
    raise ValueError(f"model.head.consensus={cfg.consensus!r}; known: {CONSENSUS_TYPES}")
  return TSNHead(consensus=cfg.consensus, **classifier_fields(cfg, model_cfg, dtype))
