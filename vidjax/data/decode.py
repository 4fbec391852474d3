"""Decoding the frames a sampler picked: video files (PyAV) and frame folders (JPEG);
`Reader` also reads audio feature clips (vidjax/data/audio.py).

Both readers take the frame indices first and decode only what those need: a video is
decoded from the keyframe before its first wanted frame (one seek) up to its last wanted
frame, and only wanted frames are converted to RGB; a frame folder reads only the wanted
files. Anything that makes a file unreadable (missing, empty, truncated, not a video or
image) raises `DecodeError` naming the file; the pipelines skip such examples.

JPEG reader: "auto" uses OpenCV's `imdecode` when installed (`pip install
opencv-python-headless`, the `data` extra), the fastest reader available, else PIL
(scripts/bench_data.py compares them).

Seeking pays off for dense clips in videos with frequent keyframes (see
scripts/resize_videos.py); TSN segments span the video, so they decode it whole,
converting only the sampled frames to RGB.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Callable, Union

import numpy as np

VideoInput = Union[str, bytes]


class DecodeError(RuntimeError):
  """A video file or frame folder cannot be read; the message names it and why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


# ------------------------------------------------------------------------- video files
def _describe(src: VideoInput) -> str:
  return src if isinstance(src, str) else f"<{len(src)} bytes of video>"


def _count_frames(container, stream, name: str) -> int:
  """Frames of `stream`: the header's count, else one demux pass (no decoding).

  A demuxed count well short of the container's stated duration means a truncated file
  (webm/mkv keep playing up to the cut, so nothing else would notice).
  """
  if stream.frames and stream.frames > 0:
    return int(stream.frames)
  n = sum(1 for packet in container.demux(stream) if packet.size)
  rate = stream.average_rate or stream.guessed_rate
  if container.duration and rate:
    expected = container.duration / 1e6 * float(rate)
    if n < 0.9 * expected - 1:
      raise DecodeError(name, f"truncated: the container's duration means ~{expected:.0f} "
                        f"frames, only {n} are there")
  container.seek(0, backward=True, any_frame=False, stream=stream)
  return n


def decode_video(src: VideoInput, select: Callable[[int], np.ndarray], *, threads: int = 1,
                 seek: bool = True) -> np.ndarray:
  """Decodes the frames `select(num_frames)` picks from a video file (or its bytes).

  Args:
    src: a file path, or the encoded file's bytes (e.g. a TFDS feature).
    select: maps the video's frame count to int frame indices of any shape, all in
      [0, num_frames).
    threads: decoder threads (keep 1 per grain worker: the workers are the parallelism).
    seek: start decoding at the keyframe before the first wanted frame rather than at
      the start; frame indices are recovered from timestamps.

  Returns:
    uint8 [*indices.shape, H, W, 3] RGB.

  Raises:
    DecodeError: missing, empty, truncated or undecodable file.
  """
  import av  # pylint: disable=g-import-not-at-top
  name = _describe(src)
  if isinstance(src, str):
    if not os.path.exists(src):
      raise DecodeError(name, "no such file")
    if os.path.getsize(src) == 0:
      raise DecodeError(name, "empty file")
  try:
    container = av.open(src if isinstance(src, str) else io.BytesIO(src), mode="r")
  except (av.FFmpegError, OSError, ValueError) as e:
    raise DecodeError(name, f"cannot open as a video ({e})") from e
  try:
    return _decode_open(container, name, select, threads, seek)
  except av.FFmpegError as e:
    raise DecodeError(name, f"decoding failed ({e})") from e
  finally:
    container.close()


