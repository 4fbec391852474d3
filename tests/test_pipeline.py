"""The demo grain pipelines: segment sampling, epochs, exact eval padding, resume."""

import numpy as np
import pytest

from vidjax import config_defaults
from vidjax.data import pipeline, sampling


def test_segment_indices_test_and_train():
  np.testing.assert_array_equal(sampling.segment_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15])
  np.testing.assert_array_equal(sampling.segment_indices(16, 4, view=0, num_views=2),
                                [1, 5, 9, 13])
  np.testing.assert_array_equal(sampling.segment_indices(16, 4, view=1, num_views=2),
                                [3, 7, 11, 15])
  # Short video: frames repeat, never out of range.
  np.testing.assert_array_equal(sampling.segment_indices(3, 6), [0, 0, 1, 1, 2, 2])
  rng = np.random.default_rng(0)
  for _ in range(50):
    idx = sampling.segment_indices(17, 4, rng=rng)
    seg = np.floor(np.arange(4) * 17 / 4)
    assert np.all(idx >= seg) and np.all(idx < seg + 17 / 4)
  with pytest.raises(ValueError, match="at least one frame"):
    sampling.segment_indices(0, 4)


def _data(**kw):
  return config_defaults.demo_data(train_examples=24, eval_examples=10, source_frames=8,
                                   num_frames=4, image_size=16, **kw)


def test_train_iterator_epochs_and_resume():
  data = _data()
  it = pipeline.train_iterator(data, 8, seed=3)
  batches = [next(it) for _ in range(3)]  # one epoch
  assert batches[0]["clip"].shape == (8, 4, 16, 16, 3) and batches[0]["clip"].dtype == np.uint8
  labels = np.concatenate([b["label"] for b in batches])
  assert sorted(np.bincount(labels)) == [4] * 6  # each example once per epoch
  state = it.get_state()
  after = [next(it) for _ in range(2)]
  resumed = pipeline.train_iterator(data, 8, seed=3)
  resumed.set_state(state)
  for a, b in zip(after, [next(resumed) for _ in range(2)]):
    np.testing.assert_array_equal(a["clip"], b["clip"])
    np.testing.assert_array_equal(a["label"], b["label"])
  # Another seed, another order.
  other = next(pipeline.train_iterator(data, 8, seed=4))
  assert not np.array_equal(other["clip"], batches[0]["clip"])


def test_eval_iterator_pads_with_mask_and_views():
  data = _data()
  batches = list(pipeline.eval_iterator(data, 4, num_views=1))
  assert len(batches) == 3
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.tolist() == [True] * 10 + [False] * 2
  multi = list(pipeline.eval_iterator(data, 4, num_views=3))
  assert multi[0]["clip"].shape == (4, 3, 4, 16, 16, 3)
  # View 0 of 3 differs from the single centre view; labels agree.
  assert not np.array_equal(multi[0]["clip"][:, 0], batches[0]["clip"])
  np.testing.assert_array_equal(multi[0]["label"], batches[0]["label"])


def test_missing_data_message_names_path_and_demo(tmp_path):
  data = config_defaults.data_config(train_list=str(tmp_path / "nope.txt"))
  with pytest.raises(pipeline.DataNotFoundError) as e:
    pipeline.train_iterator(data, 8, seed=0)
  msg = str(e.value)
  assert str(tmp_path / "nope.txt") in msg and ":demo" in msg and "build_file_list" in msg
