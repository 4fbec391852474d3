"""Samplers (MMAction2 SampleFrames, TSM twice sample, TCPNet ten clips) and transforms."""

import numpy as np
import pytest

from vidjax.data import sampling, transforms


def test_dense_train_clips_follow_mmaction2():
  rng = np.random.default_rng(0)
  for n, clip_len, interval, clips in [(100, 8, 2, 1), (100, 4, 4, 3), (300, 32, 2, 1)]:
    span = clip_len * interval
    avg = (n - span + 1) // clips
    for _ in range(30):
      inds = sampling.sample_frames(n, clip_len, interval, clips, rng=rng)
      assert inds.shape == (clips, clip_len)
      np.testing.assert_array_equal(np.diff(inds, axis=1), interval)
      # Clip c starts inside its own part of the video.
      starts = inds[:, 0]
      assert np.all(starts >= np.arange(clips) * avg)
      assert np.all(starts < np.arange(clips) * avg + avg)


def test_dense_short_videos_loop_or_repeat_last():
  rng = np.random.default_rng(1)
  # 16 frames wanted from 10: MMAction2 starts at 0 and loops.
  np.testing.assert_array_equal(sampling.sample_frames(10, 8, 2, rng=rng)[0],
                                np.mod(np.arange(8) * 2, 10))
  # Room for the clip but not for num_clips parts: sorted random starts.
  inds = sampling.sample_frames(20, 4, 2, 4, rng=rng)
  assert np.all(np.diff(inds[:, 0]) >= 0) and inds.max() < 20
  # Test: a clip of 64 frames from 20 starts at 0 and loops (MMAction2's max_offset 0).
  np.testing.assert_array_equal(sampling.sample_frames(20, 32, 2)[0], np.mod(np.arange(32) * 2, 20))
  rep = sampling.sample_frames(20, 32, 2, out_of_bound="repeat_last")[0]
  np.testing.assert_array_equal(rep, np.minimum(np.arange(32) * 2, 18))


def test_dense_test_clips_spread_from_first_to_last_start():
  inds = sampling.sample_frames(40, 8, 2, 3)
  np.testing.assert_array_equal(inds[:, 0], [0, 12, 24])   # max start 40 - 16 = 24
  assert inds[-1, -1] == 38
  np.testing.assert_array_equal(sampling.sample_frames(40, 8, 2, 1)[0, 0], 12)   # middle


def test_mmaction2_3d_test_clips_by_hand():
  """MMAction2 1.x's 3D test sampling (reference/mmaction2_cost.md 18), indices worked out
  by hand: span (clip_len - 1) * interval + 1, starts round(k * max_offset / (n - 1)),
  numpy's half-to-even rounding, one clip at max_offset // 2."""
  # 100 frames, 32 x 2: span 63, max_offset 37, 37 / 9 = 4.11 per clip.
  inds = sampling.mmaction2_3d_test_indices(100, 32, 2, 10)
  np.testing.assert_array_equal(inds[:, 0], [0, 4, 8, 12, 16, 21, 25, 29, 33, 37])
  np.testing.assert_array_equal(inds[3], 12 + 2 * np.arange(32))
  assert inds.max() == 99   # the last clip ends on the last frame
  np.testing.assert_array_equal(sampling.mmaction2_3d_test_indices(100, 32, 2, 1)[0, :3],
                                [18, 20, 22])   # 37 // 2
  # 20 frames, 4 x 2: span 7, max_offset 13; 3 clips 6.5 apart: 6.5 rounds to 6, 9.75 to 10.
  np.testing.assert_array_equal(sampling.mmaction2_3d_test_indices(20, 4, 2, 3)[:, 0],
                                [0, 6, 13])
  np.testing.assert_array_equal(sampling.mmaction2_3d_test_indices(20, 4, 2, 5)[:, 0],
                                [0, 3, 6, 10, 13])
  # 10 frames, 8 x 2 (span 15): every clip starts at 0, then loops or repeats the last.
  np.testing.assert_array_equal(sampling.mmaction2_3d_test_indices(10, 8, 2, 2),
                                [[0, 2, 4, 6, 8, 0, 2, 4]] * 2)
  np.testing.assert_array_equal(
      sampling.mmaction2_3d_test_indices(10, 8, 2, 1, out_of_bound="repeat_last"),
      [[0, 2, 4, 6, 8, 8, 8, 8]])
  # It differs from the TSM-era "uniform" dense test clips (span clip_len * interval).
  assert sampling.sample_frames(100, 32, 2, 1)[0, 0] == 18 and (
      sampling.sample_frames(100, 32, 2, 10)[5, 0] == 20)


