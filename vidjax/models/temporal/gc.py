"""Group contextualization (GC, CVPR 2022): the element-wise calibrators ECal-L/T/S/G.

Written from reference/tsm_gc.md section 2. In a block, the pre-ReLU output of the BN
after the 3x3 conv (bn2 of a Bottleneck; bn1 of a BasicBlock, which upstream never
uses) is split into channel groups of width `c = width // cdiv`; calibrator k gates
group k with `x * sigmoid(context)` and the other channels pass through unchanged:

  ECal-L (local, upstream GC_L33D):    Conv3d (3,1,1) over time per pixel -> BN -> sigmoid;
                                       gate [N, T, H, W, c].
  ECal-T (temporal, GC_T13D):          mean over H, W -> Conv1d k=3 over time -> BN ->
                                       sigmoid; gate [N, T, 1, 1, c].
  ECal-S (spatial, GC_S23DD):          mean over T -> 3x3 conv, dilation 2 -> sigmoid, no BN
                                       (upstream stores a BN it never applies; the
                                       converter drops it by an explicit rule);
                                       gate [N, 1, H, W, c], shared by all frames.
  ECal-G (global, GC_CLLD):            mean over T, H, W -> Linear c->c (no bias, no
                                       reduction) -> BN -> sigmoid; gate [N, 1, 1, 1, c].

Config (`model.ecal`, registered field 'ecal', the backbone's `mid` slot):
  calibrators: ("L", "T", "S", "G") is GC (upstream net 'M4': children eft1..eft4 on
    groups 0..3); one entry, e.g. ("L",), is a single-ECal model (child `eft`, group 0).
  cdiv: the channel divisor (upstream `--cdiv`; every released script uses 4; GC needs
    cdiv >= 4). A paper's "r = 16" for a single ECal is read as cdiv = 16 (the code has
    no reduction ratio; reference/tsm_gc.md 2.4).
  loop: upstream `--loop` (GST only): a counter over the calibrated blocks of the whole
    network, mod cdiv, rotates the groups: group k of a block starts at channel
    ((loop_id + k) % cdiv) * c.
Blocks: the first of every stage, then block i when i % n_round == 0, n_round = 2 in a
stage of >= 23 blocks (R101's layer3), else 1 (every block of R50).

Frames are video-major: row n * T + t of [N*T, H, W, C] is frame t of clip n.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.hooks import BlockInfo
from vidjax.models.layers import BatchNorm, Dtype, conv2d, resolve_dtype
from vidjax.models.registry import register

# Upstream initialisation: xavier_normal_ for the convs, normal(0, 0.001) for ECal-G.
_XAVIER = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")  # jax: untruncated
_G_INIT = nn.initializers.normal(0.001)


def _clips(x: jax.Array, num_segments: int) -> jax.Array:
  """[N*T, H, W, c] -> [N, T, H, W, c]."""
  nt = x.shape[0]
  if nt % num_segments:
    raise ValueError(f"ECal: batch {nt} is not a multiple of num_segments={num_segments}")
  return x.reshape((nt // num_segments, num_segments) + x.shape[1:])


class _Calibrator(nn.Module):
  """Shared fields; `__call__(x [N*T, H, W, c], num_segments, train) -> same shape`."""
  bn_momentum: float = 0.9
  bn_eps: float = 1e-5
  dtype: Dtype = jnp.float32

  def _bn(self) -> BatchNorm:
    return BatchNorm(self.bn_momentum, self.bn_eps, False, self.dtype, name="bn1")


class ECalL(_Calibrator):
  """Local: a (3, 1, 1) temporal conv per pixel, mixing the group's channels."""

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    v = _clips(x, num_segments)                          # [N, T, H, W, c]
    c = x.shape[-1]
    y = nn.Conv(c, (3, 1, 1), padding=((1, 1), (0, 0), (0, 0)), use_bias=False,
                dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_XAVIER,
                name="conv")(v)
    y = self._bn()(y, train)
    return (v * nn.sigmoid(y)).reshape(x.shape)


class ECalT(_Calibrator):
  """Temporal: spatially pooled features -> Conv1d k=3 over time -> BN: a gate per
  frame and channel."""

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    y = _clips(jnp.mean(x, axis=(1, 2)), num_segments)   # [N, T, c]
    y = nn.Conv(c, (3,), padding=((1, 1),), use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32, kernel_init=_XAVIER, name="conv")(y)
    y = self._bn()(y, train)
    return x * nn.sigmoid(y).reshape(x.shape[0], 1, 1, c)


class ECalS(_Calibrator):
  """Spatial: the temporal mean -> 3x3 conv (dilation 2, pad 2) -> sigmoid (no BN):
  one gate map shared by all frames of a clip."""

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    del train  # no BatchNorm (upstream's bn1 is never applied)
    v = _clips(x, num_segments)                          # [N, T, H, W, c]
    y = conv2d(x.shape[-1], 3, 1, 2, 2, dtype=self.dtype, kernel_init=_XAVIER,
               name="conv")(jnp.mean(v, axis=1))
    return (v * nn.sigmoid(y)[:, None]).reshape(x.shape)


