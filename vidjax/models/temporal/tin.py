"""TIN's temporal interlace (Shao et al., AAAI 2020; MMAction2's `ResNetTIN`), written from
reference/mmaction2_cost.md section 12.

On the residual branch before a block's first conv (the TSM 'blockres' place, slot
`temporal_module`), the first F = C // shift_div channels are shifted in time by learned,
fractional, per-clip offsets; the other channels are copied:

  pooled = mean over H, W of those channels                               [N, T, F]
  offset_net: Conv1d(F -> 1, k3) -> fc1 Linear(T, T) -> ReLU -> fc2 Linear(T, 2)
              -> o = 4 * (sigmoid - 0.5), in (-2, 2)                      [N, 2]
  weight_net: Conv1d(F -> 2, k3) -> w = 2 * sigmoid                       [N, T, 2]
  channel groups of F / 4, offsets [o0, o1, -o0, -o1]:
    shift(x, s)[t] = x[t - s] (zero outside [0, T)); a = floor(o), frac = o - a;
    out = (1 - frac) * shift(x, a) + frac * shift(x, a + 1)
  then times the per-frame weights, groups [w0, w1, w0, w1].

fc1 has T inputs, so a model is built for one `num_segments`. Frames are video-major:
row n * T + t of [N*T, H, W, C] is frame t of clip n.

Config (`model.tin`, registered field 'tin'):
  num_segments: T (MMAction2: 8).
  shift_div: F = C // shift_div channels are interlaced (MMAction2: 4).
  n_round: interlace blocks with index % n_round == 0; 0 = the TSM rule (2 when the third
    stage has >= 23 blocks, else 1).
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.hooks import BlockInfo
from vidjax.models.registry import register
from vidjax.models.temporal.shift import resolve_n_round

NUM_GROUPS = 4   # the offsets [o0, o1, -o0, -o1]
# fc2's bias starts where sigmoid is 0.625: offsets of 0.5 frame, as upstream initialises.
_OFFSET_BIAS = 0.5108


def _conv1d(features: int, name: str, zero: bool = False) -> nn.Conv:
  """Conv1d over time with kernel 3, padding 1 and a bias ([N, T, C] -> [N, T, features])."""
  init = nn.initializers.zeros if zero else nn.initializers.lecun_normal()
  return nn.Conv(features, (3,), padding=((1, 1),), kernel_init=init,
                 param_dtype=jnp.float32, name=name)


class OffsetNet(nn.Module):
  """[N, T, F] pooled descriptors -> offsets [N, 2] in (-2, 2)."""

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    n, t, _ = pooled.shape
    x = _conv1d(1, "conv")(pooled).reshape(n, t)
    x = nn.relu(nn.Dense(t, param_dtype=jnp.float32, name="fc1")(x))
    x = nn.Dense(2, param_dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.constant(_OFFSET_BIAS), name="fc2")(x)
    return 4.0 * (nn.sigmoid(x) - 0.5)


class WeightNet(nn.Module):
  """[N, T, F] pooled descriptors -> per-frame weights [N, T, 2] in (0, 2) (1 at init)."""

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    return 2.0 * nn.sigmoid(_conv1d(2, "conv", zero=True)(pooled))


def fractional_shift(x: jax.Array, offsets: jax.Array) -> jax.Array:
  """Shifts channel groups by fractional frame offsets with linear interpolation.

  Args:
    x: [N, T, ..., F], F divisible by G.
    offsets: [N, G] float; group g (channels [g F/G, (g+1) F/G)) gets
      out[t] = x[t - o] interpolated between the two integer shifts around o, zero
      outside the clip.
  Returns:
    [N, T, ..., F].
  """
  n, t = x.shape[:2]
  g = offsets.shape[1]
  a = jnp.floor(offsets)
  frac = offsets - a
  # weight[n, g, t, s] of source frame s in output frame t: 1 - frac at s = t - a and
  # frac at s = t - a - 1; a source outside [0, T) matches no s (the zero padding).
  src = jnp.arange(t)[:, None] - jnp.arange(t)[None, :]        # [t, s] -> t - s
  shift = a.astype(jnp.int32)[:, :, None, None]
  weight = (jnp.where(src == shift, 1.0 - frac[:, :, None, None], 0.0)
            + jnp.where(src == shift + 1, frac[:, :, None, None], 0.0))
  xg = x.reshape(x.shape[:-1] + (g, x.shape[-1] // g))           # [N, T, ..., G, F/G]
  spatial = "uvxyz"[:x.ndim - 3]                                  # the axes between T and F
  out = jnp.einsum(f"ngts,ns{spatial}gc->nt{spatial}gc", weight.astype(x.dtype), xg)
  return out.reshape(x.shape)


class TemporalInterlace(nn.Module):
  """TIN as a hook module: [N*T, H, W, C] -> [N*T, H, W, C].

  Children `offset_net` (conv, fc1, fc2) and `weight_net` (conv) mirror upstream's
  `conv1.conv.net1`.
  """
  num_segments: int = 8
  shift_div: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    del train
    nt, h, w, c = x.shape
    t = num_segments
    if t != self.num_segments:
      raise ValueError(f"TIN is built for model.tin.num_segments={self.num_segments} "
                       f"frames, got clips of {t}")
    if nt % t:
      raise ValueError(f"TIN: batch {nt} is not a multiple of num_segments={t}")
    f = c // self.shift_div
    if f % NUM_GROUPS:
      raise ValueError(f"TIN: {c} channels // shift_div {self.shift_div} = {f} is not "
                       f"divisible by {NUM_GROUPS} groups")
    desc = x[..., :f].reshape(nt // t, t, h, w, f)
    pooled = jnp.mean(desc.astype(jnp.float32), axis=(2, 3))   # [N, T, F]
    o = OffsetNet(name="offset_net")(pooled)                     # [N, 2]
    weights = WeightNet(name="weight_net")(pooled)               # [N, T, 2]
    shifted = fractional_shift(desc, jnp.concatenate([o, -o], axis=1).astype(x.dtype))
    # groups [w0, w1, w0, w1], each F / 4 channels
    per_channel = jnp.repeat(jnp.tile(weights, (1, 1, 2)), f // NUM_GROUPS, axis=-1)
    shifted = shifted * per_channel[:, :, None, None, :].astype(x.dtype)
    return jnp.concatenate([shifted.reshape(nt, h, w, f), x[..., f:]], axis=-1)


def tin_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      num_segments=8,   # T: fc1 is Linear(T, T)
      shift_div=4,      # F = C // shift_div channels are interlaced
      n_round=0,        # interlace blocks with index % n_round == 0; 0: the TSM rule
  ))


def _factory(info: BlockInfo, num_segments: int, shift_div: int,
             n_round: int) -> Optional[nn.Module]:
  if info.index % resolve_n_round(n_round, info.stage_sizes):
    return None
  return TemporalInterlace(num_segments, shift_div)


@register("temporal", "tin", tin_defaults)
def build_tin(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict) -> dict:
  del model_cfg
  if int(cfg.num_segments) < 1 or int(cfg.shift_div) < 1 or int(cfg.n_round) < 0:
    raise ValueError(f"model.tin: num_segments and shift_div must be >= 1 and n_round >= 0, "
                     f"got {cfg.num_segments}, {cfg.shift_div}, {cfg.n_round}")
  return {"temporal_module": functools.partial(
      _factory, num_segments=int(cfg.num_segments), shift_div=int(cfg.shift_div),
      n_round=int(cfg.n_round))}
