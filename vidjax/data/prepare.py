"""Data preparation helpers for scripts/: find videos, resize, extract frames, in parallel;
progress bars and atomic writes of the lists they make.

Each job handles one video and returns (relative path, frame count or None, error text);
`run_jobs` runs them in a process pool with a progress bar, so one broken file is
reported and the rest go on.
"""

from __future__ import annotations

import fractions
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np

from vidjax.data import sources

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".flv")


def find_videos(root: str) -> list[str]:
  """Paths (relative to `root`, sorted) of the video files under it."""
  out = []
  for dirpath, _, files in os.walk(root):
    for f in files:
      if f.lower().endswith(VIDEO_EXTENSIONS):
        out.append(os.path.relpath(os.path.join(dirpath, f), root))
  return sorted(out)


def write_atomic(path: str, text: str | bytes) -> None:
  """Writes `text` (str as UTF-8, or bytes) to `path` through a temporary file in the same
  directory, which is created if missing.

  os.replace swaps it in only once it is complete, so a failed run (a full disk, an
  error while writing) leaves an existing file byte-identical and no partial file.
  """
  data = text.encode("utf-8") if isinstance(text, str) else text
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path),
                             prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    if os.path.exists(path):
      mode = os.stat(path).st_mode & 0o7777
    else:
      umask = os.umask(0)
      os.umask(umask)
      mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, path)
  except BaseException:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(height, width) with the short side `short_side`, even, aspect kept (0: unchanged)."""
  if short_side <= 0:
    return height, width
  scale = short_side / min(height, width)
  even = lambda x: max(2, int(round(x * scale / 2)) * 2)
  return even(height), even(width)


def _encode_jpeg(frame: np.ndarray, path: str, quality: int) -> None:
  try:
    import cv2  # pylint: disable=g-import-not-at-top
    ok = cv2.imwrite(path, frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
      raise OSError(f"cannot write {path}")
  except ImportError:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    Image.fromarray(frame).save(path, quality=quality)


def extract_frames(src: str, out_dir: str, *, short_side: int = 0,
                   tmpl: str = "img_{:05d}.jpg", start_index: int = 1,
                   quality: int = 95) -> int:
  """Decodes every frame of `src` into `out_dir/tmpl.format(i + start_index)`.

  Returns the number of frames written.
  """
  import av  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  n = 0
  with av.open(src) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
      h, w = short_side_size(frame.height, frame.width, short_side)
      if (h, w) != (frame.height, frame.width):
        frame = frame.reformat(width=w, height=h)
      _encode_jpeg(frame.to_ndarray(format="rgb24"),
                   os.path.join(out_dir, tmpl.format(n + start_index)), quality)
      n += 1
  if n == 0:
    raise ValueError("no frames decoded")
  return n


def resize_video(src: str, dst: str, *, short_side: int = 256, codec: str = "libx264",
                 crf: int = 23, preset: str = "veryfast", gop: int = 0) -> int:
  """Re-encodes `src` as `dst` (mp4) with its short side `short_side`, same frame rate.

  `gop` > 0: a keyframe every `gop` frames (x264's default is 250), so that dense clips
  seek closer to their start. Returns the number of frames written. Audio is dropped
  (video models do not use it).
  """
  import av  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
  tmp = dst + ".part.mp4"
  n = 0
  with av.open(src) as inp, av.open(tmp, mode="w") as out:
    in_stream = inp.streams.video[0]
    in_stream.thread_type = "AUTO"
    rate = in_stream.average_rate or in_stream.guessed_rate or 25
    h, w = short_side_size(in_stream.codec_context.height, in_stream.codec_context.width,
                           short_side)
    stream = out.add_stream(codec, rate=rate)
    time_base = 1 / fractions.Fraction(rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": str(crf), "preset": preset}
    if gop > 0:
      stream.options = dict(stream.options, g=str(gop))
    for frame in inp.decode(in_stream):
      frame = frame.reformat(width=w, height=h, format="yuv420p")
      frame.pts, frame.time_base = n, time_base   # constant rate, from frame 0
      for packet in stream.encode(frame):
        out.mux(packet)
      n += 1
    for packet in stream.encode():
      out.mux(packet)
  if n == 0:
    os.remove(tmp)
    raise ValueError("no frames decoded")
  os.replace(tmp, dst)
  return n


def _call(args):
  fn, rel, kwargs = args
  try:
    return rel, fn(**kwargs), None
  except Exception as e:  # one broken video must not stop the others
    return rel, None, f"{type(e).__name__}: {e}"


def _plain_progress(iterable: Iterable[T], total: int, desc: str, unit: str,
                    every_s: float) -> Iterator[T]:
  """Lines `desc: 40/400 class (10%), 12 s, ETA 108 s` on stderr, at most every `every_s`."""
  start = last = time.monotonic()
  done = 0
  for done, item in enumerate(iterable, 1):
    yield item
    now = time.monotonic()
    if now - last >= every_s or done == total:
      last, elapsed = now, now - start
      eta = f", ETA {elapsed / done * (total - done):.0f} s" if total and done < total else ""
      share = f" ({100 * done / total:.0f}%)" if total else ""
      print(f"{desc}: {done}/{total or '?'} {unit}{share}, {elapsed:.0f} s{eta}",
            file=sys.stderr, flush=True)
  if done == 0:
    print(f"{desc}: 0/{total} {unit}", file=sys.stderr, flush=True)


def progress(iterable: Iterable[T], total: int, desc: str, unit: str = "video",
             every_s: float = 10.0) -> Iterator[T]:
  """Iterates `iterable` with a progress bar on stderr: tqdm's when installed, else lines."""
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _plain_progress(iterable, total, desc, unit, every_s)
  return iter(tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr))


