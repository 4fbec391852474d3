"""The embedded demo data set: procedural clips whose labels need temporal order.

Every clip is generated from `(seed, split, index)` alone, with numpy, in well under a
millisecond, so the data set needs no download and is identical on every machine. It
serves the demo variant of every config, the learning tests, and (written out with
`write_video_files`) the real decoding path.

Clip layout: uint8 `[T, H, W, 3]` RGB, time-major, frame `t` showing the scene at time
`t` (frames are equally spaced in time; a sampler may take all of them or a subset).

Classes (`CLASS_NAMES`, label = `index % 6`, so every split is balanced):

  0 `moving_left`   a filled disk moving in a straight line towards -x,
  1 `moving_right`  ... towards +x,
  2 `moving_up`     ... towards -y (upwards on screen),
  3 `moving_down`   ... towards +y,
  4 `square`        a filled axis-aligned square moving in a random direction,
  5 `cross`         a filled plus-shaped cross moving in a random direction.

Labels 0..3 are `DIRECTION_CLASSES`: all four show the same kind of disk, and telling
them apart needs the order of the frames (see below). Labels 4 and 5 are appearance
classes: the shape in any single frame tells them apart from each other and from the disk,
whatever the motion (it has the same speed distribution as the disk, in a uniformly random
direction, so motion itself carries no label information for them).

Per clip, independent of the label: the object's size (radius 16%..22% of the image
side), its colour (a random tint whose brightness differs from the background's base
colour by at least 0.4 on a 0..1 scale, so the object stays clearly visible), its speed
(total travel over the clip 25%..40% of the image side, whatever `num_frames` is), the
background (a dark, nearly grey base colour, a weak linear gradient and a smooth
low-contrast texture, static over the clip), and i.i.d. uniform brightness noise per pixel and frame (std
1%..4%). The whole object stays inside the image in every frame. Edges are anti-aliased
over about one pixel, so objects stay recognisable at 32x32 and sharper at 64x64.
Geometry is in fractions of the image side, so the same `(seed, split, index)` at
another `image_size` shows the same scene at another resolution.

Why a bag of frames cannot separate left from right (nor up from down). The trajectory is
drawn as a midpoint `m`, uniform over the positions that keep the whole path inside the
image, plus a displacement `sign * v * (t - (T - 1) / 2)` that is symmetric about it; all
other randomness is either static over the clip or i.i.d. across frames. Flipping `sign`
is therefore exactly reversing time: the distribution of `moving_left` clips equals the
distribution of time-reversed `moving_right` clips (and likewise up/down, the
`REVERSAL_PAIRS`). Any model that is invariant to the order of frames, such as TSN's
average consensus, has the same output distribution on both classes of a pair, so it is
at chance (50%) within each pair. The frames pooled over time have the same distribution
in both classes; only the position of a frame in the clip (first frame on the left ->
moving right) or the change between frames gives the class away.

What a bag of frames can still see: the axis of motion (a horizontal trail versus a
vertical one) and the shape. So an order-invariant model can reach at most 50% on the
direction classes (chance 25%) and 100% on the appearance classes, that is
`(4 * 0.5 + 2 * 1.0) / 6 = 66.7%` overall (chance 16.7%), while a temporal model can
reach 100%. The learning tests compare models on exactly this gap.

Augmentation: a horizontal flip turns `moving_left` into `moving_right`; use
`FLIP_LABEL_MAP` (MMAction2's `flip_label_map` convention) to swap the labels, or do not
flip. Vertical flips would swap up and down; time reversal would swap both pairs.

Splits: any split name works and selects an independent stream (its id is the CRC-32 of
the name), so "train" and "eval" never share a clip.

Generation is vectorised numpy, well under a millisecond a clip, so the demo data set
never needs caching; `write_video_files` adds the mp4 encoding.
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import Optional

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "moving_left", "moving_right", "moving_up", "moving_down", "square", "cross")
NUM_CLASSES: int = len(CLASS_NAMES)
# Labels that only the order of frames separates.
DIRECTION_CLASSES: tuple[int, ...] = (0, 1, 2, 3)
# Labels that one frame separates.
APPEARANCE_CLASSES: tuple[int, ...] = (4, 5)
# Pairs whose clip distributions are exact time reversals of each other.
REVERSAL_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3))
# Label after a horizontal flip of the clip, for labels that change.
FLIP_LABEL_MAP: dict[int, int] = {0: 1, 1: 0}

_DISK, _SQUARE, _CROSS = 0, 1, 2
# Direction labels -> unit step (dx, dy) per unit of time, y pointing down.
_DIRECTIONS: dict[int, tuple[float, float]] = {
    0: (-1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, -1.0), 3: (0.0, 1.0)}

_RADIUS_RANGE = (0.16, 0.22)    # fraction of the image side
_TRAVEL_RANGE = (0.25, 0.40)    # fraction of the image side, over the whole clip
_NOISE_STD_RANGE = (0.01, 0.04)
_MIN_CONTRAST = 0.4
_TEXTURE_GRID = 4               # the background texture's control points per side


def split_id(split: str) -> int:
  """A stable integer for a split name (not Python's salted `hash`)."""
  if not split:
    raise ValueError("split must be a non-empty name such as 'train' or 'eval'.")
  return zlib.crc32(split.encode("utf-8"))


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), split_id(split), int(index)])