def test_sampler_selects_mmaction2_3d_by_data_field():
  sampler = sampling.Sampler("dense", 8, 8, test_sampling="mmaction2_3d")
  # 300 frames, 8 x 8: span 57, max_offset 243, 27 per clip.
  np.testing.assert_array_equal(sampler.test(300, 10)[:, 0], 27 * np.arange(10))
  np.testing.assert_array_equal(sampler.test(300, 1)[0], 121 + 8 * np.arange(8))
  with pytest.raises(ValueError, match="needs data.sampler='dense'"):
    sampling.Sampler("segments", 8, test_sampling="mmaction2_3d").test(300, 1)
  with pytest.raises(ValueError, match="data.test_sampling must be one of"):
    sampling.Sampler("dense", 8, test_sampling="mmaction2")


def test_segment_test_protocols():
  # TSM twice sample: centres then starts, tick = 40 / 8 = 5.
  twice = sampling.twice_sample_indices(40, 8)
  np.testing.assert_array_equal(twice[0], 2 + 5 * np.arange(8))
  np.testing.assert_array_equal(twice[1], 5 * np.arange(8))
  # The same through MMAction2's 2D twice sample.
  np.testing.assert_array_equal(
      sampling.sample_frames(40, 1, 1, 8, twice_sample=True).reshape(2, 8), twice)
  # TCPNet ten clips: clip k of 1..9 at int(tick*k/10 + tick*t), then k = 0.
  ten = sampling.ten_clip_indices(37, 8)
  tick = 37 / 8
  for row, k in zip(ten, list(range(1, 10)) + [0]):
    np.testing.assert_array_equal(row, [int(tick * k / 10 + tick * t) for t in range(8)])
  assert len({tuple(r) for r in ten}) == 10
  with pytest.raises(ValueError, match="2 temporal views"):
    sampling.Sampler("segments", 8, test_sampling="twice").test(40, 3)


def _positions(h, w, t=2):
  """A clip whose pixel (y, x) stores y in channel 0 and x in channel 1."""
  y, x = np.mgrid[0:h, 0:w]
  frame = np.stack([y, x, np.zeros_like(y)], -1).astype(np.uint8)
  return np.repeat(frame[None], t, axis=0)


def test_crops_take_the_documented_windows():
  clip = _positions(60, 100)
  c = transforms.center_crop(clip, 40)
  assert c[0, 0, 0, 0] == 10 and c[0, 0, 0, 1] == 30
  three = transforms.three_crop(_positions(40, 100), 40)   # start, end, middle of the width
  assert [v[0, 0, 0, 1] for v in three] == [0, 60, 30]
  full = transforms.full_res_crops(clip, 40)               # TSM: left, right, centre
  assert [(v[0, 0, 0, 0], v[0, 0, 0, 1]) for v in full] == [(0, 0), (0, 60), (10, 30)]
  ten = transforms.ten_crop(clip, 40)
  assert ten.shape == (10, 2, 40, 40, 3)
  np.testing.assert_array_equal(ten[5:], ten[:5, :, :, ::-1])
  assert [(v[0, 0, 0, 0], v[0, 0, 0, 1]) for v in ten[:5]] == [
      (0, 0), (0, 60), (20, 0), (20, 60), (10, 30)]
  with pytest.raises(ValueError, match="test_scale"):
    transforms.three_crop(clip, 40)


def test_random_crops_keep_one_geometry_for_all_frames():
  clip = _positions(120, 160, t=4)
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(40):
    out = transforms.multi_scale_crop(clip, 64, rng)
    assert out.shape == (4, 64, 64, 3)
    assert all(np.array_equal(out[0], f) for f in out[1:])
    seen.add((int(out[0, 0, 0, 0]), int(out[0, 0, 0, 1])))   # top-left corner
    out = transforms.random_resized_crop(clip, 48, rng)
    assert out.shape == (4, 48, 48, 3) and all(np.array_equal(out[0], f) for f in out[1:])
  assert len(seen) > 5   # several scales and fixed positions
  # Fixed offsets only: multiples of the quarter steps.
  for (y, x) in seen:
    assert y in {0} | {k * s for s in range(0, 40) for k in range(5)}
  resized = transforms.resize_short(clip, 60)
  assert resized.shape == (4, 60, 80, 3)


def test_flip_swaps_mapped_labels():
  t = transforms.ClipTransform(image_size=32, train_resize=0, train_crop="none",
                               flip=True, flip_label_map=((86, 87),))
  clip = _positions(32, 32)
  rng = np.random.default_rng(0)
  flips = 0
  for _ in range(20):
    out, label = t.train(clip, np.int32(87), rng)
    flipped = out[0, 0, 0, 1] == 31
    flips += flipped
    assert label == (86 if flipped else 87)
    _, other = t.train(clip, np.int32(5), rng)
    assert other == 5
  assert 0 < flips < 20
  hot = np.zeros(100, np.float32)
  hot[86] = 1
  np.testing.assert_array_equal(transforms.flip_label(hot, {86: 87, 87: 86}), np.eye(100)[87])