def run_jobs(fn: Callable[..., int], jobs: Iterable[tuple[str, dict]], processes: int,
             desc: str) -> list[tuple[str, Optional[int], Optional[str]]]:
  """Runs `fn(**kwargs)` for each (relative path, kwargs) in a pool, with a progress bar."""
  jobs = [(fn, rel, kwargs) for rel, kwargs in jobs]
  if processes <= 1:
    return list(progress(map(_call, jobs), len(jobs), desc))
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(processes) as pool:
    results = list(progress(pool.imap_unordered(_call, jobs), len(jobs), desc))
  return sorted(results)


def _class_entries(folder: str, root: str, frames: bool) -> list[tuple[str, int]]:
  """(path relative to root, image count or 0) of the videos (frame folders) in folder."""
  out = []
  for dirpath, dirnames, files in os.walk(folder):
    dirnames.sort()
    if frames:
      n = sum(1 for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
      if n:
        out.append((os.path.relpath(dirpath, root), n))
      continue
    for f in sorted(files):
      if f.lower().endswith(VIDEO_EXTENSIONS):
        out.append((os.path.relpath(os.path.join(dirpath, f), root), 0))
  return out


def build_list(root: str, class_names: list[str] | None = None, frames: bool = False,
               labels_path: str = "", relative_to: str = ""
               ) -> tuple[list[str], list[str], list[str]]:
  """(list lines, class names, skipped names) for the videos (frame folders) of root/<class>/.

  Labels index `class_names` (read from `labels_path`), or the sorted class folders when
  it is None. Paths are relative to `relative_to` (default: root). The one scan of class
  folders: scripts/build_file_list.py and vidjax/data/resolve.py use it.
  """
  root = os.path.expanduser(root)
  base = os.path.expanduser(relative_to) if relative_to else root
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--root {root} is not a directory of class folders.")
  found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  skipped = [d for d in found if not sources.listable(d)]
  found = [d for d in found if sources.listable(d)]
  if class_names is None:
    class_names = found
  known = set(class_names)
  unknown = [d for d in found if d not in known]
  if unknown:
    more = f" (and {len(unknown) - 1} more: {unknown[1:6]})" if len(unknown) > 1 else ""
    raise ValueError(
        f"class folder {os.path.join(root, unknown[0])!r}{more} is not in the label-name "
        f"file {labels_path}; its line numbers are the labels of every split. Build the "
        f"lists from the split that has every class first, or append the new class names "
        f"to {labels_path} (appending keeps the existing labels).")
  lines = []
  for label, name in progress(list(enumerate(class_names)), len(class_names),
                                      desc="scan", unit="class"):
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      continue  # a class without videos in this split keeps its label unused
    for rel, n in _class_entries(folder, base, frames):
      if not sources.listable(rel):
        skipped.append(rel)
      else:
        lines.append(f"{rel} {n} {label}" if frames else f"{rel} {label}")
  return lines, class_names, skipped
