"""Photometric augmentation of uint8 RGB frames [..., H, W, 3]: colour jitter and grayscale.

These are torchvision's `ColorJitter` and `Grayscale(num_output_channels=3)` on PIL
images, the way TC-CLIP's training pipeline (and X-CLIP's and ViFi-CLIP's before it)
applies them to every frame of a clip (reference/tcclip.md 5). The pixel arithmetic is
Pillow's, so the same factors give the same bytes:

- luma L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601-2: 0.299, 0.587, 0.114);
- brightness, contrast and saturation blend the frame with a "degenerate" image (black;
  the frame's mean luma rounded to an integer; the frame's luma) as
  `d + f * (x - d)` in float32, clipped to 0..255 and truncated;
- hue shifts H of Pillow's 8-bit HSV by `int(h * 255)` mod 256.

`jitter_clip` draws, per frame, a random order of the four operations and their factors
(brightness, contrast, saturation uniform in [max(0, 1 - s), 1 + s], hue in [-s, s]);
an operation of strength 0 is skipped and draws nothing. All randomness comes from the
numpy Generator passed in (the pipeline's per-example rng), so a resumed run repeats it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

OPS = ("brightness", "contrast", "saturation", "hue")


def luma(frames: np.ndarray) -> np.ndarray:
  """Pillow's RGB -> L of uint8 [..., 3]: uint8 [...]."""
  x = frames.astype(np.uint32)
  return ((x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16
          ).astype(np.uint8)


def grayscale(frames: np.ndarray) -> np.ndarray:
  """Every pixel's luma in all three channels, uint8 [..., 3]."""
  return np.repeat(luma(frames)[..., None], 3, axis=-1)


def _per_frame(factor, ndim: int) -> np.ndarray:
  """A factor per frame ([N], or a scalar) shaped to broadcast over [N, H, W, C]."""
  f = np.asarray(factor, np.float32)
  return f.reshape(f.shape + (1,) * (ndim - f.ndim)) if f.ndim else f


def _blend(degenerate: np.ndarray, frames: np.ndarray, factor) -> np.ndarray:
  """Pillow's Image.blend(degenerate, frames, factor) on uint8 arrays."""
  d = degenerate.astype(np.float32)
  out = d + _per_frame(factor, frames.ndim) * (frames.astype(np.float32) - d)
  return np.clip(out, 0, 255).astype(np.uint8)


def adjust_brightness(frames: np.ndarray, factor) -> np.ndarray:
  """uint8 [N, H, W, 3] scaled by `factor` ([N] or a scalar)."""
  return _blend(np.zeros_like(frames), frames, factor)


def adjust_contrast(frames: np.ndarray, factor) -> np.ndarray:
  """uint8 [N, H, W, 3] blended with each frame's mean luma (rounded, as Pillow)."""
  lum = luma(frames).reshape(frames.shape[0], -1)
  mean = np.floor(lum.sum(axis=1, dtype=np.int64) / lum.shape[1] + 0.5)
  return _blend(np.broadcast_to(mean.astype(np.uint8)[:, None, None, None], frames.shape),
                frames, factor)


def adjust_saturation(frames: np.ndarray, factor) -> np.ndarray:
  """uint8 [N, H, W, 3] blended with its own grayscale."""
  return _blend(grayscale(frames), frames, factor)


def rgb_to_hsv(frames: np.ndarray) -> np.ndarray:
  """Pillow's RGB -> HSV, uint8 [..., 3] (H in 256 steps of the circle)."""
  x = frames.astype(np.int32)
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  hi, lo = x.max(axis=-1), x.min(axis=-1)
  grey = hi == lo
  span = np.where(grey, 1, hi - lo).astype(np.float32)
  rc, gc, bc = ((hi - c).astype(np.float32) / span for c in (r, g, b))
  # Pillow: float distances, the sector offset added in double, stored as float.
  f64 = np.float64
  h = np.where(r == hi, (bc - gc).astype(f64),
               np.where(g == hi, 2.0 + rc.astype(f64) - bc, 4.0 + gc.astype(f64) - rc))
  h = np.fmod(h.astype(np.float32).astype(f64) / 6.0 + 1.0, 1.0).astype(np.float32)
  s = (hi - lo).astype(np.float32) / np.where(hi == 0, 1, hi).astype(np.float32)
  uh = np.clip((h.astype(f64) * 255.0).astype(np.int32), 0, 255)
  us = np.clip((s.astype(f64) * 255.0).astype(np.int32), 0, 255)
  return np.stack([np.where(grey, 0, uh), np.where(grey, 0, us), hi], axis=-1).astype(np.uint8)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
  """Pillow's HSV -> RGB of uint8 [..., 3]."""
  x = hsv.astype(np.int32)
  h, s, v = x[..., 0], x[..., 1], x[..., 2]
  # Pillow: H * 6 / 255 in double, the fraction and S / 255 stored as float, the levels in
  # double rounded half away from zero.
  f64 = np.float64
  h6 = h.astype(f64) * 6.0 / 255.0
  sector = np.floor(h6).astype(np.int32)
  frac = (h6 - sector).astype(np.float32)
  fs = (s.astype(f64) / 255.0).astype(np.float32)
  vf = v.astype(f64)

  def level(scale):
    return np.clip(np.floor(vf * scale + 0.5), 0, 255).astype(np.int32)

  p = level(1.0 - fs.astype(f64))
  q = level(1.0 - (fs * frac).astype(f64))
  t = level(1.0 - fs.astype(f64) * (1.0 - frac.astype(f64)))
  sector %= 6
  rgb = np.stack([np.choose(sector, [v, q, p, p, t, v]), np.choose(sector, [t, v, v, q, p, p]),
                  np.choose(sector, [p, p, t, v, v, q])], axis=-1)
  return np.where((s == 0)[..., None], v[..., None], rgb).astype(np.uint8)


def _pil_convert(frames: np.ndarray, src: str, dst: str) -> Optional[np.ndarray]:
  """Pillow's conversion of each [H, W, 3] frame (several times faster than the numpy
  one, same bytes), or None without Pillow."""
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  flat = frames.reshape((-1,) + frames.shape[-3:])
  out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f), src).convert(dst))
                  for f in flat])
  return out.reshape(frames.shape)


