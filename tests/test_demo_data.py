"""Tests of the embedded demo data set (vidjax/data/demo.py)."""

from __future__ import annotations

import os

import av
import grain
import numpy as np
import pytest

from vidjax.data import demo

T, S = 8, 32
LEFT, RIGHT, UP, DOWN, SQUARE, CROSS = range(6)


def _indices(label: int, n: int) -> list[int]:
  return [label + demo.NUM_CLASSES * k for k in range(n)]


def _scene(index: int, *, seed: int = 0, split: str = "train", num_frames: int = T,
           image_size: int = S) -> dict:
  """The scene `make_clip` draws for `index`, to read its object mask."""
  rng = demo._rng(seed, split, index)
  return demo._sample_scene(rng, demo.label_of(index), num_frames, image_size)


def _centroids(alpha: np.ndarray) -> np.ndarray:
  """Object centroids (x, y) in pixels of coverage [T, H, W] -> [T, 2]."""
  c = np.arange(alpha.shape[-1]) + 0.5
  mass = alpha.sum((1, 2))
  return np.stack([(alpha * c[None, None, :]).sum((1, 2)) / mass,
                   (alpha * c[None, :, None]).sum((1, 2)) / mass], axis=1)


def _total_variation(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
  ha = np.histogram(a, bins)[0] / len(a)
  hb = np.histogram(b, bins)[0] / len(b)
  return 0.5 * float(np.abs(ha - hb).sum())


def test_class_constants():
  assert demo.NUM_CLASSES == len(demo.CLASS_NAMES) == 6
  assert len(set(demo.CLASS_NAMES)) == demo.NUM_CLASSES
  assert demo.DIRECTION_CLASSES == (LEFT, RIGHT, UP, DOWN)
  assert demo.APPEARANCE_CLASSES == (SQUARE, CROSS)
  assert sorted(demo.DIRECTION_CLASSES + demo.APPEARANCE_CLASSES) == list(range(6))
  assert demo.REVERSAL_PAIRS == ((LEFT, RIGHT), (UP, DOWN))
  assert demo.FLIP_LABEL_MAP == {LEFT: RIGHT, RIGHT: LEFT}


def test_make_clip_shapes_and_determinism():
  clip, label = demo.make_clip(7, seed=3, split="train", num_frames=T, image_size=S)
  assert clip.shape == (T, S, S, 3) and clip.dtype == np.uint8
  assert isinstance(label, int) and label == 7 % demo.NUM_CLASSES
  again, _ = demo.make_clip(7, seed=3, split="train", num_frames=T, image_size=S)
  np.testing.assert_array_equal(clip, again)
  for kwargs in (dict(seed=4, split="train"), dict(seed=3, split="eval")):
    other, other_label = demo.make_clip(7, num_frames=T, image_size=S, **kwargs)
    assert other_label == label
    assert np.abs(other.astype(int) - clip.astype(int)).mean() > 10
  other, _ = demo.make_clip(13, seed=3, split="train", num_frames=T, image_size=S)
  assert not np.array_equal(other, clip)
  big, _ = demo.make_clip(7, seed=3, split="train", num_frames=16, image_size=64)
  assert big.shape == (16, 64, 64, 3) and big.dtype == np.uint8


def test_invalid_arguments():
  with pytest.raises(ValueError):
    demo.make_clip(0, seed=0, split="train", num_frames=1, image_size=S)
  with pytest.raises(ValueError):
    demo.make_clip(0, seed=0, split="", num_frames=T, image_size=S)
  with pytest.raises(ValueError):
    demo.make_clip(-1, seed=0, split="train", num_frames=T, image_size=S)


def test_source_items_and_balance():
  source = demo.DemoSource(split="train", num_examples=600, seed=1)
  assert len(source) == 600
  item = source[5]
  assert set(item) == {"clip", "label", "index"}
  assert item["clip"].shape == (8, 32, 32, 3) and item["clip"].dtype == np.uint8
  assert item["label"].dtype == np.int32 and item["label"].shape == ()
  assert item["index"].dtype == np.int32 and int(item["index"]) == 5
  clip, label = demo.make_clip(5, seed=1, split="train", num_frames=8, image_size=32)
  np.testing.assert_array_equal(item["clip"], clip)
  assert int(item["label"]) == label
  np.testing.assert_array_equal(source[-1]["clip"], source[599]["clip"])
  with pytest.raises(IndexError):
    source[600]
  labels = source.labels
  assert labels.dtype == np.int32
  assert [int(source[i]["label"]) for i in range(12)] == list(labels[:12])
  assert np.all(np.bincount(labels, minlength=6) == 100)
  # Train and eval never share a clip.
  eval_source = demo.DemoSource(split="eval", num_examples=6, seed=1)
  assert not np.array_equal(eval_source[0]["clip"], source[0]["clip"])


def test_source_through_grain():
  source = demo.DemoSource(split="eval", num_examples=10, num_frames=4, image_size=16)
  ds = grain.MapDataset.source(source).batch(5)
  batch = ds[1]
  assert batch["clip"].shape == (5, 4, 16, 16, 3)
  np.testing.assert_array_equal(batch["label"], np.arange(5, 10) % 6)


def test_opposite_directions_are_exact_time_reversals():
  """With the same random draws, flipping the direction label reverses time exactly.

  So the distribution of left clips is the distribution of time-reversed right clips,
  and any model invariant to frame order is at chance within the pair.
  """
  for first, second in demo.REVERSAL_PAIRS:
    for k in range(20):
      a = demo._sample_scene(np.random.default_rng(k), first, T, S)
      b = demo._sample_scene(np.random.default_rng(k), second, T, S)
      np.testing.assert_array_equal(a["centres"], b["centres"][::-1])
      np.testing.assert_array_equal(demo._render(a, None, S),
                                    demo._render(b, None, S)[::-1])


def test_single_frames_cannot_tell_left_from_right():
  """Pooled over frames, left and right look the same; frame order separates them."""
  n = 300
  cents = {lab: np.stack([_centroids(demo._coverage(_scene(i), S))
                          for i in _indices(lab, n)])
           for lab in (LEFT, RIGHT, UP, DOWN)}           # [n, T, 2] each
  x = {lab: c[..., 0] for lab, c in cents.items()}
  y = {lab: c[..., 1] for lab, c in cents.items()}
  bins = np.linspace(0, S, 9)
  # Bag of frames: histograms of the object's x (y) position over all frames agree...
  tv_pooled_x = _total_variation(x[LEFT].ravel(), x[RIGHT].ravel(), bins)
  tv_pooled_y = _total_variation(y[UP].ravel(), y[DOWN].ravel(), bins)
  # ...whereas the first frames alone differ (a right-mover starts further left).
  tv_first_x = _total_variation(x[LEFT][:, 0], x[RIGHT][:, 0], bins)
  assert tv_pooled_x < 0.05 and tv_pooled_y < 0.05, (tv_pooled_x, tv_pooled_y)
  assert tv_first_x > 0.5, tv_first_x
  assert abs(x[LEFT].mean() - x[RIGHT].mean()) < 1.0, (x[LEFT].mean(), x[RIGHT].mean())
  # A temporal statistic, displacement from the first to the last frame, is perfect.
  assert np.all(x[LEFT][:, -1] - x[LEFT][:, 0] < -0.2 * S)
  assert np.all(x[RIGHT][:, -1] - x[RIGHT][:, 0] > 0.2 * S)
  assert np.all(y[UP][:, -1] - y[UP][:, 0] < -0.2 * S)
  assert np.all(y[DOWN][:, -1] - y[DOWN][:, 0] > 0.2 * S)
  # The perpendicular coordinate does not move.
  np.testing.assert_allclose(y[LEFT][:, -1], y[LEFT][:, 0], atol=0.1)
  np.testing.assert_allclose(x[UP][:, -1], x[UP][:, 0], atol=0.1)


def test_mean_image_is_the_same_for_opposite_directions():
  """The same check on pixels: where the object tends to be, averaged over all frames."""
  n = 300

  def profile(label: int, along: str, frames: slice = slice(None),
              seed: int = 0) -> np.ndarray:
    """Mean saliency per column (along="x") or per row (along="y"), float [S]."""
    clips = np.stack([
        demo.make_clip(i, seed=seed, split="train", num_frames=T, image_size=S)[0]
        for i in _indices(label, n)])[:, frames].astype(np.float32)
    lum = clips.mean(-1)                               # [n, t, H, W]
    # Distance from the frame's median brightness marks the object, whatever its colour.
    saliency = np.abs(lum - np.median(lum, axis=(2, 3), keepdims=True))
    return saliency.mean((0, 1, 2) if along == "x" else (0, 1, 3))

  def gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())

  left, right = profile(LEFT, "x"), profile(RIGHT, "x")
  # Reference: two independent samples of the same class differ this much by chance.
  sampling = gap(left, profile(LEFT, "x", seed=1))
  first_frames = gap(profile(LEFT, "x", slice(0, 1)), profile(RIGHT, "x", slice(0, 1)))
  up_down = gap(profile(UP, "y"), profile(DOWN, "y"))
  assert gap(left, right) < 2 * sampling and up_down < 2 * sampling, (
      gap(left, right), up_down, sampling)
  # The first frames alone give the direction away: the object starts where it leaves.
  assert first_frames > 10 * gap(left, right), (first_frames, gap(left, right))


