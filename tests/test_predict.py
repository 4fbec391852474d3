"""`python -m vidjax.predict` on real mp4 files against the eval pipeline's own clips.

The model is the smoke TSN (ResNet-18, 2 frames of 32x32) with random variables saved as
a converter saves them, beside the config.json a training run writes; the reference
probabilities come from `pipeline.eval_iterator` over the same videos (as `--mode eval`
reads them) and the model applied in this process.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import model_fixtures
from conftest import ROOT, subprocess_env
from vidjax import models, predict, run_config
from vidjax.data import decode, demo, pipeline, transforms

NUM_VIDEOS, VIDEO_FRAMES, FPS = 6, 24, 8   # 3 s videos
# Two temporal test clips: the views are fused as eval fuses them.
OVERRIDES = ("data.test_clips=2", "eval.num_views=2")


def _config(*extra):
  return run_config.load(os.path.join(ROOT, "configs/tsn_r50.py:smoke"), OVERRIDES + extra)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(checkpoint dir with config.json, variables, video dir, video paths in list order)."""
  root = tmp_path_factory.mktemp("predict")
  config = _config()
  variables = model_fixtures.save_model(str(root / "ckpt"), config, seed=3)
  videos = str(root / "videos")
  list_file = demo.write_video_files(videos, split="eval", num_examples=NUM_VIDEOS,
                                     num_frames=VIDEO_FRAMES, image_size=32, seed=0, fps=FPS)
  with open(list_file) as f:
    paths = [os.path.join(videos, line.split()[0]) for line in f if line.strip()]
  return str(root / "ckpt"), variables, videos, paths


def _apply(config, variables, clips):
  """Logits [B, V, K] of clips [B, V, T, S, S, 3], computed here."""
  model = models.build_model(config.model)
  b, v = clips.shape[:2]
  logits = jax.jit(lambda w, c: model.apply(w, c, train=False))(
      variables, jnp.asarray(clips.reshape((b * v,) + clips.shape[2:])))
  return np.asarray(logits, np.float64).reshape(b, v, -1)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _eval_pipeline_probs(config, variables, videos):
  """Probabilities [N, K] of the listed videos as `--mode eval` reads them."""
  data = config.data.copy_and_resolve_references()
  with data.unlocked():
    data.update(name="mine", format="videos", root=videos, num_classes=NUM_VIDEOS,
                eval_list=os.path.join(videos, "eval_list.txt"),
                label_names=os.path.join(videos, "label_names.txt"))
  batch = next(pipeline.eval_iterator(data, NUM_VIDEOS, num_views=config.eval.num_views))
  assert batch["clip"].shape == (NUM_VIDEOS, 2, 2, 32, 32, 3) and batch["mask"].all()
  return _softmax(_apply(config, variables, batch["clip"])).mean(axis=1)


