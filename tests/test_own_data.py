"""Your own videos in one override (`--config.data.root=DIR`): vidjax/data/resolve.py.

The data-override rule: a data field given on the command line takes effect or is an
error; the class count comes from the data; both splits' files are looked up first.
"""

import os
import shutil

import pytest

from conftest import load_config, write_class_folders
from vidjax.data import pipeline, resolve, sources


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  return write_class_folders(str(tmp_path_factory.mktemp("own") / "videos"))


def _lines(path):
  with open(path) as f:
    return [l.rstrip("\n") for l in f]


def test_class_folders_on_the_demo_variant(folders, tmp_path):
  config = load_config("tsm_r50", "smoke", **{"data.root": folders})
  text = resolve.resolve(config, str(tmp_path / "lists"))
  d = config.data
  assert (d.format, d.num_classes, config.model.num_classes) == ("videos", 3, 3)
  assert d.name == "videos"
  assert _lines(d.label_names) == ["jumping jacks", "push_up", "run"]
  train = sources.ListSource(list_file=d.train_list, root=d.root, num_classes=3)
  assert len(train) == 12 and len(pipeline._source(d, "eval")) == 6
  # Labels index the sorted class folders; names with spaces survive the list.
  for i in range(len(train)):
    record = train[i]
    assert os.path.exists(record["video"])
    assert os.path.basename(os.path.dirname(record["video"])) == \
        ["jumping jacks", "push_up", "run"][int(record["label"])]
  # Videos of three sizes stack: the demo's "no resize, no crop" became a resize and crop.
  assert d.train_resize > d.image_size and d.train_crop == "multi_scale" and d.test_scale
  assert "12 train" in text and "6 eval" in text and "3 classes" in text
  batch = next(pipeline.eval_iterator(d, 4))
  assert batch["clip"].shape == (4, d.num_frames, d.image_size, d.image_size, 3)


def test_demo_without_overrides_stays_demo(tmp_path):
  config = load_config("tsn_r50", "smoke")
  assert "demo data set" in resolve.resolve(config, str(tmp_path))
  assert config.data.name == "demo" and config.model.num_classes == 6


def test_demo_with_a_class_count_is_an_error(tmp_path):
  config = load_config("tsn_r50", "smoke", **{"data.num_classes": 5})
  with pytest.raises(ValueError, match="data.num_classes=5.*6 classes"):
    resolve.resolve(config, str(tmp_path))


def test_demo_with_a_format_but_no_data_is_an_error(tmp_path):
  config = load_config("tsn_r50", "smoke", **{"data.format": "frames"})
  resolve.resolve(config, str(tmp_path))
  with pytest.raises(pipeline.DataNotFoundError, match="train data"):
    pipeline._source(config.data, "train")


def test_recipe_lists_follow_the_root(folders, tmp_path):
  """Kinetics' list names, relative in the recipe, are looked up under the new root."""
  root = tmp_path / "k"
  shutil.copytree(folders, root)
  d0 = load_config("tsm_r50").data
  for name, split in ((d0.train_list, "train"), (d0.eval_list, "val")):
    entries = [f"{os.path.relpath(os.path.join(dp, f), root)} {i % 3}"
               for i, (dp, f) in enumerate((dp, f) for dp, _, fs in sorted(os.walk(root / split))
                                           for f in sorted(fs))]
    (root / name).write_text("\n".join(entries) + "\n")
  config = load_config("tsm_r50", **{"data.root": str(root)})
  resolve.resolve(config, str(tmp_path / "lists"))
  assert config.data.train_list == str(root / d0.train_list)
  assert config.model.num_classes == 3   # max label + 1: no label-name file


def test_list_files_in_the_root_are_found(folders, tmp_path):
  root = tmp_path / "lists_root"
  shutil.copytree(folders, root)
  (root / "my_train.txt").write_text("train/run/v02.mp4 2\ntrain/push_up/v01.mp4 1\n")
  (root / "my_val.txt").write_text("val/run/v02.mp4 2\n")
  (root / "label_names.txt").write_text("a\nb\nc\nd\n")
  config = load_config("tsn_r50", "smoke", **{"data.root": str(root)})
  resolve.resolve(config, str(tmp_path / "out"))
  assert config.data.train_list == str(root / "my_train.txt")
  assert config.data.num_classes == 4   # the label-name file's count, not max label + 1


def test_wrong_eval_root_is_found_before_training(folders, tmp_path):
  lists = tmp_path / "lists"
  lists.mkdir()
  (lists / "train.txt").write_text("train/run/v02.mp4 2\n")
  (lists / "val.txt").write_text("elsewhere/v02.mp4 2\n")
  config = load_config("tsn_r50", "smoke", **{
      "data.root": folders, "data.train_list": str(lists / "train.txt"),
      "data.eval_list": str(lists / "val.txt")})
  with pytest.raises(sources.AnnotationError, match=r"val.txt: none of the 1 eval files.*"
                     r"is data.root"):
    resolve.resolve(config, str(tmp_path / "out"))


def test_frame_folders_and_unknown_eval_class(tmp_path):
  root = tmp_path / "frames"
  for split, cls in (("train", "a"), ("train", "b"), ("val", "a")):
    d = root / split / cls / "clip1"
    d.mkdir(parents=True)
    for i in range(3):
      (d / f"img_{i + 1:05d}.jpg").write_bytes(b"")
  config = load_config("tsn_r50", "smoke", **{"data.root": str(root)})
  resolve.resolve(config, str(tmp_path / "out"))
  assert config.data.format == "frames"
  assert _lines(config.data.train_list) == ["train/a/clip1 3 0", "train/b/clip1 3 1"]
  (root / "val" / "zebra").mkdir()
  config = load_config("tsn_r50", "smoke", **{"data.root": str(root)})
  with pytest.raises(sources.AnnotationError, match=r"val: class folders \['zebra'\]"):
    resolve.resolve(config, str(tmp_path / "out2"))