def test_appearance_classes_separate_from_one_frame():
  """The four-fold angular moment of one frame's object mask tells disk, square, cross."""

  def anisotropy(alpha: np.ndarray) -> float:
    # log E[(x^2 - y^2)^2] / E[(2xy)^2] about the centroid: 0 for a disk, < 0 when mass
    # sits on the diagonals (square corners), > 0 when it sits on the axes (cross arms).
    c = np.arange(alpha.shape[-1]) + 0.5
    w = alpha / alpha.sum()
    x = c[None, :] - (w * c[None, :]).sum()
    y = c[:, None] - (w * c[:, None]).sum()
    return float(np.log((w * (x * x - y * y) ** 2).sum() / (w * (2 * x * y) ** 2).sum()))

  n = 100
  for size in (32, 64):
    stats = {}
    for label in (LEFT, UP, SQUARE, CROSS):
      stats[label] = np.array([
          anisotropy(demo._coverage(_scene(i, image_size=size), size)[k % T])
          for k, i in enumerate(_indices(label, n))])
    for label in (LEFT, UP):
      assert np.all(np.abs(stats[label]) < 0.4), (size, label, np.abs(stats[label]).max())
    assert np.all(stats[SQUARE] < -0.6), (size, stats[SQUARE].max())
    assert np.all(stats[CROSS] > 0.6), (size, stats[CROSS].min())


