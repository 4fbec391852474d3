"""TSM's temporal shift (Lin et al., ICCV 2019), written from reference/tsm_gc.md 1.1-1.2.

The shift moves `fold = C // n_div` channels one frame back in time and the next `fold`
channels one frame forward, with zeros at the clip ends; the rest is copied:

  channels [0, fold):        out[t] = in[t + 1]   (last frame zero; "shift left")
  channels [fold, 2 * fold): out[t] = in[t - 1]   (first frame zero)
  channels [2 * fold, C):    out[t] = in[t]

This is the direction of the released code (the paper's figure draws the opposite; a
loaded checkpoint needs exactly this one). Frames are video-major, row n * T + t of
[N*T, H, W, C] is frame t of clip n, so clips (and views) never mix.

Config (`model.shift`, registered field 'shift'):
  n_div: upstream `--shift_div` (8 in every released model).
  place: 'blockres' (all released checkpoints): the residual branch of a block, before
    its first conv (backbone slot `temporal_module`); 'block': the block input before
    the split, so the identity path is shifted too (slot `pre_module`; ResNet only).
  n_round: shift blocks with `index % n_round == 0` inside each stage; 0 = upstream's
    rule: 2 when the backbone's third stage has >= 23 blocks (ResNet-101/152, for every
    stage), else 1. Upstream applies n_round only to 'blockres'; 'block' shifts every block.
Temporal pooling (upstream `--temporal_pool`, no released checkpoint) is not provided.
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

PLACES = ("blockres", "block")


def temporal_shift(x: jax.Array, num_segments: int, n_div: int = 8) -> jax.Array:
  """TSM's bidirectional shift with zero padding.

  Args:
    x: [N*T, H, W, C] (or any [N*T, ..., C]), video-major.
    num_segments: T.
    n_div: fold = C // n_div channels move each way.
  Returns:
    the shifted array, same shape and dtype.
  """
  nt, c = x.shape[0], x.shape[-1]
  if nt % num_segments:
    raise ValueError(f"temporal_shift: batch {nt} is not a multiple of "
                     f"num_segments={num_segments}")
  fold = c // n_div
  if fold == 0:
    return x
  v = x.reshape((nt // num_segments, num_segments) + x.shape[1:])  # [N, T, ..., C]
  pad = [(0, 0)] * v.ndim
  # from the future: drop frame 0, zero frame appended at the end
  pad[1] = (0, 1)
  left = jnp.pad(v[:, 1:, ..., :fold], pad)
  # from the past: zero frame prepended, last frame dropped
  pad[1] = (1, 0)
  right = jnp.pad(v[:, :-1, ..., fold:2 * fold], pad)
  out = jnp.concatenate([left, right, v[..., 2 * fold:]], axis=-1)
  return out.reshape(x.shape)


class TemporalShift(nn.Module):
  """The shift as a hook module (no parameters)."""
  n_div: int = 8

  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    del train
    return temporal_shift(x, num_segments, self.n_div)


def shift_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      n_div=8,             # fold = C // n_div channels each way
      place="blockres",    # blockres | block
      n_round=0,           # shift blocks with index % n_round == 0; 0: upstream's rule
  ))


def resolve_n_round(n_round: int, stage_sizes: tuple[int, ...]) -> int:
  """Upstream `make_temporal_shift`: every other block when layer3 has >= 23 blocks."""
  if n_round > 0:
    return n_round
  return 2 if len(stage_sizes) > 2 and stage_sizes[2] >= 23 else 1


def _factory(info: BlockInfo, n_div: int, n_round: int) -> Optional[nn.Module]:
  if info.index % resolve_n_round(n_round, info.stage_sizes):
    return None
  return TemporalShift(n_div)


@register("temporal", "shift", shift_defaults)
def build_shift(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict) -> dict:
  del model_cfg
  if cfg.place not in PLACES:
    raise ValueError(f"model.shift.place={cfg.place!r}; expected one of {PLACES}")
  if int(cfg.n_div) < 1 or int(cfg.n_round) < 0:
    raise ValueError(f"model.shift: n_div must be >= 1 and n_round >= 0, got "
                     f"n_div={cfg.n_div}, n_round={cfg.n_round}")
  if cfg.place == "block":  # upstream wraps every whole block, without n_round
    return {"pre_module": functools.partial(_factory, n_div=int(cfg.n_div), n_round=1)}
  return {"temporal_module": functools.partial(_factory, n_div=int(cfg.n_div),
                                               n_round=int(cfg.n_round))}