@functools.lru_cache(maxsize=16)
def _pixel_centres(size: int) -> np.ndarray:
  """Pixel-centre coordinates 0.5 .. size - 0.5, float32 [size]."""
  return np.arange(size, dtype=np.float32) + 0.5


@functools.lru_cache(maxsize=16)
def _upsample_matrix(size: int, grid: int) -> np.ndarray:
  """Linear interpolation from `grid` points to `size` pixels, float32 [size, grid]."""
  pos = np.linspace(0.0, grid - 1.0, size)
  lo = np.minimum(np.floor(pos).astype(int), grid - 2)
  frac = pos - lo
  m = np.zeros((size, grid), np.float32)
  m[np.arange(size), lo] = 1.0 - frac
  m[np.arange(size), lo + 1] = frac
  return m


def _check_args(num_frames: int, image_size: int) -> None:
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2 to show motion, got {num_frames}.")
  if image_size < 16:
    raise ValueError(f"image_size must be >= 16 to draw the shapes, got {image_size}.")


def _sample_scene(rng: np.random.Generator, label: int, num_frames: int,
                  image_size: int) -> dict:
  """Draws everything about one clip except the per-frame noise.

  Returns a dict with `shape` (int), `radius` (pixels), `centres` float32 [T, 2] (x, y
  in pixels), `colour` float32 [3], `background` float32 [H, W, 3], `noise_std`.
  """
  s = float(image_size)
  radius = rng.uniform(*_RADIUS_RANGE) * s
  travel = rng.uniform(*_TRAVEL_RANGE) * s
  if label in _DIRECTIONS:
    shape = _DISK
    step = np.array(_DIRECTIONS[label])
  else:
    shape = _SQUARE if label == APPEARANCE_CLASSES[0] else _CROSS
    angle = rng.uniform(0.0, 2.0 * np.pi)
    step = np.array([np.cos(angle), np.sin(angle)])
  # The cross reaches further from its centre than the disk's radius; keep it inside too.
  extent = radius * (1.15 if shape == _CROSS else 1.0) + 1.0   # + the anti-aliasing ramp
  half_path = np.abs(step) * travel / 2.0
  # Uniform midpoint over all positions that keep the whole path in the image. The range
  # depends on |step| only, so opposite directions get the same midpoint distribution.
  lo = extent + half_path
  hi = s - extent - half_path
  midpoint = rng.uniform(lo, hi)
  # Symmetric about the midpoint in time: reversing time is negating `step`.
  times = np.arange(num_frames) - (num_frames - 1) / 2.0
  centres = midpoint + np.outer(times, step * travel / (num_frames - 1))

  # A dark, nearly grey background: colourful backgrounds let a small network memorise
  # clips instead of learning shapes and motion within a CPU demo's few hundred steps.
  base = rng.uniform(0.15, 0.35) + rng.uniform(-0.03, 0.03, size=3)
  luminance = base.mean()
  if luminance < 0.5:
    target = rng.uniform(min(luminance + _MIN_CONTRAST, 0.95), 1.0)
  else:
    target = rng.uniform(0.0, max(luminance - _MIN_CONTRAST, 0.05))
  hue = rng.uniform(-1.0, 1.0, size=3)
  colour = np.clip(target + 0.25 * (hue - hue.mean()), 0.0, 1.0)

  pc = _pixel_centres(image_size) / s - 0.5
  gradient = rng.uniform(-0.05, 0.05, size=(2, 3, 1))   # per channel, along x and y
  up = _upsample_matrix(image_size, _TEXTURE_GRID)
  texture = rng.uniform(-0.03, 0.03, size=(3, _TEXTURE_GRID, _TEXTURE_GRID))
  texture = up @ texture @ up.T   # [3, H, W]; matmul is far faster than einsum here
  background = (base[:, None, None] + pc[None, None, :] * gradient[0, :, None]
                + pc[None, :, None] * gradient[1, :, None] + texture).transpose(1, 2, 0)
  return {
      "shape": shape,
      "radius": np.float32(radius),
      "centres": centres.astype(np.float32),
      "colour": colour.astype(np.float32),
      "background": background.astype(np.float32),
      "noise_std": np.float32(rng.uniform(*_NOISE_STD_RANGE)),
  }