class ECalG(_Calibrator):
  """Global: the clip's mean over T, H, W -> Linear c->c (no bias) -> BN."""

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    v = _clips(x, num_segments)
    c = x.shape[-1]
    y = nn.Dense(c, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=_G_INIT, name="conv")(jnp.mean(v, axis=(1, 2, 3)))
    y = self._bn()(y, train)                              # [N, c]
    return (v * nn.sigmoid(y)[:, None, None, None, :]).reshape(x.shape)


CALIBRATORS = {"L": ECalL, "T": ECalT, "S": ECalS, "G": ECalG}


class GroupCalibration(nn.Module):
  """The calibrators of one block on their channel groups; other channels unchanged.

  Children: `eft` for a single calibrator, `eft1..eftK` for several (upstream names).

  Attributes:
    kinds: calibrator letters in group order, e.g. ("L", "T", "S", "G").
    cdiv: channel divisor; group width c = C // cdiv.
    loop_id: first group index (upstream's `loop_id`; 0 unless `loop`).
  """
  kinds: Sequence[str]
  cdiv: int
  loop_id: int = 0
  bn_momentum: float = 0.9
  bn_eps: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [N*T, H, W, C] (the pre-ReLU bn2 output) -> the same shape."""
    channels = x.shape[-1]
    c = channels // self.cdiv
    if c == 0:
      raise ValueError(f"model.ecal.cdiv={self.cdiv} leaves no channels of a {channels}-"
                       "channel block")
    single = len(self.kinds) == 1
    groups = []
    for k, kind in enumerate(self.kinds):
      start = ((self.loop_id + k) % self.cdiv) * c
      name = "eft" if single else f"eft{k + 1}"
      groups.append((start, CALIBRATORS[kind](self.bn_momentum, self.bn_eps, self.dtype,
                                              name=name)))
    pieces, pos = [], 0
    for start, calibrator in sorted(groups, key=lambda g: g[0]):
      if start > pos:
        pieces.append(x[..., pos:start])
      pieces.append(calibrator(x[..., start:start + c], num_segments, train))
      pos = start + c
    if pos < channels:
      pieces.append(x[..., pos:])
    return jnp.concatenate(pieces, axis=-1)


def calibrated_block(info: BlockInfo) -> bool:
  """Upstream's rule: block 0 of every stage, then i % n_round == 0 (n_round 2 in a
  stage of >= 23 blocks)."""
  n_round = 2 if info.stage_sizes[info.stage - 1] >= 23 else 1
  return info.index % n_round == 0


def loop_id(info: BlockInfo, cdiv: int) -> int:
  """The number of calibrated blocks before `info` in the network, mod cdiv."""
  count = 0
  for s, size in enumerate(info.stage_sizes, start=1):
    n_round = 2 if size >= 23 else 1
    blocks = size if s < info.stage else (info.index if s == info.stage else 0)
    count += len([i for i in range(blocks) if i % n_round == 0])
  return count % cdiv


def _make_calibration(info: BlockInfo, kinds: tuple[str, ...], cdiv: int, loop: bool,
                      bn_momentum: float, bn_eps: float,
                      dtype: Dtype) -> Optional[GroupCalibration]:
  if not calibrated_block(info):
    return None
  return GroupCalibration(kinds=kinds, cdiv=cdiv,
                          loop_id=loop_id(info, cdiv) if loop else 0,
                          bn_momentum=bn_momentum, bn_eps=bn_eps, dtype=dtype)


def ecal_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      calibrators=("L", "T", "S", "G"),   # GC; one letter = a single-ECal model
      cdiv=4,                             # group width = block width // cdiv
      loop=False,                         # rotate groups over blocks (upstream --loop)
  ))


def validate_ecal(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Checks `model.ecal`; returns the calibrator letters as a tuple."""
  kinds = cfg.calibrators
  kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
  unknown = [k for k in kinds if k not in CALIBRATORS]
  if not kinds or unknown:
    raise ValueError(f"model.ecal.calibrators={kinds!r}: expected letters from "
                     f"{tuple(CALIBRATORS)} (e.g. ('L', 'T', 'S', 'G') for GC, ('L',) for "
                     "ECal-L)")
  if len(set(kinds)) != len(kinds):
    raise ValueError(f"model.ecal.calibrators={kinds!r} repeats a calibrator")
  if int(cfg.cdiv) < len(kinds):
    raise ValueError(f"model.ecal.cdiv={cfg.cdiv} is smaller than the {len(kinds)} "
                     "calibrators: their channel groups would overlap (GC needs cdiv >= 4)")
  return kinds


@register("temporal", "ecal", ecal_defaults)
def build_ecal(cfg: ml_collections.ConfigDict,
               model_cfg: ml_collections.ConfigDict) -> dict:
  kinds = validate_ecal(cfg)
  backbone = model_cfg.backbone
  return {"mid_module": functools.partial(
      _make_calibration, kinds=kinds, cdiv=int(cfg.cdiv), loop=bool(cfg.loop),
      bn_momentum=float(backbone.get("bn_momentum", 0.9)),
      bn_eps=float(backbone.get("bn_eps", 1e-5)),
      dtype=resolve_dtype(model_cfg.get("dtype", "float32")))}