def _decode_open(container, name: str, select: Callable[[int], np.ndarray], threads: int,
                 seek: bool) -> np.ndarray:
  if not container.streams.video:
    raise DecodeError(name, "has no video stream")
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"
  stream.codec_context.thread_count = max(1, int(threads))
  num_frames = _count_frames(container, stream, name)
  if num_frames < 1:
    raise DecodeError(name, "has no frames")
  indices = np.asarray(select(num_frames), np.int64)
  wanted = np.unique(indices)
  if wanted[0] < 0 or wanted[-1] >= num_frames:
    raise ValueError(f"{name}: sampled frame indices {wanted.tolist()} are outside "
                     f"[0, {num_frames}).")
  rate = stream.average_rate or stream.guessed_rate
  time_base = stream.time_base
  start_pts = stream.start_time if stream.start_time is not None else 0
  use_pts = bool(rate) and time_base is not None

  wanted_set = set(int(i) for i in wanted)
  first, top = int(wanted[0]), int(wanted[-1])

  def scan(seek_to_first: bool, by_pts: bool = True) -> dict[int, np.ndarray] | None:
    """Decodes up to frame `top`; None when a seek landed past `first`.

    Frame i is the one whose timestamp says i (by_pts), or the i-th decoded frame.
    """
    if seek_to_first:
      target = start_pts + int(first / (rate * time_base))
      container.seek(target, backward=True, any_frame=False, stream=stream)
    elif container_moved[0]:
      container.seek(start_pts, backward=True, any_frame=False, stream=stream)
    container_moved[0] = True
    found: dict[int, np.ndarray] = {}
    counter = 0
    for n, frame in enumerate(container.decode(stream)):
      if by_pts and use_pts and frame.pts is not None:
        idx = int(round(float((frame.pts - start_pts) * time_base * rate)))
      elif seek_to_first:
        raise DecodeError(name, "frames lack timestamps; cannot seek")
      else:
        idx = counter
      counter = idx + 1
      if n == 0 and seek_to_first and idx > first:
        return None
      if idx in wanted_set and idx not in found:
        found[idx] = frame.to_ndarray(format="rgb24")
      if idx >= top:
        break
    return found

  # The header count needed a demux pass only when the header had none.
  container_moved = [not (stream.frames and stream.frames > 0)]
  found = scan(True) if seek and use_pts and first > 0 else None
  if found is None:
    found = scan(False)
  if len(found) < len(wanted_set) and use_pts:
    # Timestamps that do not follow the frame rate (variable rate, broken muxers): count
    # decoded frames instead.
    found = scan(False, by_pts=False)
  missing = [i for i in wanted_set if i not in found]
  if missing:
    raise DecodeError(name, f"truncated: the container reports {num_frames} frames but "
                      f"frames {sorted(missing)[:5]}... could not be decoded")
  shape = next(iter(found.values())).shape
  if any(f.shape != shape for f in found.values()):
    raise DecodeError(name, "frame size changes within the video")
  frames = np.stack([found[int(i)] for i in indices.reshape(-1)])
  return frames.reshape(indices.shape + shape)


def video_num_frames(src: VideoInput) -> int:
  """The frame count a decode would use (header, else a demux pass)."""
  import av  # pylint: disable=g-import-not-at-top
  try:
    with av.open(src if isinstance(src, str) else io.BytesIO(src)) as container:
      return _count_frames(container, container.streams.video[0], _describe(src))
  except (av.FFmpegError, OSError, IndexError) as e:
    raise DecodeError(_describe(src), f"cannot read the frame count ({e})") from e


def video_frame_rate(src: VideoInput) -> float:
  """Frames per second of the video stream (its average rate, else FFmpeg's guess):
  frame i shows time i / rate."""
  import av  # pylint: disable=g-import-not-at-top
  try:
    with av.open(src if isinstance(src, str) else io.BytesIO(src)) as container:
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate
  except (av.FFmpegError, OSError, IndexError) as e:
    raise DecodeError(_describe(src), f"cannot read the frame rate ({e})") from e
  if not rate or rate <= 0:
    raise DecodeError(_describe(src), "states no frame rate")
  return float(rate)


# ------------------------------------------------------------------------- frame folders
JPEG_BACKENDS = ("auto", "cv2", "pil")


def _have_cv2() -> bool:
  try:
    import cv2  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


def resolve_jpeg_backend(backend: str = "auto") -> str:
  if backend not in JPEG_BACKENDS:
    raise ValueError(f"data.jpeg_backend must be one of {JPEG_BACKENDS}, got {backend!r}.")
  if backend == "auto":
    return "cv2" if _have_cv2() else "pil"
  return backend


