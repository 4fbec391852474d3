"""Spatial transforms of uint8 clips [..., T, H, W, 3], the same geometry for every frame.

Conventions follow MMAction2 / TSN / TSM so that their recipes carry over:
`resize_short` (MMAction2 `Resize(scale=(-1, S))`), `multi_scale_crop` (TSN's
`GroupMultiScaleCrop` with fixed and more-fixed crops), `random_resized_crop`,
`center_crop`, `three_crop` (MMAction2 `ThreeCrop`), `full_res_crops` (TSM's
`GroupFullResSample`: left, right, centre), `ten_crop` (MMAction2 `TenCrop`: 5 crops and
their mirror images), and `flip` with an optional label map (Something-Something's
left/right pairs). Random transforms take a numpy Generator. Training clips may also get
colour jitter and grayscale (vidjax/data/color.py), the only per-frame transforms.

`ClipTransform` applies the configured train or test chain.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from vidjax.data import color

TRAIN_CROPS = ("none", "multi_scale", "random_resized", "center")
TEST_CROPS = ("center", "three_crop", "ten_crop", "full_res_three")
_NUM_CROPS = {"center": 1, "three_crop": 3, "ten_crop": 10, "full_res_three": 3}


def num_test_crops(test_crop: str) -> int:
  if test_crop not in _NUM_CROPS:
    raise ValueError(f"data.test_crop must be one of {TEST_CROPS}, got {test_crop!r}.")
  return _NUM_CROPS[test_crop]


def _resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  try:
    import cv2  # pylint: disable=g-import-not-at-top
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
  except ImportError:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def resize(clip: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of every frame of [..., H, W, 3] to [..., height, width, 3]."""
  if clip.shape[-3:-1] == (height, width):
    return clip
  flat = clip.reshape((-1,) + clip.shape[-3:])
  out = np.stack([_resize_frame(f, height, width) for f in flat])
  return out.reshape(clip.shape[:-3] + out.shape[1:])


def resize_short(clip: np.ndarray, size: int) -> np.ndarray:
  """Resizes the short side to `size`, keeping the aspect ratio (rounded as mmcv)."""
  h, w = clip.shape[-3:-1]
  scale = size / min(h, w)
  return resize(clip, int(h * scale + 0.5), int(w * scale + 0.5))


