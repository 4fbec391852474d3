"""Real video files and frame folders whose frames carry their own index, for data tests.

Frame i shows the bits of i as an 8-block grid (2 rows x 4 columns) of black and white
blocks, big enough that any lossy codec keeps them: `frame_index` reads them back.
"""

from __future__ import annotations

import os

import numpy as np

# (container extension, codec, pixel format)
FORMATS = (
    ("mp4", "libx264", "yuv420p"),
    ("webm", "libvpx-vp9", "yuv420p"),
    ("avi", "mjpeg", "yuvj420p"),
    ("mkv", "mpeg4", "yuv420p"),
)
ROWS, COLS = 2, 4


def marked_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
  """uint8 [H, W, 3] showing `index` (0..255) in binary blocks."""
  bits = [(index >> b) & 1 for b in range(ROWS * COLS)]
  grid = np.array(bits, np.uint8).reshape(ROWS, COLS) * 255
  img = np.kron(grid, np.ones((height // ROWS, width // COLS), np.uint8))
  return np.repeat(img[:, :, None], 3, axis=2)


def frame_index(frame: np.ndarray) -> int:
  """Reads the index back from a (decoded, maybe resized but uncropped) frame [H, W, 3]."""
  h, w = frame.shape[:2]
  value = 0
  for b in range(ROWS * COLS):
    r, c = divmod(b, COLS)
    y0, y1 = r * h // ROWS, (r + 1) * h // ROWS
    x0, x1 = c * w // COLS, (c + 1) * w // COLS
    block = frame[y0 + (y1 - y0) // 4:y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4:x1 - (x1 - x0) // 4]
    value |= int(block.mean() > 127) << b
  return value


def clip_indices(clip: np.ndarray) -> np.ndarray:
  """Frame indices of a clip [..., H, W, 3], shape [...]."""
  flat = clip.reshape((-1,) + clip.shape[-3:])
  return np.array([frame_index(f) for f in flat]).reshape(clip.shape[:-3])


def write_video(path: str, num_frames: int, codec: str = "libx264", pix_fmt: str = "yuv420p",
                height: int = 48, width: int = 64, fps: int = 10) -> str:
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if codec == "libx264":
      # Small GOP so that seeking is exercised; no scene-cut keyframes.
      stream.options = {"g": "8", "sc_threshold": "0", "preset": "ultrafast"}
    elif codec == "libvpx-vp9":
      stream.options = {"g": "8", "deadline": "realtime", "cpu-used": "8"}
    elif codec == "mpeg4":
      stream.options = {"g": "8"}
    for i in range(num_frames):
      frame = av.VideoFrame.from_ndarray(marked_frame(i, height, width), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_frame_folder(directory: str, num_frames: int, tmpl: str = "img_{:05d}.jpg",
                       start_index: int = 1, height: int = 48, width: int = 64) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  for i in range(num_frames):
    Image.fromarray(marked_frame(i, height, width)).save(
        os.path.join(directory, tmpl.format(i + start_index)), quality=90)
  return directory
