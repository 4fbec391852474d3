"""grain pipelines over real files: lists, bad files skipped and counted, multi-view eval,
resume with worker processes, and a training run over a list with bad files."""

import logging
import os

import numpy as np
import pytest

import data_fixtures as fx
from conftest import load_config
from vidjax import config_defaults
from vidjax.data import pipeline, sampling, sources

GOOD = 8
BAD = ("missing.mp4", "empty.mp4", "truncated.mp4", "junk.webm")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """8 readable videos (24..38 frames, label i % 3) and one of each kind of bad file."""
  root = tmp_path_factory.mktemp("ds")
  lines = []
  for i in range(GOOD):
    ext, codec, pix_fmt = fx.FORMATS[i % len(fx.FORMATS)]
    fx.write_video(str(root / f"v{i}.{ext}"), 24 + 2 * i, codec, pix_fmt)
    lines.append(f"v{i}.{ext} {i % 3}")
  (root / "empty.mp4").write_bytes(b"")
  data = (root / "v0.mp4").read_bytes()
  (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
  (root / "junk.webm").write_bytes(np.random.default_rng(0).bytes(3000))
  lines += [f"{name} 0" for name in BAD]
  (root / "list.txt").write_text("\n".join(lines) + "\n")
  (root / "good.txt").write_text("\n".join(lines[:GOOD]) + "\n")
  (root / "names.txt").write_text("a\nb\nc\n")
  return root


def _data(root, list_name="list.txt", **kw):
  d = config_defaults.data_config(
      name="tiny", root=str(root), train_list=str(root / list_name),
      eval_list=str(root / list_name), label_names=str(root / "names.txt"), num_classes=3,
      num_frames=4, image_size=32, train_resize=40, test_scale=32, num_threads=1, prefetch=2)
  d.update(kw)
  return d


def test_train_skips_bad_files_with_one_warning_each_and_counts(dataset, caplog):
  it = pipeline.train_iterator(_data(dataset), 4, seed=0)
  with caplog.at_level(logging.WARNING):
    batches = [next(it) for _ in range(6)]   # 24 readable clips = 3 epochs
  for b in batches:
    assert b["clip"].shape == (4, 4, 32, 32, 3) and b["clip"].dtype == np.uint8
    assert set(b) == {"clip", "label"}
  labels = np.concatenate([b["label"] for b in batches])
  assert sorted(np.bincount(labels)) == sorted(np.bincount([i % 3 for i in range(GOOD)]) * 3)
  # Epochs 1 and 2 read all 4 bad files: each counts once.
  assert it.skipped_files == len(BAD)
  warned = [r.getMessage() for r in caplog.records if "Skipping unreadable" in r.getMessage()]
  for name in BAD:
    assert sum(name in m for m in warned) == 1, (name, warned)   # once, over 3 epochs
  assert it.get_state()["skipped_files"] == it.skipped_files


def test_every_file_bad_is_a_clear_error(dataset, tmp_path):
  (tmp_path / "bad.txt").write_text("".join(f"{n} 0\n" for n in BAD))
  it = pipeline.train_iterator(_data(dataset, train_list=str(tmp_path / "bad.txt")), 2, seed=0)
  with pytest.raises(pipeline.DataError, match="in a row could not be read"):
    next(it)


def test_eval_views_frames_masks_and_skips(dataset):
  # Full frames (test_scale 0, crop larger than the frame): indices readable per view.
  data = _data(dataset, test_scale=0, image_size=64, test_clips=3, test_sampling="uniform")
  it = pipeline.eval_iterator(data, 4, num_views=3)
  batches = list(it)
  assert len(batches) == 3   # 12 entries
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.tolist() == [True] * GOOD + [False] * 4 and it.skipped_files == 4
  sampler = sampling.Sampler("segments", 4)
  clips = np.concatenate([b["clip"] for b in batches])[:GOOD]
  assert clips.shape == (GOOD, 3, 4, 48, 64, 3)
  for i in range(GOOD):
    np.testing.assert_array_equal(fx.clip_indices(clips[i]), sampler.test(24 + 2 * i, 3))
  # TCPNet test30 geometry: 10 clips x 3 full-res crops, crop-major.
  data = _data(dataset, "good.txt", test_scale=40, image_size=40, test_clips=10,
               test_sampling="ten_clips", test_crop="full_res_three")
  batch = next(pipeline.eval_iterator(data, 2, num_views=30))
  assert batch["clip"].shape == (2, 30, 4, 40, 40, 3)
  left, right = batch["clip"][0, :10], batch["clip"][0, 10:20]
  assert not np.array_equal(left, right)
  with pytest.raises(ValueError, match="set config.eval.num_views=30"):
    pipeline.eval_iterator(data, 2, num_views=10)


@pytest.mark.slow
def test_resume_with_worker_processes_sees_the_same_batches(dataset):
  data = _data(dataset, "good.txt", num_workers=2)
  it = pipeline.train_iterator(data, 2, seed=5)
  for _ in range(3):
    next(it)
  state = it.get_state()
  after = [next(it) for _ in range(3)]
  it.close()
  # The batches left the workers' shared memory (a block alive at exit counts as leaked).
  assert all(type(b["clip"]) is np.ndarray for b in after)
  resumed = pipeline.train_iterator(data, 2, seed=5)
  resumed.set_state(state)
  for a, b in zip(after, [next(resumed) for _ in range(3)]):
    np.testing.assert_array_equal(a["clip"], b["clip"])
    np.testing.assert_array_equal(a["label"], b["label"])
  resumed.close()
  # Another worker count has another order: refused with the value to use.
  other = pipeline.train_iterator(_data(dataset, "good.txt", num_workers=0), 2, seed=5)
  with pytest.raises(pipeline.DataError, match="num_workers=2"):
    other.set_state(state)


def test_list_formats(tmp_path):
  (tmp_path / "frames.txt").write_text("f/a 30 2\nf/b 12 0\n")
  src = sources.ListSource(list_file=str(tmp_path / "frames.txt"), fmt="frames",
                           root=str(tmp_path))
  assert src[0] == {"frame_dir": str(tmp_path / "f/a"), "num_frames": 30, "label": 2}
  (tmp_path / "multi.txt").write_text("a.mp4 1 3\nb.mp4 0\n")
  multi = sources.ListSource(list_file=str(tmp_path / "multi.txt"), multi_label=True,
                             num_classes=4)
  np.testing.assert_array_equal(multi[0]["label"], [0, 1, 0, 1])
  (tmp_path / "k.csv").write_text(
      "label,youtube_id,time_start,time_end,split\n"
      "riding a bike,abc,12,22,train\nabseiling,xyz,0,10,train\n")
  k = sources.ListSource(list_file=str(tmp_path / "k.csv"), fmt="kinetics_csv",
                         root="/data")
  assert k.label_names == ["abseiling", "riding a bike"]
  assert k[0] == {"video": "/data/abc_000012_000022.mp4", "label": 1}
  (tmp_path / "bad.txt").write_text("a.mp4 x\n")
  with pytest.raises(sources.AnnotationError, match=r"bad.txt:1: labels must be integers"):
    sources.ListSource(list_file=str(tmp_path / "bad.txt"))
  with pytest.raises(sources.AnnotationError, match="2 label names, but data.num_classes=3"):
    sources.ListSource(list_file=str(tmp_path / "k.csv"), fmt="kinetics_csv", num_classes=3)
  with pytest.raises(sources.AnnotationError, match="out of range"):
    sources.ListSource(list_file=str(tmp_path / "frames.txt"), fmt="frames", num_classes=2)


@pytest.mark.slow
def test_training_run_over_a_list_with_bad_files(dataset, tmp_path):
  from vidjax.train import trainer, writers  # pylint: disable=g-import-not-at-top
  config = load_config("tsn_r50", "smoke")
  # Mixup and CutMix on, through the real train step.
  config.data = _data(dataset, num_frames=2, num_workers=0, mixup_alpha=0.2, cutmix_alpha=1.0)
  config.model.num_classes = 3
  config.update(total_steps=3, log_every_steps=1, checkpoint_every_steps=3)
  results = trainer.run(config, str(tmp_path))
  assert np.isfinite(results["eval/loss"]) and results["eval/skipped_files"] == 4
  rows = writers.read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))
  skipped = [r["train/skipped_files"] for r in rows if "train/skipped_files" in r]
  # Batches of 8 = one epoch of readable files each: by step 3 every bad file has been met
  # (twice), and each counts once.
  assert len(skipped) == 3 and skipped == sorted(skipped) and skipped[-1] == len(BAD)