def crop(clip: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
  h, w = clip.shape[-3:-1]
  if top < 0 or left < 0 or top + height > h or left + width > w:
    raise ValueError(f"crop ({top}, {left}, {height}, {width}) outside frames of {h}x{w}.")
  return clip[..., top:top + height, left:left + width, :]


def center_crop(clip: np.ndarray, size: int) -> np.ndarray:
  h, w = clip.shape[-3:-1]
  ch, cw = min(size, h), min(size, w)
  return crop(clip, (h - ch) // 2, (w - cw) // 2, ch, cw)


def _fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int,
                   more_fix_crop: bool) -> list[tuple[int, int]]:
  """TSN's fixed (x, y) crop offsets: corners and centre, plus 8 more."""
  ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
  offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
  if more_fix_crop:
    offsets += [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
                (1 * ws, 1 * hs), (3 * ws, 1 * hs), (1 * ws, 3 * hs), (3 * ws, 3 * hs)]
  return offsets


def multi_scale_crop(clip: np.ndarray, size: int, rng: np.random.Generator, *,
                     scales: Sequence[float] = (1, 0.875, 0.75, 0.66), max_distort: int = 1,
                     fix_crop: bool = True, more_fix_crop: bool = True) -> np.ndarray:
  """TSN's GroupMultiScaleCrop, then a resize of the crop to size x size.

  Crop sides are `int(min(H, W) * s)` for s in `scales` (within 3 px of `size` snaps to
  it), width and height scales at most `max_distort` steps apart; the offset is one of
  the fixed positions (`fix_crop`; 13 with `more_fix_crop`) or uniformly random.
  """
  h, w = clip.shape[-3:-1]
  base = min(h, w)
  sizes = [int(base * s) for s in scales]
  sizes = [size if abs(s - size) < 3 else s for s in sizes]
  pairs = [(cw, ch) for i, ch in enumerate(sizes) for j, cw in enumerate(sizes)
           if abs(i - j) <= max_distort]
  cw, ch = pairs[rng.integers(len(pairs))]
  if fix_crop:
    offsets = _fixed_offsets(w, h, cw, ch, more_fix_crop)
    x, y = offsets[rng.integers(len(offsets))]
  else:
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
  return resize(crop(clip, y, x, ch, cw), size, size)


def random_resized_crop(clip: np.ndarray, size: int, rng: np.random.Generator, *,
                        area_range: Sequence[float] = (0.08, 1.0),
                        aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3)) -> np.ndarray:
  """Inception-style crop (MMAction2 RandomResizedCrop): a random area fraction and
  log-uniform aspect ratio, 10 tries, else the centre square; then size x size."""
  h, w = clip.shape[-3:-1]
  area = h * w
  log_r = np.log(np.asarray(aspect_ratio_range, np.float64))
  for _ in range(10):
    target = rng.uniform(*area_range) * area
    ratio = np.exp(rng.uniform(*log_r))
    cw = int(round(np.sqrt(target * ratio)))
    ch = int(round(np.sqrt(target / ratio)))
    if 0 < cw <= w and 0 < ch <= h:
      y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
      return resize(crop(clip, y, x, ch, cw), size, size)
  side = min(h, w)
  return resize(crop(clip, (h - side) // 2, (w - side) // 2, side, side), size, size)


def three_crop(clip: np.ndarray, size: int) -> np.ndarray:
  """MMAction2 ThreeCrop: [3, ..., size, size, 3], along the long side (start, end,
  middle). The short side must equal `size`."""
  h, w = clip.shape[-3:-1]
  cw, ch = min(size, w), min(size, h)
  if ch == h:
    step = (w - cw) // 2
    offsets = [(0, 0), (2 * step, 0), (step, 0)]
  elif cw == w:
    step = (h - ch) // 2
    offsets = [(0, 0), (0, 2 * step), (0, step)]
  else:
    raise ValueError(f"three_crop: crop {size} must match a side of the {h}x{w} frames "
                     "(resize the short side to it first: data.test_scale).")
  return np.stack([crop(clip, y, x, ch, cw) for x, y in offsets])


def full_res_crops(clip: np.ndarray, size: int) -> np.ndarray:
  """TSM's GroupFullResSample (flip=False): [3, ..., size, size, 3] at (x, y) offsets
  left-top, right-top and centre, with steps ((W - size) // 4, (H - size) // 4)."""
  h, w = clip.shape[-3:-1]
  cw, ch = min(size, w), min(size, h)
  ws, hs = (w - cw) // 4, (h - ch) // 4
  offsets = [(0, 0), (4 * ws, 0), (2 * ws, 2 * hs)]
  return np.stack([crop(clip, y, x, ch, cw) for x, y in offsets])


def ten_crop(clip: np.ndarray, size: int) -> np.ndarray:
  """MMAction2 TenCrop: [10, ..., size, size, 3], 4 corners and the centre, then their
  horizontal mirrors."""
  h, w = clip.shape[-3:-1]
  cw, ch = min(size, w), min(size, h)
  offsets = _fixed_offsets(w, h, cw, ch, more_fix_crop=False)
  crops = [crop(clip, y, x, ch, cw) for x, y in offsets]
  return np.stack(crops + [flip(c) for c in crops])


def flip(clip: np.ndarray) -> np.ndarray:
  """Horizontal flip of every frame."""
  return np.ascontiguousarray(clip[..., ::-1, :])


def flip_label(label, label_map: dict[int, int]):
  """The label after a horizontal flip (MMAction2 `flip_label_map`); multi-hot labels
  swap their columns."""
  if not label_map:
    return label
  if np.ndim(label) == 0:
    return type(label)(label_map.get(int(label), int(label)))
  out = np.array(label, copy=True)
  for a, b in label_map.items():
    out[a] = label[b]
  return out


@dataclasses.dataclass(frozen=True)
class ClipTransform:
  """The configured train and test chains (picklable, for grain workers).

  Train: short-side resize (`train_resize` > 0), crop (`train_crop`), random horizontal
  flip with probability 0.5 (`flip`, relabelled by `flip_label_map` pairs), then with
  probability `color_jitter_prob` colour jitter of strengths `color_jitter` (brightness,
  contrast, saturation, hue) with new factors for every frame, then with probability
  `grayscale_prob` every frame in grey (TC-CLIP's order, reference/tcclip.md 5). Test:
  short-side resize (`test_scale` > 0) and `test_crop` (`center` or the multi-crop views).
  """

  image_size: int = 224
  train_resize: int = 256
  train_crop: str = "multi_scale"
  scales: tuple = (1, 0.875, 0.75, 0.66)
  max_distort: int = 1
  fix_crop: bool = True
  more_fix_crop: bool = True
  area_range: tuple = (0.08, 1.0)
  aspect_ratio_range: tuple = (3 / 4, 4 / 3)
  flip: bool = True
  flip_label_map: tuple = ()   # pairs (a, b): a flip swaps labels a and b
  test_scale: int = 256
  test_crop: str = "center"
  color_jitter_prob: float = 0.0
  color_jitter: tuple = (0.4, 0.4, 0.2, 0.1)
  grayscale_prob: float = 0.0

  def __post_init__(self):
    if self.train_crop not in TRAIN_CROPS:
      raise ValueError(f"data.train_crop must be one of {TRAIN_CROPS}, got "
                       f"{self.train_crop!r}.")
    num_test_crops(self.test_crop)
    for name in ("color_jitter_prob", "grayscale_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"data.{name}={getattr(self, name)}: expected a probability in [0, 1].")
    color.check_strength(self.color_jitter)

  def train(self, clip: np.ndarray, label, rng: np.random.Generator):
    """(clip [T, S, S, 3], label) of a training clip [T, H, W, 3]."""
    if self.train_resize > 0:
      clip = resize_short(clip, self.train_resize)
    s = self.image_size
    if self.train_crop == "multi_scale":
      clip = multi_scale_crop(clip, s, rng, scales=self.scales, max_distort=self.max_distort,
                              fix_crop=self.fix_crop, more_fix_crop=self.more_fix_crop)
    elif self.train_crop == "random_resized":
      clip = random_resized_crop(clip, s, rng, area_range=self.area_range,
                                 aspect_ratio_range=self.aspect_ratio_range)
    elif self.train_crop == "center":
      clip = center_crop(clip, s)
    if self.flip and rng.random() < 0.5:
      clip = flip(clip)
      pairs = [(int(a), int(b)) for a, b in self.flip_label_map]
      label = flip_label(label, {**dict(pairs), **{b: a for a, b in pairs}})
    # Off (probability 0), they draw nothing: other recipes' random streams stay as they are.
    if self.color_jitter_prob > 0 and rng.random() < self.color_jitter_prob:
      clip = color.jitter_clip(clip, rng, self.color_jitter)
    if self.grayscale_prob > 0 and rng.random() < self.grayscale_prob:
      clip = color.grayscale(clip)
    return np.ascontiguousarray(clip), label

  def test(self, clip: np.ndarray) -> np.ndarray:
    """[C, ..., S, S, 3] spatial views of test frames [..., H, W, 3] (C = crops)."""
    if self.test_scale > 0:
      clip = resize_short(clip, self.test_scale)
    s = self.image_size
    if self.test_crop == "center":
      return center_crop(clip, s)[None]
    if self.test_crop == "three_crop":
      return three_crop(clip, s)
    if self.test_crop == "full_res_three":
      return full_res_crops(clip, s)
    return ten_crop(clip, s)


def from_config(data_config) -> Optional[ClipTransform]:
  """The data config's ClipTransform (fields documented in config_defaults.data_config)."""
  d = data_config
  return ClipTransform(
      image_size=int(d.image_size), train_resize=int(d.train_resize),
      train_crop=d.train_crop, scales=tuple(d.scales), max_distort=int(d.max_distort),
      fix_crop=bool(d.fix_crop), more_fix_crop=bool(d.more_fix_crop),
      area_range=tuple(d.area_range), aspect_ratio_range=tuple(d.aspect_ratio_range),
      flip=bool(d.flip), flip_label_map=tuple(tuple(p) for p in d.flip_label_map),
      test_scale=int(d.test_scale), test_crop=d.test_crop,
      # .get: configs recorded before these fields existed have none.
      color_jitter_prob=float(d.get("color_jitter_prob", 0.0)),
      color_jitter=tuple(d.get("color_jitter", ClipTransform.color_jitter)),
      grayscale_prob=float(d.get("grayscale_prob", 0.0)))
