"""Frame index samplers: which frames of a video make a clip.

Two families, each with its training and test protocols:

* segments (TSN): T equal segments, one frame each (`segment_indices`); test views at
  evenly spread positions, TSM's twice sample (`twice_sample_indices`) or TCPNet's ten
  clips (`ten_clip_indices`);
* dense clips (MMAction2's `SampleFrames`, `clip_len x frame_interval x num_clips`):
  `sample_frames`; MMAction2 1.x's test clips of 3D models: `mmaction2_3d_test_indices`.

`Sampler` picks one from the data config fields; pipelines call `Sampler.train` and
`Sampler.test`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SAMPLERS = ("segments", "dense")
TEST_SAMPLINGS = ("uniform", "twice", "ten_clips", "mmaction2_3d")


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


def twice_sample_indices(num_frames: int, num_segments: int) -> np.ndarray:
  """TSM / MMAction2 twice sample: the centre frame of each segment, then its first frame.

  Returns:
    [2, num_segments] int frame indices: view 0 at `int(tick / 2 + tick * t)`, view 1
    at `int(tick * t)`, with `tick = num_frames / num_segments`.
  """
  if num_frames < 1:
    raise ValueError(f"twice_sample_indices: a video needs at least one frame, got "
                     f"{num_frames}.")
  tick = num_frames / num_segments
  t = np.arange(num_segments)
  views = np.stack([tick / 2.0 + tick * t, tick * t])
  return np.minimum(views.astype(np.int64), num_frames - 1)


def ten_clip_indices(num_frames: int, num_segments: int, num_clips: int = 10) -> np.ndarray:
  """TCPNet's ten-clip test (reference/tcpnet.md 4.3): clip k of segment frames.

  With `tick = num_frames / num_segments`, clip k = 1..num_clips-1 takes frames
  `int(tick * k / num_clips + tick * t)` and the last clip takes `int(tick * t)` (k = 0),
  in that order. Upstream adds 1 for 1-based file names; these are 0-based.

  Returns:
    [num_clips, num_segments] int frame indices.
  """
  if num_frames < 1:
    raise ValueError(f"ten_clip_indices: a video needs at least one frame, got {num_frames}.")
  tick = num_frames / num_segments
  t = np.arange(num_segments)
  ks = list(range(1, num_clips)) + [0]
  views = np.stack([tick * k / num_clips + tick * t for k in ks])
  return np.minimum(views.astype(np.int64), num_frames - 1)


def _train_clip_offsets(num_frames: int, ori_clip_len: int, num_clips: int,
                        rng: np.random.Generator) -> np.ndarray:
  avg_interval = (num_frames - ori_clip_len + 1) // num_clips
  if avg_interval > 0:
    return np.arange(num_clips) * avg_interval + rng.integers(0, avg_interval, size=num_clips)
  if num_frames > max(num_clips, ori_clip_len):
    return np.sort(rng.integers(0, num_frames - ori_clip_len + 1, size=num_clips))
  if avg_interval == 0:
    ratio = (num_frames - ori_clip_len + 1.0) / num_clips
    return np.around(np.arange(num_clips) * ratio).astype(np.int64)
  return np.zeros((num_clips,), np.int64)


def _test_clip_offsets(num_frames: int, clip_len: int, ori_clip_len: int, num_clips: int,
                       twice_sample: bool) -> np.ndarray:
  if clip_len == 1:   # 2D recognisers: segment centres (and starts)
    avg_interval = num_frames / float(num_clips)
    base = np.arange(num_clips) * avg_interval
    offsets = base + avg_interval / 2.0
    if twice_sample:
      offsets = np.concatenate([offsets, base])
    return offsets.astype(np.int64)
  max_offset = max(num_frames - ori_clip_len, 0)
  n = num_clips * 2 if twice_sample else num_clips
  if n > 1:
    # As MMAction2 (aligned with PySlowFast): the first clip at 0, the last at the end.
    between = max_offset / float(max(num_clips - 1, 1))
    return np.round(np.arange(n) * between).astype(np.int64)
  return np.array([max_offset // 2], np.int64)


def sample_frames(num_frames: int, clip_len: int, frame_interval: int = 1,
                  num_clips: int = 1, *, rng: np.random.Generator | None = None,
                  twice_sample: bool = False, out_of_bound: str = "loop") -> np.ndarray:
  """MMAction2's `SampleFrames`: `num_clips` clips of `clip_len` frames `frame_interval` apart.

  Training (`rng` given): the video is cut into `num_clips` equal parts and each clip
  starts at a random offset in its part. Testing: 2D-style clips (`clip_len == 1`) take
  segment centres (`twice_sample` adds the segment starts); dense clips spread uniformly
  from the first to the last possible start (one clip: the middle). Frames past the end
  wrap around (`out_of_bound="loop"`) or repeat the clip's last valid frame
  (`"repeat_last"`), as MMAction2 does for short videos.

  Returns:
    [num_clips (x2 with twice_sample), clip_len] int frame indices in [0, num_frames).
  """
  if num_frames < 1:
    raise ValueError(f"sample_frames: a video needs at least one frame, got {num_frames}.")
  if clip_len < 1 or frame_interval < 1 or num_clips < 1:
    raise ValueError(f"sample_frames: clip_len ({clip_len}), frame_interval "
                     f"({frame_interval}) and num_clips ({num_clips}) must be >= 1.")
  ori_clip_len = clip_len * frame_interval
  if rng is not None:
    offsets = _train_clip_offsets(num_frames, ori_clip_len, num_clips, rng)
  else:
    offsets = _test_clip_offsets(num_frames, clip_len, ori_clip_len, num_clips, twice_sample)
  return _clip_indices(offsets, num_frames, clip_len, frame_interval, out_of_bound,
                       "sample_frames")


def _clip_indices(offsets: np.ndarray, num_frames: int, clip_len: int, frame_interval: int,
                  out_of_bound: str, caller: str) -> np.ndarray:
  """[clips, clip_len] frames from clip starts; frames past the end loop or repeat the
  clip's last valid frame (MMAction2's `out_of_bound_opt`)."""
  inds = np.asarray(offsets, np.int64)[:, None] + np.arange(clip_len)[None, :] * frame_interval
  if out_of_bound == "loop":
    inds = np.mod(inds, num_frames)
  elif out_of_bound == "repeat_last":
    safe = inds < num_frames
    last = np.max(np.where(safe, inds, 0), axis=1, keepdims=True)
    inds = np.where(safe, inds, last)
  else:
    raise ValueError(f"{caller}: out_of_bound must be 'loop' or 'repeat_last', got "
                     f"{out_of_bound!r}.")
  return inds.astype(np.int64)


def mmaction2_3d_test_indices(num_frames: int, clip_len: int, frame_interval: int = 1,
                              num_clips: int = 1, *, out_of_bound: str = "loop") -> np.ndarray:
  """MMAction2 1.x's `SampleFrames` test mode for 3D models (clip_len > 1).

  A clip spans `(clip_len - 1) * frame_interval + 1` frames; with `max_offset =
  max(num_frames - span, 0)`, clip k of `num_clips > 1` starts at
  `round(k * max_offset / (num_clips - 1))` (numpy's round half to even: the first clip at
  0, the last at the end, as PySlowFast), and a single clip at `max_offset // 2`. Frames
  past the end loop or repeat the last one (`out_of_bound`).

  Returns:
    [num_clips, clip_len] int frame indices in [0, num_frames).
  """
  if num_frames < 1:
    raise ValueError(f"mmaction2_3d_test_indices: a video needs at least one frame, got "
                     f"{num_frames}.")
  if clip_len < 1 or frame_interval < 1 or num_clips < 1:
    raise ValueError(f"mmaction2_3d_test_indices: clip_len ({clip_len}), frame_interval "
                     f"({frame_interval}) and num_clips ({num_clips}) must be >= 1.")
  max_offset = max(num_frames - ((clip_len - 1) * frame_interval + 1), 0)
  if num_clips > 1:
    offsets = np.round(np.arange(num_clips) * (max_offset / float(num_clips - 1)))
  else:
    offsets = np.array([max_offset // 2])
  return _clip_indices(offsets, num_frames, clip_len, frame_interval, out_of_bound,
                       "mmaction2_3d_test_indices")


@dataclasses.dataclass(frozen=True)
class Sampler:
  """Frame indices of training clips and test views (picklable, for grain workers).

  Attributes:
    kind: "segments" (TSN, one frame per segment) or "dense" (`clip_len` consecutive
      frames `frame_interval` apart).
    num_frames: T, the frames of a clip (segments, or clip_len).
    frame_interval: dense only.
    test_sampling: "uniform" (views spread evenly: segment positions (v + 0.5) / V, or
      MMAction2's uniform dense test clips), "twice" (2 views: TSM's twice sample),
      "ten_clips" (TCPNet's ten-clip offsets; any view count) or "mmaction2_3d" (dense
      only: MMAction2 1.x's test clips of 3D models, `mmaction2_3d_test_indices`).
    out_of_bound: dense only, MMAction2's `out_of_bound_opt`.
  """

  kind: str = "segments"
  num_frames: int = 8
  frame_interval: int = 1
  test_sampling: str = "uniform"
  out_of_bound: str = "loop"

  def __post_init__(self):
    if self.kind not in SAMPLERS:
      raise ValueError(f"data.sampler must be one of {SAMPLERS}, got {self.kind!r}.")
    if self.test_sampling not in TEST_SAMPLINGS:
      raise ValueError(f"data.test_sampling must be one of {TEST_SAMPLINGS}, got "
                       f"{self.test_sampling!r}.")

  def train(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """[T] frame indices of one random training clip."""
    if self.kind == "segments":
      return segment_indices(num_frames, self.num_frames, rng=rng)
    return sample_frames(num_frames, self.num_frames, self.frame_interval, 1, rng=rng,
                         out_of_bound=self.out_of_bound)[0]

  def test(self, num_frames: int, num_views: int = 1) -> np.ndarray:
    """[num_views, T] frame indices of the temporal test views."""
    if self.test_sampling == "twice":
      if num_views != 2:
        raise ValueError(f"data.test_sampling='twice' makes 2 temporal views, got "
                         f"data.test_clips={num_views}.")
      if self.kind == "segments":
        return twice_sample_indices(num_frames, self.num_frames)
      return sample_frames(num_frames, self.num_frames, self.frame_interval, 1,
                           twice_sample=True, out_of_bound=self.out_of_bound)
    if self.test_sampling == "mmaction2_3d":
      if self.kind != "dense":
        raise ValueError("data.test_sampling='mmaction2_3d' is MMAction2's test sampling of "
                         "3D models; it needs data.sampler='dense'.")
      return mmaction2_3d_test_indices(num_frames, self.num_frames, self.frame_interval,
                                       num_views, out_of_bound=self.out_of_bound)
    if self.test_sampling == "ten_clips":
      if self.kind != "segments":
        raise ValueError("data.test_sampling='ten_clips' is TCPNet's segment scheme; "
                         "it needs data.sampler='segments'.")
      return ten_clip_indices(num_frames, self.num_frames, num_views)
    if self.kind == "segments":
      return np.stack([segment_indices(num_frames, self.num_frames, view=v,
                                       num_views=num_views) for v in range(num_views)])
    return sample_frames(num_frames, self.num_frames, self.frame_interval, num_views,
                         out_of_bound=self.out_of_bound)
