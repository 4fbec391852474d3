"""A TFDS-prepared video data set (array_record), built here without download, read
through tfds.data_source: decoded-frame and encoded-bytes video features."""

import numpy as np
import pytest

import data_fixtures as fx
from vidjax import config_defaults
from vidjax.data import pipeline, sampling

tfds = pytest.importorskip("tensorflow_datasets")


class TinyVideos(tfds.core.GeneratorBasedBuilder):
  """4 videos of 20..23 index-marked frames, as frames (Video) and as mp4 bytes."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "video": tfds.features.Video(shape=(None, 48, 64, 3)),
        "mp4": tfds.features.Tensor(shape=(), dtype=np.object_),
        "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(4):
      path = fx.write_video(f"{self._tmp}/v{i}.mp4", 20 + i)
      with open(path, "rb") as f:
        data = f.read()
      frames = np.stack([fx.marked_frame(j) for j in range(20 + i)])
      yield i, {"video": frames, "mp4": data, "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  TinyVideos._tmp = str(root)
  TinyVideos(data_dir=str(root / "data"), file_format="array_record").download_and_prepare()
  return str(root / "data")


@pytest.mark.parametrize("key", ["video", "mp4"])
def test_tfds_source_feeds_the_pipelines(data_dir, key):
  data = config_defaults.data_config(
      name="tiny", format="tfds", tfds_name="tiny_videos", tfds_data_dir=data_dir,
      train_split="train", eval_split="train", video_key=key, num_classes=3, num_frames=4,
      image_size=64, test_scale=0, train_resize=0, train_crop="none", flip=False,
      test_clips=2)
  batches = list(pipeline.eval_iterator(data, 4, num_views=2))
  clips = batches[0]["clip"]
  assert clips.shape == (4, 2, 4, 48, 64, 3)
  # TFDS shuffles the examples when it writes them: identify each by its length.
  sampler = sampling.Sampler("segments", 4)
  expected = {n: sampler.test(n, 2) for n in range(20, 24)}
  lengths = []
  for clip, label in zip(clips, batches[0]["label"]):
    got = fx.clip_indices(clip)
    lengths += [n for n, e in expected.items() if np.array_equal(got, e)]
    assert label == (lengths[-1] - 20) % 3
  assert sorted(lengths) == [20, 21, 22, 23]
  train = next(pipeline.train_iterator(data, 2, seed=0))
  assert train["clip"].shape == (2, 4, 48, 64, 3)
  with pytest.raises(pipeline.DataNotFoundError, match="nope"):
    pipeline.train_iterator(dict_update(data, tfds_name="nope"), 2, seed=0)


def dict_update(d, **kw):
  d = d.copy_and_resolve_references()
  d.update(kw)
  return d
