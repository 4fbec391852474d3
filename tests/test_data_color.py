"""Colour jitter and grayscale (vidjax/data/color.py): Pillow's arithmetic, torchvision's
factor ranges and per-frame draws, TC-CLIP's per-clip probabilities, and the train
pipeline's determinism with them on."""

import numpy as np
import pytest

from vidjax import config_defaults
from vidjax.data import color, pipeline, transforms


def _frames(seed, n=3, h=12, w=10):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_grayscale_is_itu_601_luma_in_every_channel():
  x = _frames(0, n=2)
  g = color.grayscale(x)
  assert g.shape == x.shape and g.dtype == np.uint8
  np.testing.assert_array_equal(g[..., 0], g[..., 1])
  np.testing.assert_array_equal(g[..., 0], g[..., 2])
  want = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  assert np.abs(g[..., 0] - want).max() <= 0.5 + 1e-3   # rounded to the nearest level
  # Pure primaries weigh as the standard says.
  prim = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]], np.uint8)
  np.testing.assert_array_equal(color.grayscale(prim)[0, 0, :, 0], [76, 150, 29])


def test_each_operation_matches_pillow_bytes():
  """torchvision's PIL functional ops: ImageEnhance.Brightness / Contrast / Color and the
  8-bit HSV hue turn; the numpy HSV conversions equal Pillow's."""
  pil = pytest.importorskip("PIL.Image")
  enhance = pytest.importorskip("PIL.ImageEnhance")
  rng = np.random.default_rng(1)
  for trial in range(12):
    x = _frames(trial, n=1, h=16, w=24)
    x[0, :3] = 90   # grey pixels take the HSV special case
    img = pil.fromarray(x[0])
    f = rng.uniform(0.0, 2.0)
    for ours, theirs in ((color.adjust_brightness, enhance.Brightness),
                         (color.adjust_contrast, enhance.Contrast),
                         (color.adjust_saturation, enhance.Color)):
      np.testing.assert_array_equal(ours(x, [f])[0], np.asarray(theirs(img).enhance(f)))
    hue = rng.uniform(-0.5, 0.5)
    h, s, v = img.convert("HSV").split()
    turned = np.array(h, np.uint8) + np.array(hue * 255).astype(np.uint8)   # torchvision
    want = np.asarray(pil.merge("HSV", (pil.fromarray(turned, "L"), s, v)).convert("RGB"))
    np.testing.assert_array_equal(color.adjust_hue(x, [hue])[0], want)
    np.testing.assert_array_equal(color.adjust_hue(x, [hue], use_pil=False)[0], want)
    np.testing.assert_array_equal(color.rgb_to_hsv(x[0]), np.asarray(img.convert("HSV")))
    np.testing.assert_array_equal(color.hsv_to_rgb(x[0]),
                                  np.asarray(pil.fromarray(x[0], "HSV").convert("RGB")))


def test_jitter_draws_new_factors_and_order_per_frame_within_the_ranges():
  rng = np.random.default_rng(2)
  order, factors = color.sample_jitter(rng, 2000, (0.4, 0.4, 0.2, 0.1))
  assert all(sorted(o) == [0, 1, 2, 3] for o in order[:50])
  assert len({tuple(o) for o in order}) == 24   # every order occurs
  for op, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
    assert lo <= factors[:, op].min() and factors[:, op].max() <= hi
    assert factors[:, op].min() < lo + 0.02 and factors[:, op].max() > hi - 0.02
  assert len(np.unique(factors[:, 0])) == 2000
  # Strength 0: the operation draws nothing and is skipped; brightness above 1 floors at 0.
  _, only = color.sample_jitter(rng, 500, (1.5, 0, 0, 0))
  assert np.isnan(only[:, 1:]).all() and only[:, 0].min() >= 0.0
  x = _frames(3, n=4)
  o, f = color.sample_jitter(np.random.default_rng(4), 4, (0.4, 0, 0, 0))
  np.testing.assert_array_equal(color.apply_jitter(x, o, f),
                                color.adjust_brightness(x, f[:, 0]))
  # A clip's frames change by different factors (uniform grey: brightness alone shows).
  flat = np.full((8, 6, 6, 3), 128, np.uint8)
  out = color.jitter_clip(flat, np.random.default_rng(5), (0.4, 0, 0, 0))
  assert len(np.unique(out[:, 0, 0, 0])) > 4
  ratio = out[:, 0, 0, 0] / 128.0
  assert ratio.min() >= 0.6 - 1 / 128 and ratio.max() <= 1.4
  with pytest.raises(ValueError, match=r"data.color_jitter=\(0.4, 0.4, 0.2, 0.7\): expected"):
    color.check_strength((0.4, 0.4, 0.2, 0.7))


def test_clip_transform_probabilities_order_and_determinism():
  t = transforms.ClipTransform(image_size=8, train_resize=0, train_crop="none", flip=False,
                               color_jitter_prob=0.8, grayscale_prob=0.2)
  clip = _frames(6, n=2, h=8, w=8)
  rng = np.random.default_rng(7)
  n, jittered, grey = 600, 0, 0
  for _ in range(n):
    out, _ = t.train(clip, 0, rng)
    is_grey = np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    grey += is_grey
    if is_grey:   # grayscale comes last: grey either from the clip or its jittered version
      jittered += not np.array_equal(out, color.grayscale(clip))
    else:
      jittered += not np.array_equal(out, clip)
  # Binomial(600, p): 5 standard deviations.
  assert abs(grey / n - 0.2) < 5 * np.sqrt(0.2 * 0.8 / n)
  assert abs(jittered / n - 0.8) < 5 * np.sqrt(0.2 * 0.8 / n)
  a, _ = t.train(clip, 0, np.random.default_rng(11))
  b, _ = t.train(clip, 0, np.random.default_rng(11))
  np.testing.assert_array_equal(a, b)
  # Off (the default), the transform draws nothing more than before.
  plain = transforms.ClipTransform(image_size=8, train_resize=0, train_crop="none")
  r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
  plain.train(clip, 0, r1)
  r2.random()   # the flip's draw
  assert r1.random() == r2.random()
  with pytest.raises(ValueError, match="data.grayscale_prob=1.5: expected a probability"):
    transforms.ClipTransform(grayscale_prob=1.5)


def test_train_pipeline_with_colour_augmentation_resumes_exactly():
  data = config_defaults.demo_data(num_frames=2, image_size=16, source_frames=4,
                                   train_examples=8, eval_examples=0, color_jitter_prob=0.8,
                                   grayscale_prob=0.5, num_threads=1, prefetch=1)
  it = pipeline.train_iterator(data, 2, seed=3)
  next(it)
  state = it.get_state()
  after = [next(it)["clip"] for _ in range(3)]
  resumed = pipeline.train_iterator(data, 2, seed=3)
  resumed.set_state(state)
  for a in after:
    np.testing.assert_array_equal(a, next(resumed)["clip"])
  plain = pipeline.train_iterator(config_defaults.demo_data(
      num_frames=2, image_size=16, source_frames=4, train_examples=8, eval_examples=0,
      num_threads=1, prefetch=1), 2, seed=3)
  next(plain)
  assert any(not np.array_equal(a, next(plain)["clip"]) for a in after)
