"""The training policy every ResNet-family trunk shares, written once.

Fields (config and module): depth, strides (first-block stride of layer1..layer4),
frozen_stages (k >= 0: stem and layer1..k get no gradient and keep BN in eval mode, as
MMAction2), norm_eval (every BN in eval mode, affines still train), partial_bn (TSN: only
the trunk's first BN trains; the others use running statistics and their affines get no
gradient), bn_eps, bn_momentum (flax convention: 0.9 is PyTorch's 0.1).

Stage 0 is the stem. A trunk subclasses `Trunk`, sets `specs` (depth -> its layout),
calls `check_input` first, takes each stage's BN mode from `stage_train` / `bn_train` and
ends each stage with `end_stage`. Its `frozen_rule` comes from `trunk_frozen_rule`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.layers import Dtype
from vidjax.models.registry import FrozenRule


def trunk_defaults(name: str, depth: int, strides: Sequence[int] = (1, 2, 2, 2),
                   bn_eps: float = 1e-5, **extra: Any) -> ml_collections.ConfigDict:
  """Every config field of a trunk, at its defaults; `extra` adds trunk-specific ones."""
  return ml_collections.ConfigDict(dict(
      name=name,
      depth=depth,
      strides=tuple(strides),   # first-block stride of layer1..layer4
      frozen_stages=-1,         # k >= 0: stem and layer1..k frozen (no grad, BN eval)
      norm_eval=False,          # every BN in eval mode during training
      partial_bn=False,         # TSN partial BN: only the trunk's first BN trains
      bn_eps=bn_eps,
      bn_momentum=0.9,          # flax convention (PyTorch momentum 0.1)
      **extra,
  ))


class Trunk(nn.Module):
  """Base of the ResNet-family trunks: the shared fields and per-stage rules."""
  depth: int = 50
  strides: Sequence[int] = (1, 2, 2, 2)
  frozen_stages: int = -1
  norm_eval: bool = False
  partial_bn: bool = False
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32

  specs: ClassVar[dict[int, Any]] = {}

  def check_input(self, x: jax.Array, num_segments: int) -> None:
    kind = type(self).__name__
    if self.depth not in self.specs:
      raise ValueError(f"{kind} depth {self.depth} is not one of {sorted(self.specs)}")
    if len(self.strides) != 4:
      raise ValueError(f"{kind} strides must have 4 entries, got {tuple(self.strides)}")
    if x.shape[0] % num_segments:
      raise ValueError(f"batch {x.shape[0]} is not a multiple of num_segments={num_segments}")

  def stage_train(self, stage: int, train: bool) -> bool:
    """Whether stage `stage`'s BNs (and hooks) use batch statistics."""
    return train and not self.norm_eval and stage > self.frozen_stages

  def bn_train(self, stage: int, train: bool) -> bool:
    """The same for the trunk's own BNs past the first one, which partial BN freezes."""
    return self.stage_train(stage, train) and not self.partial_bn

  def block_norm(self) -> dict[str, Any]:
    """The NormBlock fields of the trunk's blocks: partial BN freezes their affines."""
    return dict(bn_eps=self.bn_eps, bn_momentum=self.bn_momentum,
                freeze_bn_affine=self.partial_bn, dtype=self.dtype)

  def stride(self, stage: int, index: int) -> int:
    return int(self.strides[stage - 1]) if index == 0 else 1

  def end_stage(self, x: jax.Array, stage: int) -> jax.Array:
    """Cuts the gradient behind a frozen stage."""
    return jax.lax.stop_gradient(x) if stage <= self.frozen_stages else x


def build_trunk(cls: type, cfg: ml_collections.ConfigDict, dtype: Any, **fields: Any) -> Trunk:
  """`cls` built from a resolved trunk config; `fields` adds trunk-specific ones."""
  if cfg.depth not in cls.specs:
    raise ValueError(f"model.backbone.depth={cfg.depth} is not one of {sorted(cls.specs)}")
  return cls(depth=int(cfg.depth), strides=tuple(int(s) for s in cfg.strides),
             frozen_stages=int(cfg.frozen_stages), norm_eval=bool(cfg.norm_eval),
             partial_bn=bool(cfg.partial_bn), bn_eps=float(cfg.bn_eps),
             bn_momentum=float(cfg.bn_momentum), dtype=dtype, **fields)


def stage_of_layer(top: str, stem: Sequence[str] = ("conv1", "bn1")) -> int:
  """Stage of a trunk child name: 0 for the stem's, s for `layer{s}_{i}`."""
  return 0 if top in stem else int(top[len("layer"):].split("_")[0])


def trunk_frozen_rule(stage_of: Callable[[str], int],
                      partial_bn_affine: Callable[[Sequence[str]], bool],
                      always: Callable[[Sequence[str]], bool] = lambda path: False
                      ) -> FrozenRule:
  """The frozen-parameter rule of a trunk.

  A parameter gets no update at all (weight decay included, as upstream leaves it out of
  the optimiser) when `always(path)`, when its stage `stage_of(path[0])` is frozen, or
  under partial BN when `partial_bn_affine(path)` holds for its BN's scale or bias.
  """
  def rule(path: Sequence[str], cfg: ml_collections.ConfigDict) -> bool:
    if always(path) or stage_of(path[0]) <= cfg.frozen_stages:
      return True
    return bool(cfg.partial_bn) and path[-1] in ("scale", "bias") and partial_bn_affine(path)
  return rule