def test_objects_stay_inside_and_visible():
  for i in range(60):
    scene = _scene(i)
    alpha = demo._coverage(scene, S)
    # The whole object is drawn in every frame: same area in all frames, none on the border.
    area = alpha.sum((1, 2))
    np.testing.assert_allclose(area, area[0], rtol=0.05)
    assert alpha[:, 0].max() == 0 and alpha[:, -1].max() == 0
    assert alpha[:, :, 0].max() == 0 and alpha[:, :, -1].max() == 0
    clip, _ = demo.make_clip(i, seed=0, split="train", num_frames=T, image_size=S)
    inside = clip[alpha > 0.99].astype(float).mean(0)
    outside = clip[alpha < 0.01].astype(float).mean(0)
    assert abs(inside.mean() - outside.mean()) > 40, (i, inside, outside)


@pytest.mark.parametrize("codec", ["default", "mpeg4"])
def test_write_video_files(tmp_path, monkeypatch, codec):
  if codec == "mpeg4":   # the fallback for PyAV builds without libx264
    monkeypatch.setattr(demo, "_video_codec", lambda: "mpeg4")
  n = 8
  list_path = demo.write_video_files(str(tmp_path), split="eval", num_examples=n,
                                     num_frames=T, image_size=S, seed=2, fps=8)
  assert list_path == os.path.join(str(tmp_path), "eval_list.txt")
  with open(tmp_path / "label_names.txt") as f:
    assert tuple(f.read().split()) == demo.CLASS_NAMES
  with open(list_path) as f:
    lines = [line.split() for line in f.read().splitlines()]
  assert len(lines) == n
  errors = []
  for index, (rel, label) in enumerate(lines):
    original, expected_label = demo.make_clip(index, seed=2, split="eval", num_frames=T,
                                              image_size=S)
    assert int(label) == expected_label and not os.path.isabs(rel)
    with av.open(os.path.join(str(tmp_path), rel)) as container:
      stream = container.streams.video[0]
      x264 = codec == "default" and "libx264" in av.codecs_available
      expected = "h264" if x264 else "mpeg4"
      assert stream.codec_context.name == expected
      decoded = np.stack([frame.to_ndarray(format="rgb24")
                          for frame in container.decode(stream)])
    assert decoded.shape == original.shape
    errors.append(np.abs(decoded.astype(float) - original.astype(float)).mean())
  assert max(errors) < 3.5, errors


def test_make_clip_is_fast():
  import time
  demo.make_clip(0, seed=0, split="train", num_frames=T, image_size=S)
  start = time.perf_counter()
  for i in range(200):
    demo.make_clip(i, seed=0, split="train", num_frames=T, image_size=S)
  per_clip = (time.perf_counter() - start) / 200
  # 0.27 ms on the idle 2-core development VM; generous for a loaded CI runner.
  assert per_clip < 5e-3, per_clip