def _run(*args):
  return subprocess.run([sys.executable, "-m", "vidjax.predict", *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=600,
                        env=subprocess_env(JAX_DEFAULT_MATMUL_PRECISION="highest"))


def _printed_blocks(stdout):
  """{video: [(probability, name)]} of the plain output."""
  blocks, current = {}, None
  for line in stdout.splitlines():
    if not line.startswith(" "):
      current = blocks.setdefault(line, [])
    else:
      rank, prob, name = line.split(maxsplit=2)
      assert rank == f"{len(current) + 1}."
      current.append((float(prob), name))
  return blocks


@pytest.mark.slow
def test_top5_of_each_video_match_the_eval_pipeline_and_bad_files_are_reported(saved, tmp_path):
  ckpt, variables, videos, paths = saved
  garbage = tmp_path / "garbage.mp4"
  garbage.write_bytes(b"this is not a video" * 100)
  missing = str(tmp_path / "missing.mp4")
  out_json = tmp_path / "out.json"
  # The bad files between good ones: the videos after them are still predicted.
  args = paths[:2] + [str(garbage)] + paths[2:4] + [missing] + paths[4:]
  proc = _run("--checkpoint", ckpt, "--json", str(out_json), *args)
  assert proc.returncode == 2, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 3, proc.stderr
  assert str(garbage) in errors[0] and missing in errors[1] and "2 of 8" in errors[2]

  expected = _eval_pipeline_probs(_config(), variables, videos)
  blocks = _printed_blocks(proc.stdout)
  assert list(blocks) == paths
  results = {r["video"]: r for r in json.loads(out_json.read_text())["results"]}
  assert "error" in results[str(garbage)] and "error" in results[missing]
  for path, probs in zip(paths, expected):
    order = np.argsort(-probs, kind="stable")[:5]
    assert [name for _, name in blocks[path]] == [demo.CLASS_NAMES[i] for i in order]
    np.testing.assert_allclose([p for p, _ in blocks[path]], probs[order], atol=6e-5)
    top = results[path]["top_k"]
    assert [t["label"] for t in top] == order.tolist()
    np.testing.assert_allclose([t["probability"] for t in top], probs[order], atol=1e-5)
  # The videos' probabilities differ by far more than the tolerance: predictions of the
  # wrong video, or in the wrong order, fail.
  gaps = np.abs(expected[:, None] - expected[None]).max(-1)
  assert gaps[~np.eye(NUM_VIDEOS, dtype=bool)].min() > 1e-3, gaps


@pytest.mark.slow
def test_window_mode_predicts_each_window_as_its_own_clip(saved, tmp_path):
  ckpt, variables, _, paths = saved
  config = _config("eval.fusion=max_softmax")
  out_json = tmp_path / "windows.json"
  # A 3 s video, 2 s windows every 1.5 s: [0, 2) and [1.5, 3), frames [0, 16), [12, 24).
  proc = _run("--checkpoint", ckpt, "--config", "configs/tsn_r50.py:smoke",
              *[f"--config.{o}" for o in OVERRIDES], "--config.eval.fusion=max_softmax",
              "--window_seconds", "2", "--stride_seconds", "1.5", "--top_k", "3",
              "--json", str(out_json), paths[1])
  assert proc.returncode == 0, proc.stderr
  windows = json.loads(out_json.read_text())["results"][0]["windows"]
  assert [(w["start"], w["end"]) for w in windows] == [(0.0, 2.0), (1.5, 3.0)]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith(f"{paths[1]}: 2 windows") and len(lines) == 3
  assert lines[1].startswith("  0.00-2.00 s  ") and lines[2].startswith("  1.50-3.00 s  ")

  # Reference: each window's frames as an in-memory video, read by the eval pipeline's
  # reader, sampler and test transform.
  frames = decode.decode_video(paths[1], np.arange)
  assert len(frames) == VIDEO_FRAMES
  reader, sampler = pipeline.make_reader(config.data), pipeline.make_sampler(config.data)
  transform = transforms.from_config(config.data)
  clips = np.stack([
      pipeline.test_clip_views(transform, reader({"clip": frames[f0:f1]},
                                                 lambda n: sampler.test(n, 2)))
      for f0, f1 in ((0, 16), (12, 24))])
  expected = _softmax(_apply(config, variables, clips)).max(axis=1)
  for window, probs, line in zip(windows, expected, lines[1:]):
    order = np.argsort(-probs, kind="stable")[:3]
    assert [t["label"] for t in window["top_k"]] == order.tolist()
    np.testing.assert_allclose([t["probability"] for t in window["top_k"]], probs[order],
                               atol=1e-5)
    assert line.split("s  ", 1)[1] == " | ".join(
        f"{probs[i]:.4f} {demo.CLASS_NAMES[i]}" for i in order)


def test_checkpoint_without_config_is_one_error_line(tmp_path):
  os.makedirs(tmp_path / "converted" / "variables")
  proc = _run("--checkpoint", str(tmp_path / "converted"), "video.mp4")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [(
      f"error: --checkpoint {tmp_path / 'converted'} has no config.json (training workdirs "
      "have one): pass --config configs/NAME.py[:VARIANT].")]


@pytest.mark.slow
def test_checkpoint_of_another_model_names_the_mismatch(tmp_path):
  ckpt = str(tmp_path / "ckpt")
  model_fixtures.save_model(ckpt, _config(), calibrate=False)
  proc = _run("--checkpoint", ckpt, "--config.model.num_classes=5", "video.mp4")
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and lines[0].startswith(f"error: --checkpoint {ckpt} does not fit")
  assert "params/head/fc/kernel: model (512, 5), checkpoint (512, 6)" in lines[0]


# ---------------------------------------------------------------------------- pieces
def test_window_spans():
  assert predict.window_spans(10.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
  assert predict.window_spans(6.0, 4.0, 2.0) == [(0.0, 4.0), (2.0, 6.0)]
  assert predict.window_spans(3.0, 4.0, 1.0) == [(0.0, 3.0)]
  assert predict.window_spans(8.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0)]


def test_top_k_ranks_ties_to_the_lower_class():
  assert predict.top_k(np.array([0.1, 0.3, 0.3, 0.2]), 3) == [1, 2, 3]


def test_class_names(tmp_path):
  config = _config()
  assert predict.class_names(config) == list(demo.CLASS_NAMES)
  with config.unlocked():
    config.data.name = "mine"
  assert predict.class_names(config) == [f"class {i}" for i in range(6)]
  names = tmp_path / "names.txt"
  names.write_text("a\nb b\n\nc\n")
  config.data.label_names = str(names)
  with pytest.raises(predict.PredictError, match="names 3 classes.*num_classes=6"):
    predict.class_names(config)
  names.write_text("".join(f"class number {i}\n" for i in range(6)))
  assert predict.class_names(config)[5] == "class number 5"


def test_probabilities_fuse_views_as_eval_does():
  """mean_softmax, mean_logits (softmax of the mean) and max_softmax of a fixed model."""

  class Fixed:   # logits of each clip: the first frame's first pixel values
    def apply(self, variables, clips, train):
      del variables, train
      return clips[:, 0, 0, 0, :].astype(jnp.float32)

  rs = np.random.RandomState(0)
  clips = rs.randint(0, 4, (2, 3, 1, 1, 1, 3)).astype(np.uint8)   # [B, V, T, S, S, 3]
  logits = clips[:, :, 0, 0, 0, :].astype(np.float64)
  expected = {"mean_softmax": _softmax(logits).mean(1),
              "mean_logits": _softmax(logits.mean(1)),
              "max_softmax": _softmax(logits).max(1)}
  for fusion, want in expected.items():
    got = predict.probabilities(Fixed(), {}, jnp.asarray(clips), fusion)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
  one_view = predict.probabilities(Fixed(), {}, jnp.asarray(clips[:, 0]), "mean_logits")
  np.testing.assert_allclose(np.asarray(one_view), _softmax(logits[:, 0]), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip_vitb16", "tc_clip"])
def test_zero_shot_scores_the_class_names_typed_on_the_command_line(saved, tmp_path, name):
  """A CLIP or TC-CLIP model's classes are the names given with --config: its prompts are
  made of them, so the same names in another order get the same probabilities, each its
  own."""
  _, _, _, paths = saved
  ckpt = str(tmp_path / name)
  config_path = f"configs/{name}.py:smoke"
  model_fixtures.save_model(ckpt, run_config.load(os.path.join(ROOT, config_path), ()))
  names = ("juggling balls", "PlayingViolin", "push up")

  def scores(order):
    out = tmp_path / "p.json"
    listed = "(" + ", ".join(f"'{n}'" for n in order) + ",)"
    assert predict.main(["--checkpoint", ckpt, "--config", config_path,
                         f"--config.model.class_names={listed}", "--top_k", "3",
                         "--json", str(out), paths[0]]) == 0
    (result,) = json.loads(out.read_text())["results"]
    return {r["name"]: r["probability"] for r in result["top_k"]}

  first, second = scores(names), scores(names[::-1])
  assert sorted(first) == sorted(names)   # the typed names (CamelCase split for the prompt only)
  for name in names:
    assert first[name] == pytest.approx(second[name], abs=1e-5)
  assert max(first.values()) - min(first.values()) > 1e-4   # the names do score differently
