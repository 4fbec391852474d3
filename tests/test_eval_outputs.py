"""Evaluation outputs (vidjax/train/eval_outputs.py): the per-video scores file against the
model's own logits, the per-class table against a count from the scores, the confusion
PNG; in process, through `--mode eval` of the CLI on real files, and during training."""

import csv
import os

import jax
import numpy as np
import pytest

from conftest import load_config
from vidjax.checkpoint import load_variables, save_variables
from vidjax.data import demo, pipeline
from vidjax.models import build_model
from vidjax.train import eval_outputs, trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """Random variables of the smoke model, saved as a converter would (filled on the host:
  compiling the model's init takes longer than the evaluation)."""
  config = load_config("tsn_r50", "smoke")
  abstract = trainer._abstract_variables(config, build_model(config.model), jax.random.key(0))
  rng = np.random.default_rng(3)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if name.endswith(("['var']", "['scale']")):
      return (1 + 0.1 * rng.random(x.shape)).astype(x.dtype)
    if len(x.shape) >= 2:   # kernels: fan-in scaling keeps the logits of order 1
      return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    return (0.1 * rng.standard_normal(x.shape)).astype(x.dtype)

  path = str(tmp_path_factory.mktemp("ckpt") / "init3")
  save_variables(path, jax.tree_util.tree_map_with_path(fill, abstract))
  return path


def _expected_rows(config, variables):
  """(list positions, labels, fused scores [N, K]) computed here from the model's logits."""
  model = build_model(config.model)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  index, labels, scores = [], [], []
  for batch in pipeline.eval_iterator(config.data, config.eval.batch_size,
                                      num_views=config.eval.num_views):
    clips = batch["clip"]
    views = clips.shape[1] if clips.ndim == 6 else 1
    logits = np.asarray(apply(variables, clips.reshape((-1,) + clips.shape[-4:])), np.float64)
    logits = logits.reshape(len(clips), views, -1)
    if config.eval.fusion == "mean_logits":
      fused = logits.mean(1)
    else:
      e = np.exp(logits - logits.max(-1, keepdims=True))
      p = e / e.sum(-1, keepdims=True)
      fused = p.mean(1) if config.eval.fusion == "mean_softmax" else p.max(1)
    keep = batch["mask"].astype(bool)
    index += batch["index"][keep].tolist()
    labels += batch["label"][keep].tolist()
    scores.append(fused[keep])
  return np.array(index), np.array(labels), np.concatenate(scores)