def _complete_jpeg(data: bytes) -> bool:
  # libjpeg (OpenCV) fills a truncated image with grey and only warns; a complete JPEG
  # ends with the EOI marker, possibly followed by padding.
  return data.rstrip(b"\0\n\r ").endswith(b"\xff\xd9")


def read_image(path: str, backend: str = "auto") -> np.ndarray:
  """uint8 [H, W, 3] RGB of one image file; DecodeError if unreadable."""
  backend = resolve_jpeg_backend(backend)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DecodeError(path, f"cannot read ({e.strerror or e})") from e
  if not data:
    raise DecodeError(path, "empty file")
  is_jpeg = data[:2] == b"\xff\xd8"
  if is_jpeg and not _complete_jpeg(data):
    raise DecodeError(path, "truncated JPEG (no end-of-image marker)")
  if backend == "cv2":
    import cv2  # pylint: disable=g-import-not-at-top
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if img is None:
      raise DecodeError(path, "not a decodable image")
    return img
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      return np.asarray(im.convert("RGB"))
  except (OSError, ValueError, SyntaxError) as e:
    raise DecodeError(path, f"not a decodable image ({e})") from e


def read_frame_folder(directory: str, indices: np.ndarray, *,
                      filename_tmpl: str = "img_{:05d}.jpg", start_index: int = 1,
                      backend: str = "auto") -> np.ndarray:
  """Reads frames `indices` (0-based) of an extracted-frame folder.

  File of frame i: `directory / filename_tmpl.format(i + start_index)`.

  Returns:
    uint8 [*indices.shape, H, W, 3] RGB.
  """
  if not os.path.isdir(directory):
    raise DecodeError(directory, "no such frame folder")
  indices = np.asarray(indices, np.int64)
  found = {int(i): read_image(os.path.join(directory, filename_tmpl.format(int(i) + start_index)),
                              backend)
           for i in np.unique(indices)}
  shape = next(iter(found.values())).shape
  if any(f.shape != shape for f in found.values()):
    raise DecodeError(directory, "frames of different sizes")
  frames = np.stack([found[int(i)] for i in indices.reshape(-1)])
  return frames.reshape(indices.shape + shape)


# ------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class Reader:
  """Reads the frames a sampler picks from any source record (see `sources`).

  Picklable, so grain workers get their own copy.
  """

  threads: int = 1
  seek: bool = True
  filename_tmpl: str = "img_{:05d}.jpg"
  start_index: int = 1
  jpeg_backend: str = "auto"
  audio_length: int = 128   # audio features: rows per clip (vidjax/data/audio.py)
  audio_bins: int = 0       # audio features: mel bins each row must have (0: any)

  def __call__(self, record: dict[str, Any], select: Callable[[int], np.ndarray]
               ) -> np.ndarray:
    """uint8 [*indices.shape, H, W, 3] of `record`'s frames `select(num_frames)`; for
    audio features (`record["audio_features"]`, a `.npy` path or an array), float32
    [*indices.shape[:-1], audio_length, F]: each clip of video frames as feature rows."""
    if "audio_features" in record:
      from vidjax.data import audio  # pylint: disable=g-import-not-at-top
      return audio.read_clips(record["audio_features"], record["num_frames"], select,
                              fixed_length=self.audio_length, num_bins=self.audio_bins)
    if "clip" in record:   # frames in memory: the demo set, decoded TFDS videos
      frames = record["clip"]
      return frames[np.asarray(select(len(frames)), np.int64)]
    if "video" in record:
      return decode_video(record["video"], select, threads=self.threads, seek=self.seek)
    directory = record["frame_dir"]
    if record["num_frames"] < 1:
      raise DecodeError(directory, f"the list gives {record['num_frames']} frames")
    return read_frame_folder(directory, select(record["num_frames"]),
                             filename_tmpl=self.filename_tmpl, start_index=self.start_index,
                             backend=self.jpeg_backend)
