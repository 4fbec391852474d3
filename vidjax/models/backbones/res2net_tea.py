"""TEA Res2Net-50 (26w x 4s) with motion excitation (ME) and multiple temporal
aggregation (MTA): TCPNet's `tea50` backbone.

Spec: reference/tcpnet.md sections 2.3, 6 and 7. Upstream ships two files,
`tea50_8f.py` and `tea50_16f.py`, that differ only in the hard-coded segment count used
by ME and the temporal shifts; here T is the `num_segments` call argument, so one module
serves both (the weights do not depend on T).

Layout: conv1 7x7/2 pad 3 -> bn1 -> ReLU -> max-pool 3x3/2 pad 1 -> layer1..layer4 of
`Bottle2neckShift` blocks [3, 4, 6, 3], planes 64/128/256/512, strides 1/2/2/1 (TCPNet),
expansion 4, BN eps 1e-5. No final pooling.

Block (width w = floor(planes * 26 / 64): 26/52/104/208; inner width 4w):
  out = relu(bn1(conv1_1x1(x)))                                  [4w]
  out = out + out * (sigmoid(ME gate) - 0.5)                     motion excitation
  split into 4 chunks of w; for i in 0..2:
    sp = chunk_i if (i == 0 or block 0 of the stage) else sp + chunk_i
    sp = relu(bns_i(convs_i_3x3/stride(shifts_i(sp))))
  last chunk: shifts_3(chunk_3), average-pooled 3x3/stride pad 1 (count_include_pad)
    in block 0 of a stage unless w == 208 (layer4)
  y = bn3(conv3_1x1(concat)) + downsample(x); relu
`downsample` (1x1 conv at the stride + BN) exists in block 0 of every stage.

ShiftModule `shifts_j`: depthwise temporal conv, kernel 3, zero padding:
  out[t] = k0 * x[t-1] + k1 * x[t] + k2 * x[t+1], kernel [3, 1, w] (torch (w, 1, 3)).

Flax names (converters/tcpnet_backbones.py maps upstream keys onto them): `conv1`, `bn1`,
`layer{s}_{i}` holding `conv1`, `bn1`, `me/{conv1,bn1,conv2,conv3,bn3}`, `convs_{j}`,
`bns_{j}`, `shifts_{j}` (param `kernel`), `conv3`, `bn3`, `downsample_conv`,
`downsample_bn`. Frames are folded into the batch video-major (row n*T + t).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import ml_collections

from vidjax.models.backbones.trunk import (Trunk, build_trunk, stage_of_layer, trunk_defaults,
                                           trunk_frozen_rule)
from vidjax.models.layers import BatchNorm, NormBlock, avg_pool2d, conv2d, global_avg_pool, max_pool2d
from vidjax.models.registry import register

TEA_SPECS: dict[int, tuple[int, ...]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_STAGE_PLANES = (64, 128, 256, 512)
_EXPANSION = 4


def _shift_init(mode: str):
  """Upstream's ShiftModule init ('fixed' = identity; 'shift' = half forward, half back).

  Only matters when training from scratch; checkpoints carry learned values.
  """
  def init(key, shape, dtype=jnp.float32):
    del key
    k = jnp.zeros(shape, dtype)  # [3, 1, C]
    if mode == "fixed":
      return k.at[1].set(1.0)
    half = shape[-1] // 2
    k = k.at[2, 0, :half].set(1.0)   # first half reads x[t+1]
    return k.at[0, 0, half:].set(1.0)  # second half reads x[t-1]
  return init


def _to_clips(x: jax.Array, num_segments: int) -> jax.Array:
  """[N*T, ...] -> [N, T, ...]."""
  return x.reshape((x.shape[0] // num_segments, num_segments) + x.shape[1:])


class TemporalShiftConv(nn.Module):
  """TEA's ShiftModule: a learnable depthwise Conv1d over time (kernel 3, zero pad 1)."""
  mode: str = "fixed"  # init only: 'fixed' or 'shift'

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int) -> jax.Array:
    """x: [N*T, H, W, C] -> [N*T, H, W, C]."""
    c = x.shape[-1]
    k = self.param("kernel", _shift_init(self.mode), (3, 1, c), jnp.float32).astype(x.dtype)
    v = _to_clips(x, num_segments)
    pad = jnp.pad(v, ((0, 0), (1, 1)) + ((0, 0),) * (v.ndim - 2))
    out = k[0, 0] * pad[:, :-2] + k[1, 0] * pad[:, 1:-1] + k[2, 0] * pad[:, 2:]
    return out.reshape(x.shape)


class MotionExcitation(NormBlock):
  """TEA's MEModule: a per-frame channel gate from feature differences of adjacent frames.

  Attributes:
    reduction: channel reduction of the squeeze (16 upstream).
    NormBlock's fields: as in the trunk.
  """
  reduction: int = 16

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool) -> jax.Array:
    """x: [N*T, H, W, C] -> x + x * (sigmoid(gate) - 0.5), gate [N*T, 1, 1, C]."""
    c = x.shape[-1]
    r = c // self.reduction
    bn = self.norm
    b = bn("bn1")(conv2d(r, 1, dtype=self.dtype, name="conv1")(x), train)
    moved = conv2d(r, 3, 1, 1, groups=r, dtype=self.dtype, name="conv2")(b)
    b_t, moved_t = _to_clips(b, num_segments), _to_clips(moved, num_segments)
    # The last frame has no successor: its difference is zero (upstream pads with zeros).
    diff = moved_t[:, 1:] - b_t[:, :-1]
    diff = jnp.concatenate([diff, jnp.zeros_like(diff[:, :1])], axis=1).reshape(b.shape)
    pooled = global_avg_pool(diff).astype(self.dtype)[:, None, None, :]
    gate = bn("bn3")(conv2d(c, 1, dtype=self.dtype, name="conv3")(pooled), train)
    return x + x * (nn.sigmoid(gate) - 0.5)