def adjust_hue(frames: np.ndarray, hue, use_pil: bool = True) -> np.ndarray:
  """uint8 [N, H, W, 3] with the hue turned by `hue` ([N] or a scalar, in [-0.5, 0.5])
  of the circle, in Pillow's 8-bit HSV (Pillow's conversions when `use_pil` and it is
  installed, else their numpy twins)."""
  hsv = _pil_convert(frames, "RGB", "HSV") if use_pil else None
  hsv = rgb_to_hsv(frames) if hsv is None else np.array(hsv, copy=True)
  # torchvision adds uint8(hue * 255) to H: truncated towards 0, then wrapped.
  shift = np.trunc(np.asarray(hue, np.float64) * 255).astype(np.int64) % 256
  shift = shift.reshape(shift.shape + (1,) * (frames.ndim - 1 - shift.ndim))
  hsv[..., 0] = ((hsv[..., 0].astype(np.int64) + shift) % 256).astype(np.uint8)
  rgb = _pil_convert(hsv, "HSV", "RGB") if use_pil else None
  return hsv_to_rgb(hsv) if rgb is None else rgb


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def check_strength(strength: Sequence[float], field: str = "data.color_jitter") -> tuple:
  """(brightness, contrast, saturation, hue) as floats, or ValueError naming `field`."""
  s = tuple(float(v) for v in strength)
  if len(s) != 4 or min(s) < 0 or s[3] > 0.5:
    raise ValueError(f"{field}={tuple(strength)}: expected (brightness, contrast, saturation, "
                     "hue), each >= 0, hue <= 0.5.")
  return s


def factor_ranges(strength: Sequence[float]) -> list:
  """The (low, high) range of each operation's factor; None where its strength is 0."""
  b, c, s, h = check_strength(strength)
  ranges = [(max(0.0, 1.0 - v), 1.0 + v) if v > 0 else None for v in (b, c, s)]
  return ranges + [(-h, h) if h > 0 else None]


def sample_jitter(rng: np.random.Generator, num_frames: int, strength: Sequence[float]
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Per frame, torchvision's ColorJitter.get_params: the order of the operations and
  their factors.

  Returns:
    order int [N, 4] (a permutation of 0..3 per frame, indices into OPS) and factors
    float [N, 4] (NaN for operations of strength 0, which are not applied).
  """
  ranges = factor_ranges(strength)
  order = np.empty((num_frames, 4), np.int64)
  factors = np.full((num_frames, 4), np.nan)
  for i in range(num_frames):
    order[i] = rng.permutation(4)
    for op, r in enumerate(ranges):
      if r is not None:
        factors[i, op] = rng.uniform(*r)
  return order, factors


def apply_jitter(frames: np.ndarray, order: np.ndarray, factors: np.ndarray) -> np.ndarray:
  """Frame i of uint8 [N, H, W, 3] through the operations order[i] with factors[i]."""
  out = np.array(frames, copy=True)
  for step in range(order.shape[1]):
    for op, adjust in enumerate(_ADJUST):
      rows = np.flatnonzero((order[:, step] == op) & ~np.isnan(factors[:, op]))
      if rows.size:
        out[rows] = adjust(out[rows], factors[rows, op])
  return out


def jitter_clip(clip: np.ndarray, rng: np.random.Generator,
                strength: Sequence[float] = (0.4, 0.4, 0.2, 0.1)) -> np.ndarray:
  """Colour jitter of uint8 [..., H, W, 3] with new random parameters for each frame."""
  frames = clip.reshape((-1,) + clip.shape[-3:])
  order, factors = sample_jitter(rng, frames.shape[0], strength)
  return apply_jitter(frames, order, factors).reshape(clip.shape)
