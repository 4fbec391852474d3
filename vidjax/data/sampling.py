"""Frame index samplers: which frames of a video make a clip."""

from __future__ import annotations

import numpy as np


def segment_indices(num_frames: int, num_segments: int, *,
                    rng: np.random.Generator | None = None,
                    view: int = 0, num_views: int = 1) -> np.ndarray:
  """TSN segment sampling: one frame from each of `num_segments` equal segments.

  Training (`rng` given) takes a uniformly random frame in each segment. Testing takes
  the frame at relative position (view + 0.5) / num_views of each segment, so one view
  is the centre frame and V views spread evenly (TSN's twice sample / ten-clip test).
  Videos shorter than `num_segments` repeat frames, as MMAction2 does.

  Returns:
    [num_segments] int frame indices in [0, num_frames).
  """
  if num_frames < 1:
    raise ValueError(f"segment_indices: a video needs at least one frame, got {num_frames}.")
  seg_len = num_frames / num_segments
  starts = np.arange(num_segments) * seg_len
  if rng is not None:
    pos = starts + rng.uniform(0.0, seg_len, size=num_segments)
  else:
    pos = starts + seg_len * (view + 0.5) / num_views
  return np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)