def _check_table_and_png(directory, tag, data):
  """The per-class CSV against a count from the scores file; the PNG is a real PNG."""
  with open(os.path.join(directory, f"{tag}_per_class.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  k = data["scores"].shape[1]
  assert [int(r["class"]) for r in rows] == list(range(k))
  if "class_names" in data:
    assert [r["name"] for r in rows] == data["class_names"].tolist()
  predicted = data["scores"].argmax(1)
  per_class = []
  for c, row in enumerate(rows):
    mine = data["labels"] == c
    assert int(row["count"]) == mine.sum()
    assert int(row["correct"]) == (predicted[mine] == c).sum()
    if mine.any():
      per_class.append((predicted[mine] == c).mean())
      assert float(row["top1"]) == pytest.approx(per_class[-1], abs=1e-6)
    else:
      assert row["top1"] == ""
  png = os.path.join(directory, f"{tag}_confusion.png")
  with open(png, "rb") as f:
    head = f.read(8)
  assert head == PNG_MAGIC and os.path.getsize(png) > 1000
  return float(np.mean(per_class))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  """7 demo clips as mp4 files, listed with one missing file among them."""
  root = tmp_path_factory.mktemp("videos")
  list_path = demo.write_video_files(str(root), split="eval", num_examples=7, num_frames=8,
                                     image_size=32, seed=1)
  lines = open(list_path).read().splitlines()
  lines.insert(2, "eval/missing.mp4 4")          # unreadable: listed, not scored
  (root / "eval_list.txt").write_text("\n".join(lines) + "\n")
  return root, lines


def _files_overrides(root):
  return {"data.name": "files", "data.format": "videos", "data.root": str(root),
          "data.eval_list": str(root / "eval_list.txt"),
          "data.label_names": str(root / "label_names.txt"), "data.num_classes": 6,
          "eval.batch_size": 4}


@pytest.mark.slow
def test_eval_only_on_files_writes_fused_scores_and_lists_the_unreadable(checkpoint, videos,
                                                                          tmp_path):
  root, lines = videos
  config = load_config("tsn_r50", "smoke", **_files_overrides(root), **{"eval.num_views": 2})
  workdir = str(tmp_path / "run")
  results = trainer.evaluate_only(config, workdir, checkpoint)
  directory, tag = os.path.join(workdir, "eval"), "eval_init3_2views"
  data = eval_outputs.load_scores(os.path.join(directory, tag + "_scores.npz"))
  index, labels, scores = _expected_rows(config, load_variables(checkpoint))
  # 8 list entries in batches of 4, one unreadable: 7 rows, each its clip's.
  np.testing.assert_array_equal(data["index"], index)
  assert data["index"].tolist() == [0, 1, 3, 4, 5, 6, 7]
  np.testing.assert_array_equal(data["labels"], labels)
  np.testing.assert_allclose(data["scores"], scores, rtol=1e-4, atol=1e-6)
  good = [l.rsplit(" ", 1) for l in lines if "missing" not in l]
  assert data["files"].tolist() == [p for p, _ in good]          # as in the list
  assert data["labels"].tolist() == [int(l) for _, l in good]
  assert data["skipped_files"].tolist() == ["eval/missing.mp4"]
  assert data["class_names"].tolist() == list(demo.CLASS_NAMES)   # data.label_names
  assert str(data["fusion"]) == "mean_softmax" and int(data["num_views"]) == 2
  mean_class = _check_table_and_png(directory, tag, data)
  assert mean_class == pytest.approx(results["eval/mean_class_accuracy"], abs=1e-6)
  assert eval_outputs.accuracies(data["scores"], data["labels"])["top1"] == pytest.approx(
      results["eval/top1"], abs=1e-6)
  assert results["eval/skipped_files"] == 1


def test_output_dir_overrides_the_workdir(checkpoint, tmp_path):
  config = load_config("tsn_r50", "smoke", **{"data.eval_examples": 4,
                                              "eval.output_dir": str(tmp_path / "out")})
  trainer.evaluate_only(config, str(tmp_path / "work"), checkpoint)
  assert sorted(os.listdir(tmp_path / "out")) == [
      "eval_init3_confusion.png", "eval_init3_per_class.csv", "eval_init3_scores.npz"]
  assert not os.path.exists(tmp_path / "work")
  # --mode eval without a workdir or output_dir writes nothing (and says so in the log).
  assert eval_outputs.output_dir(load_config("tsn_r50", "smoke"), "") is None
  assert eval_outputs.output_dir(load_config("tsn_r50", "smoke"), "w") == os.path.abspath(
      "w/eval")


def test_confusion_png_is_skipped_without_matplotlib(tmp_path, monkeypatch):
  import builtins  # pylint: disable=import-outside-toplevel
  real_import = builtins.__import__

  def no_matplotlib(name, *args, **kwargs):
    if name.startswith("matplotlib"):
      raise ImportError(name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_matplotlib)
  path = str(tmp_path / "c.png")
  assert not eval_outputs.plot_confusion(path, np.eye(3, dtype=np.int64))
  assert not os.path.exists(path)


def test_checkpoint_tags(tmp_path):
  work = tmp_path / "w"
  for step in ("4", "12", "12.orbax-checkpoint-tmp-1"):
    (work / "checkpoints" / step / "state").mkdir(parents=True)
  assert eval_outputs.checkpoint_tag(str(work)) == "eval_step_12"
  assert eval_outputs.checkpoint_tag(str(work / "checkpoints" / "4")) == "eval_step_4"
  assert eval_outputs.checkpoint_tag(str(tmp_path / "tsn k400"), 30) == "eval_tsn_k400_30views"
  assert eval_outputs.step_of_tag("eval_step_12_3views") == 12
  assert eval_outputs.step_of_tag("eval_init3") == -1


def test_write_all_keeps_list_order_and_survives_wrong_class_names(tmp_path):
  """Rows of two processes' interleaved batches come back in list order; padding and the
  unreadable row are left out; names of the wrong count are replaced by numbers."""
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(8, 3)).astype(np.float32)
  index = np.array([0, 2, 1, 3, 4, -1, 5, -1])   # process 0 reads 0, 2, 4; process 1: 1, 3, 5
  mask = np.array([1, 1, 1, 0, 1, 0, 1, 0], bool)
  labels = np.array([0, 1, 2, 0, 1, 0, 2, 0], np.int32)
  outputs = [{"scores": scores[i:i + 4], "label": labels[i:i + 4], "mask": mask[i:i + 4],
              "index": index[i:i + 4]} for i in (0, 4)]
  files = [f"f{i}" for i in range(6)]
  paths = eval_outputs.write_all(str(tmp_path), "step_7", outputs, files, ["a", "b"],
                                 fusion="mean_logits", num_views=1)
  data = eval_outputs.load_scores(paths["scores"])
  assert data["files"].tolist() == ["f0", "f1", "f2", "f4", "f5"]
  np.testing.assert_array_equal(data["scores"], scores[[0, 2, 1, 4, 6]])
  assert data["labels"].tolist() == [0, 2, 1, 1, 2]
  assert data["skipped_files"].tolist() == ["f3"] and int(data["step"]) == 7
  assert "class_names" not in data
  _check_table_and_png(str(tmp_path), "step_7", data)