class Bottle2neckShift(NormBlock):
  """TEA Res2Net bottleneck with ME and MTA; see the module docstring.

  Attributes:
    in_channels, planes, stride: block input channels, planes (output 4 * planes) and the
      stride of the 3x3 convs.
    stage_block: block 0 of a stage (Res2Net 'stage' type: no hierarchy, pooled last chunk).
    base_width, scale: Res2Net 26w x 4s.
    NormBlock's fields: as in the trunk.
  """
  in_channels: int = dataclasses.field(kw_only=True)
  planes: int = dataclasses.field(kw_only=True)
  stride: int = 1
  stage_block: bool = False
  base_width: int = 26
  scale: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, num_segments: int, bn_train: bool) -> jax.Array:
    """x: [N*T, H, W, in_channels] -> [N*T, H/stride, W/stride, 4 * planes]."""
    width = self.planes * self.base_width // 64
    out_channels = self.planes * _EXPANSION
    bn = self.norm

    out = nn.relu(bn("bn1")(conv2d(width * self.scale, 1, dtype=self.dtype, name="conv1")(x),
                            bn_train))
    out = MotionExcitation(**self.norm_fields(), reduction=16, name="me")(out, num_segments, bn_train)
    chunks = jnp.split(out, self.scale, axis=-1)
    branches = []
    sp = None
    for i in range(self.scale - 1):
      sp = chunks[i] if (i == 0 or self.stage_block) else sp + chunks[i]
      sp = TemporalShiftConv("fixed", name=f"shifts_{i}")(sp, num_segments)
      sp = conv2d(width, 3, self.stride, 1, dtype=self.dtype, name=f"convs_{i}")(sp)
      sp = nn.relu(bn(f"bns_{i}")(sp, bn_train))
      branches.append(sp)
    last = TemporalShiftConv("shift", name=f"shifts_{self.scale - 1}")(chunks[-1], num_segments)
    # Upstream skips the pool only for width 208 (layer4), whatever that stage's stride.
    if self.stage_block and width != 208:
      last = avg_pool2d(last, 3, self.stride, 1, count_include_pad=True)
    branches.append(last)
    y = jnp.concatenate(branches, axis=-1)
    y = bn("bn3")(conv2d(out_channels, 1, dtype=self.dtype, name="conv3")(y), bn_train)
    if self.stride != 1 or self.in_channels != out_channels:
      shortcut = conv2d(out_channels, 1, self.stride, dtype=self.dtype, name="downsample_conv")(x)
      shortcut = bn("downsample_bn")(shortcut, bn_train)
    else:
      shortcut = x
    return nn.relu(y + shortcut)


class TEARes2Net(Trunk):
  """TEA Res2Net trunk (no pooling, no fc).

  The trunk policy of backbones/trunk.py, with: depth 50 (TCPNet's tea50) or 101;
  strides (1, 2, 2, 1) by default (the last chunk's pool is skipped in layer4 whatever
  its stride, as upstream does); partial BN keeps only the stem's bn1 training (ME's BNs
  are frozen with the rest).
  """
  strides: Sequence[int] = (1, 2, 2, 1)

  specs = TEA_SPECS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, num_segments: int = 1) -> jax.Array:
    """x: [N*T, H, W, 3] (ImageNet-normalised) -> [N*T, H/s, W/s, 2048].

    s is 16 with strides (1, 2, 2, 1). Rows are video-major (n*T + t); ME and the
    temporal shifts mix frames within a clip, so T must be the true segment count.
    """
    self.check_input(x, num_segments)

    x = x.astype(self.dtype)
    x = conv2d(64, 7, 2, 3, dtype=self.dtype, name="conv1")(x)
    x = BatchNorm(self.bn_momentum, self.bn_eps, False, self.dtype, name="bn1")(
        x, self.stage_train(0, train))
    x = self.end_stage(max_pool2d(nn.relu(x), 3, 2, 1), 0)

    in_channels = 64
    for s, (num_blocks, planes) in enumerate(zip(TEA_SPECS[self.depth], _STAGE_PLANES),
                                             start=1):
      bn_train = self.bn_train(s, train)
      for i in range(num_blocks):
        x = Bottle2neckShift(
            in_channels=in_channels, planes=planes, stride=self.stride(s, i),
            stage_block=i == 0, **self.block_norm(), name=f"layer{s}_{i}")(
                x, num_segments=num_segments, bn_train=bn_train)
        in_channels = planes * _EXPANSION
      x = self.end_stage(x, s)
    return x


_BN_NAME = re.compile(r"^(bn\d|bns_\d+|downsample_bn)$")


tea_frozen_rule = trunk_frozen_rule(
    stage_of_layer,
    lambda path: stage_of_layer(path[0]) > 0 and _BN_NAME.match(path[-2]) is not None)


def tea_res2net_defaults() -> ml_collections.ConfigDict:
  """TCPNet's TEA Res2Net-50 26w x 4s with ME and MTA (reference/tcpnet.md 6); T comes
  from the clip at call time (upstream ships T = 8 and 16)."""
  return trunk_defaults("tea_res2net", depth=50, strides=(1, 2, 2, 1))


@register("backbone", "tea_res2net", tea_res2net_defaults, frozen_rule=tea_frozen_rule)
def build_tea_res2net(cfg: ml_collections.ConfigDict, dtype, **hooks) -> TEARes2Net:
  if hooks:
    raise ValueError(f"tea_res2net has no hook slots, got {sorted(hooks)}")
  return build_trunk(TEARes2Net, cfg, dtype)
