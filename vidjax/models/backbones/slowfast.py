"""MMAction2's SlowFast (`ResNet3dSlowFast`) on clips [N, T, H, W, C], channels last.

Written from reference/mmaction2_cost.md section 4. Two ResNet3d trunks
(backbones/resnet3d.py), the children `slow_path` and `fast_path`, see the same clip at
two frame rates:

  input   slow: frames 0, tau, 2 tau, ... (T // tau of them: PyTorch's nearest temporal
          resize by 1 / tau, `resample_rate` tau); fast: every (tau // alpha)-th frame
          (all of them in every zoo config; `speed_ratio` alpha).
  stems   both pathways' conv1 and max-pool; then the first lateral connection.
  stages  layer s of both pathways, s = 1..4; after layers 1..3 a lateral connection.
  out     (slow [N, T / tau, H / 32, W / 32, 8 * 256], fast [N, T / (tau / alpha), ...,
          8 * 256 / beta]) for R50 pathways.

A lateral connection carries the fast features into the slow pathway: a time-strided
conv, kernel (fusion_kernel, 1, 1), stride (alpha, 1, 1), padding ((k - 1) // 2, 0, 0),
no bias, no BN and no ReLU (`lateral_norm` adds both), from `w / beta` fast channels to
`lateral_infl * w / beta` (`channel_ratio` beta, `w` the width of the slow features it
joins), concatenated after the slow features on the channel axis. The slow stages thus
take widened inputs (R50: layer1 64 + 16, layer2 256 + 64, layer3 512 + 128, layer4
1024 + 256, MMAction2's `lateral_inplanes`); ResNet3d's blocks size themselves from
their input. The convs are the slow pathway's children `conv1_lateral` and
`layer{1,2,3}_lateral`, as in the upstream state_dict (`slow_path.conv1_lateral.conv.weight`).

Config (`model.backbone`, MMAction2's names): `resample_rate`, `speed_ratio`,
`channel_ratio`; `slow_pathway` and `fast_pathway` hold ResNet3d's fields (depth,
base_channels, conv1_kernel, inflate, frozen_stages, norm_eval, ...; without `with_pool1`,
`with_pool2` and `out_stages`, which the SlowFast forward does not use: both stems always
max-pool, there is no pool2); `slow_pathway` adds `lateral`, `fusion_kernel`,
`lateral_norm` and `lateral_infl`. Defaults: MMAction2's SlowFast-R50 4x16 (tau 8,
alpha 8, beta 8, fusion kernel 5; slow conv1 (1, 7, 7) and layer3-4 inflated; fast 8
base channels, conv1 (5, 7, 7), every block inflated).

Training policy per pathway as ResNet3d's; `frozen_stages` k also freezes the slow
pathway's `layer1..k_lateral` and, as upstream, never `conv1_lateral`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.backbones.resnet3d import (ResNet3d, build_resnet3d_fields,
                                              resnet3d_defaults)
from vidjax.models.backbones.trunk import build_trunk, stage_of_layer, trunk_frozen_rule
from vidjax.models.layers import NormBlock
from vidjax.models.layers3d import Conv3d
from vidjax.models.registry import register

PATHWAYS = {"slow_path": "slow_pathway", "fast_path": "fast_pathway"}   # module -> config
# ResNet3d fields that the SlowFast forward ignores upstream: not in a pathway's config.
_UNUSED = ("name", "with_pool1", "with_pool2", "out_stages")
_LATERAL_FIELDS = ("lateral", "fusion_kernel", "lateral_norm", "lateral_infl")


class LateralConv(NormBlock):
  """mmcv ConvModule with a bias-free Conv3d `conv`, and with `lateral_norm` a BN3d
  `bn` and ReLU: kernel (k, 1, 1), stride (alpha, 1, 1), padding ((k - 1) // 2, 0, 0)."""
  features: int
  fusion_kernel: int
  speed_ratio: int
  lateral_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [N, T, H, W, C] -> [N, T', H, W, features], T' = (T + 2p - k) // alpha + 1."""
    k = self.fusion_kernel
    x = Conv3d(self.features, (k, 1, 1), (self.speed_ratio, 1, 1), ((k - 1) // 2, 0, 0),
               dtype=self.dtype, name="conv")(x)
    if not self.lateral_norm:
      return x
    return nn.relu(self.norm("bn")(x, train))


class ResNet3dPathway(ResNet3d):
  """A SlowFast pathway: ResNet3d plus, with `lateral`, the lateral convs that bring the
  other pathway's features into this one (module docstring).

  Attributes:
    lateral: whether this pathway receives lateral connections (the slow one).
    speed_ratio: alpha, the lateral convs' temporal stride.
    channel_ratio: beta, the other pathway's channel reduction.
    fusion_kernel: the lateral convs' temporal kernel size.
    lateral_norm: BN and ReLU after each lateral conv.
    lateral_infl: a lateral conv's output / input channels.
  """
  lateral: bool = False
  speed_ratio: int = 8
  channel_ratio: int = 8
  fusion_kernel: int = 5
  lateral_norm: bool = False
  lateral_infl: int = 2

  def stage_inputs(self) -> tuple[int, ...]:
    """Widths of this pathway's own features before lateral s = 0 (after the stem) and
    s = 1..3 (after layer s)."""
    specs = self.block_specs()
    return (self.base_channels,) + tuple(stage[-1].out_channels for stage in specs[:3])

  def setup(self):
    super().setup()
    if self.lateral:
      self.laterals = [
          LateralConv(w * self.lateral_infl // self.channel_ratio, self.fusion_kernel,
                      self.speed_ratio, self.lateral_norm, **self.block_norm(),
                      name="conv1_lateral" if s == 0 else f"layer{s}_lateral")
          for s, w in enumerate(self.stage_inputs())]

  def fuse(self, x: jax.Array, other: jax.Array, s: int, train: bool = False) -> jax.Array:
    """x [N, T, H, W, C] with lateral s (0: after the stems, 1..3: after layer s) of the
    other pathway's features `other` [N, T * alpha, H, W, C'] concatenated on channels."""
    if not self.lateral:
      return x
    where = "the stems" if s == 0 else f"layer{s}"
    want = self.stage_inputs()[s] // self.channel_ratio
    if other.shape[-1] != want:
      raise ValueError(f"SlowFast lateral after {where}: the fast pathway gives "
                       f"{other.shape[-1]} channels, the slow pathway's lateral conv takes "
                       f"{want} (slow width / channel_ratio {self.channel_ratio}); check "
                       f"model.backbone.fast_pathway.base_channels and depth")
    # Upstream never freezes conv1_lateral; layer{s}_lateral follows layer s.
    bn_train = (train and not self.norm_eval and not self.partial_bn) if s == 0 else (
        self.bn_train(s, train))
    y = self.laterals[s](other, bn_train)
    if y.shape[1:4] != x.shape[1:4]:
      raise ValueError(f"SlowFast lateral after {where}: fast features {other.shape[1:4]} "
                       f"(T, H, W) become {y.shape[1:4]}, the slow pathway has "
                       f"{x.shape[1:4]}; feed a frame count that is a multiple of "
                       f"model.backbone.resample_rate")
    return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


def temporal_nearest(x: jax.Array, rate: int, what: str) -> jax.Array:
  """PyTorch's nearest resize of the time axis by 1 / rate on [N, T, H, W, C]: frames
  0, rate, 2 rate, ... (T // rate of them)."""
  t = x.shape[1]
  if t // rate < 1:
    raise ValueError(f"SlowFast: the {what} pathway takes every {rate}-th frame and needs "
                     f"at least {rate} frames, got {t} (input {x.shape}); feed more frames")
  return x if rate == 1 else x[:, :(t // rate) * rate:rate]


class SlowFast(nn.Module):
  """clips [N, T, H, W, C] (normalised) -> (slow features, fast features), each
  [N, T', H / 32, W / 32, C'] (module docstring)."""
  slow_path: ResNet3dPathway
  fast_path: ResNet3dPathway
  resample_rate: int = 8
  speed_ratio: int = 8

  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    if x.ndim != 5:
      raise ValueError(f"SlowFast expects clips [N, T, H, W, C], got shape {x.shape}")
    slow = self.slow_path.stem(temporal_nearest(x, self.resample_rate, "slow"), train)
    fast = self.fast_path.stem(
        temporal_nearest(x, self.resample_rate // self.speed_ratio, "fast"), train)
    slow = self.slow_path.fuse(slow, fast, 0, train)
    for s in range(1, 5):
      slow = self.slow_path.stage(slow, s, train)
      fast = self.fast_path.stage(fast, s, train)
      if s < 4:
        slow = self.slow_path.fuse(slow, fast, s, train)
    return slow, fast


def pathway_defaults(**changes: Any) -> ml_collections.ConfigDict:
  """A pathway's config: ResNet3d's fields (without those SlowFast ignores), `changes`."""
  cfg = resnet3d_defaults()
  for field in _UNUSED:
    del cfg[field]
  cfg.update(changes)
  return cfg


def slowfast_defaults() -> ml_collections.ConfigDict:
  """MMAction2's ResNet3dSlowFast defaults (SlowFast-R50 4x16)."""
  return ml_collections.ConfigDict(dict(
      name="slowfast",
      resample_rate=8,    # tau: the slow pathway takes every tau-th frame
      speed_ratio=8,      # alpha: the fast pathway takes every (tau // alpha)-th frame
      channel_ratio=8,    # beta: fast pathway widths are the slow ones / beta
      slow_pathway=pathway_defaults(
          conv1_kernel=(1, 7, 7), inflate=(0, 0, 1, 1),
          lateral=True,         # lateral connections from the fast pathway
          fusion_kernel=5,      # their temporal kernel
          lateral_norm=False,   # BN + ReLU after each lateral conv
          lateral_infl=2),      # lateral conv output / input channels
      fast_pathway=pathway_defaults(base_channels=8, conv1_kernel=(5, 7, 7)),
  ))


def _pathway_stage(top: str) -> int:
  # Upstream's frozen stages never include conv1_lateral (5: past every stage).
  return 5 if top == "conv1_lateral" else stage_of_layer(top, stem=("conv1",))


_pathway_rule = trunk_frozen_rule(
    _pathway_stage, lambda path: path[0] != "conv1" and len(path) >= 2 and path[-2] == "bn")


def slowfast_frozen_rule(path: tuple[str, ...], cfg: ml_collections.ConfigDict) -> bool:
  """Each pathway's parameters follow its own frozen_stages / partial_bn."""
  return _pathway_rule(path[1:], cfg[PATHWAYS[path[0]]])


def _build_pathway(cfg: ml_collections.ConfigDict, dtype: Any,
                   **lateral: Any) -> ResNet3dPathway:
  full = resnet3d_defaults()
  full.update({k: v for k, v in cfg.items() if k not in _LATERAL_FIELDS})
  fields = build_resnet3d_fields(full)
  for field in _UNUSED[1:]:
    fields.pop(field)
  pathway = build_trunk(ResNet3dPathway, cfg, dtype, **fields, **lateral)
  pathway.block_specs()   # checks the per-stage patterns now, naming the pathway
  return pathway


@register("backbone", "slowfast", slowfast_defaults, frozen_rule=slowfast_frozen_rule)
def build_slowfast(cfg: ml_collections.ConfigDict, dtype, **hooks) -> SlowFast:
  if hooks:
    raise ValueError(f"model.backbone.name='slowfast' has no hook slots; got {sorted(hooks)}")
  tau, alpha, beta = int(cfg.resample_rate), int(cfg.speed_ratio), int(cfg.channel_ratio)
  if min(tau, alpha, beta) < 1 or tau < alpha:
    raise ValueError(f"model.backbone: resample_rate={tau}, speed_ratio={alpha} and "
                     f"channel_ratio={beta} must be >= 1 with resample_rate >= speed_ratio")
  slow = cfg.slow_pathway
  lateral = dict(lateral=bool(slow.lateral), speed_ratio=alpha, channel_ratio=beta,
                 fusion_kernel=int(slow.fusion_kernel), lateral_norm=bool(slow.lateral_norm),
                 lateral_infl=int(slow.lateral_infl))
  paths = {}
  for module, field in PATHWAYS.items():
    try:
      paths[module] = _build_pathway(cfg[field], dtype,
                                     **(lateral if module == "slow_path" else {}))
    except ValueError as e:   # the trunk names its fields as model.backbone.X
      raise ValueError(str(e).replace("model.backbone.", f"model.backbone.{field}.")) from None
  return SlowFast(paths["slow_path"], paths["fast_path"], tau, alpha)