def _coverage(scene: dict, image_size: int) -> np.ndarray:
  """Anti-aliased object coverage in 0..1, float32 [T, H, W]."""
  pc = _pixel_centres(image_size)
  dx = np.abs(pc[None, None, :] - scene["centres"][:, 0, None, None])   # [T, 1, W]
  dy = np.abs(pc[None, :, None] - scene["centres"][:, 1, None, None])   # [T, H, 1]
  r = scene["radius"]
  # Signed distances in pixels (negative inside); exact for the disk, the max-norm
  # approximation for the boxes, which is fine for a one-pixel ramp.
  if scene["shape"] == _DISK:
    sdf = np.sqrt(dx * dx + dy * dy) - r
  elif scene["shape"] == _SQUARE:
    sdf = np.maximum(dx, dy) - 0.886 * r    # the disk's area: no size cue
  else:
    arm, half_width = 1.15 * r, 0.4 * r
    sdf = np.minimum(np.maximum(dx - arm, dy - half_width),
                     np.maximum(dx - half_width, dy - arm))
  return np.clip(0.5 - sdf, 0.0, 1.0)


def _render(scene: dict, noise: Optional[np.ndarray], image_size: int) -> np.ndarray:
  """Composites a scene into uint8 [T, H, W, 3].

  `noise`: None, or uint8 [T, H, W, 1] uniform random bytes that become zero-mean
  brightness noise of std `scene["noise_std"]`, the same in the three channels.
  """
  # Works on the 0..255 scale, in place: this function is most of a clip's cost.
  background = scene["background"] * np.float32(255.0)
  alpha = _coverage(scene, image_size)[..., None]
  frames = alpha * (scene["colour"] * np.float32(255.0) - background)
  offset = background + np.float32(0.5)   # + 0.5: astype truncates, this rounds
  if noise is not None:
    # A uniform byte has mean 127.5 and std 256 / sqrt(12); scale it to noise_std on the
    # 0..255 scale and fold its mean into the static offset.
    scale = np.float32(scene["noise_std"] * 255.0 * np.sqrt(12.0) / 256.0)
    frames += np.multiply(noise, scale, dtype=np.float32)
    offset -= np.float32(127.5) * scale
  frames += offset
  np.clip(frames, 0.0, 255.0, out=frames)
  return frames.astype(np.uint8)


def label_of(index: int) -> int:
  """The label of example `index`, without rendering it."""
  return int(index) % NUM_CLASSES


def make_clip(index: int, *, seed: int, split: str, num_frames: int,
              image_size: int) -> tuple[np.ndarray, int]:
  """Generates one example of the demo data set.

  Args:
    index: example number, >= 0; the label is `index % NUM_CLASSES`.
    seed: data set seed; with `split` and `index` it fixes every random choice.
    split: split name, e.g. "train" or "eval"; different names give independent clips.
    num_frames: T, >= 2. The object travels the same distance whatever T is.
    image_size: H = W, >= 16.

  Returns:
    (clip, label): clip uint8 [T, H, W, 3] RGB, label an int in [0, NUM_CLASSES).
  """
  _check_args(num_frames, image_size)
  if index < 0:
    raise ValueError(f"index must be >= 0, got {index}.")
  label = label_of(index)
  rng = _rng(seed, split, index)
  scene = _sample_scene(rng, label, num_frames, image_size)
  # Uniform noise from raw bytes: on this kind of CPU it is several times faster than
  # standard_normal, and the shape of the noise distribution does not matter here.
  # Brightness-only noise survives yuv420p video (per-channel noise would be mostly
  # chroma, which 4:2:0 subsampling averages away) and costs a third.
  noise = np.frombuffer(rng.bytes(num_frames * image_size * image_size), np.uint8)
  noise = noise.reshape(num_frames, image_size, image_size, 1)
  return _render(scene, noise, image_size), label


class DemoSource:
  """The demo data set as a grain random-access source.

  Implements grain's `RandomAccessDataSource` protocol (`__len__`, `__getitem__`), so
  `grain.MapDataset.source(DemoSource(...))` works; it holds no open resources and
  pickles cheaply into grain worker processes.
  """

  def __init__(self, *, split: str = "train", num_examples: int, num_frames: int = 8,
               image_size: int = 32, seed: int = 0):
    _check_args(num_frames, image_size)
    if num_examples < 0:
      raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    split_id(split)   # fail early on an empty name
    self.split = split
    self.num_examples = int(num_examples)
    self.num_frames = int(num_frames)
    self.image_size = int(image_size)
    self.seed = int(seed)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """Returns {"clip": uint8 [T, H, W, 3], "label": int32 [], "index": int32 []}."""
    index = int(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples.")
    clip, label = make_clip(index, seed=self.seed, split=self.split,
                            num_frames=self.num_frames, image_size=self.image_size)
    return {"clip": clip, "label": np.int32(label), "index": np.int32(index)}

  @property
  def labels(self) -> np.ndarray:
    """Every example's label, int32 [num_examples], computed without rendering."""
    return (np.arange(self.num_examples) % NUM_CLASSES).astype(np.int32)

  def __repr__(self) -> str:
    return (f"DemoSource(split={self.split!r}, num_examples={self.num_examples}, "
            f"num_frames={self.num_frames}, image_size={self.image_size}, "
            f"seed={self.seed})")


def _video_codec() -> str:
  import av  # pylint: disable=g-import-not-at-top
  return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _write_mp4(path: str, clip: np.ndarray, fps: int, codec: str) -> None:
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width = clip.shape[2]
    stream.height = clip.shape[1]
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
      # High quality keeps the decoded pixels close to `make_clip`'s; 4:2:0 chroma
      # subsampling still blurs colour edges at this resolution.
      stream.options = {"crf": "12", "preset": "medium"}
    else:
      # At these frame sizes this rate is the encoder's best quality.
      stream.bit_rate = 4_000_000
    for frame in clip:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_list_files(directory: str, split: str, lines: list[str],
                     class_names: tuple[str, ...]) -> str:
  """`directory/label_names.txt` and `directory/SPLIT_list.txt` (`lines`, "path label\n"
  each); returns the list's path."""
  with open(os.path.join(directory, "label_names.txt"), "w") as f:
    f.writelines(f"{name}\n" for name in class_names)
  list_path = os.path.join(directory, f"{split}_list.txt")
  with open(list_path, "w") as f:
    f.writelines(lines)
  return list_path


def write_video_files(directory: str, *, split: str, num_examples: int, num_frames: int,
                      image_size: int, seed: int, fps: int = 8) -> str:
  """Writes the demo split as mp4 files plus MMAction2-style annotation lists.

  Layout under `directory`:
    `{split}/{class_name}/{index:06d}.mp4`  one clip each, h264 (libx264 when this PyAV
        build has it, else mpeg4), yuv420p, `fps` frames per second, `num_frames` frames;
    `{split}_list.txt`  lines `{split}/{class_name}/{index:06d}.mp4 {label}`, paths
        relative to `directory` (MMAction2's video-list format, `data_prefix=directory`);
    `label_names.txt`  class names, line i naming label i.

  The codec is lossy, so decoded pixels differ slightly from `make_clip`'s. Existing
  files are overwritten.

  Args:
    directory: output root, created if missing.
    split, num_examples, num_frames, image_size, seed: as in `DemoSource`.
      `image_size` must be even (yuv420p).
    fps: frame rate stored in the container.

  Returns:
    The path of `{split}_list.txt`.
  """
  _check_args(num_frames, image_size)
  if image_size % 2:
    raise ValueError(f"image_size must be even for yuv420p video, got {image_size}.")
  codec = _video_codec()
  directory = os.path.abspath(os.path.expanduser(directory))
  os.makedirs(directory, exist_ok=True)
  for name in CLASS_NAMES:
    os.makedirs(os.path.join(directory, split, name), exist_ok=True)
  lines = []
  for index in range(num_examples):
    clip, label = make_clip(index, seed=seed, split=split, num_frames=num_frames,
                            image_size=image_size)
    rel = f"{split}/{CLASS_NAMES[label]}/{index:06d}.mp4"
    _write_mp4(os.path.join(directory, rel), clip, fps, codec)
    lines.append(f"{rel} {label}\n")
  return write_list_files(directory, split, lines, CLASS_NAMES)
