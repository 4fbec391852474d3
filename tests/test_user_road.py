"""The road a new user walks, as subprocesses on real encoded videos of three sizes:
class folders -> one-command training -> predict a file of each class -> `--mode eval`
from the workdir alone (scores, per-class table, confusion PNG) -> fuse two score files
(checked against a hand computation) -> training curves."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, subprocess_env, write_class_folders

pytestmark = pytest.mark.slow

CLASSES = ("jumping jacks", "push_up", "run")


def _run(*args: str) -> subprocess.CompletedProcess:
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, (args, proc.stderr[-3000:])
  return proc


def test_own_videos_to_predictions_scores_fusion_and_curves(tmp_path):
  data = write_class_folders(str(tmp_path / "videos"), CLASSES)
  work = str(tmp_path / "run")
  train = _run("-m", "vidjax.main", "--config", "configs/tsn_r50.py:smoke", "--workdir", work,
               f"--config.data.root={data}", "--config.total_steps=4",
               "--config.eval_every_steps=2")
  log = train.stderr
  assert re.search(r"Data: videos under .*: 12 train .* and 6 eval .*, 3 classes "
                   r"\(jumping jacks, push_up, run\)", log), log[-3000:]
  assert "Model: recognizer2d (backbone resnet-18, head tsn)" in log
  assert "final: " in train.stdout

  # Predict one file of each class, from the workdir alone; names are the folders'.
  videos = [os.path.join(data, "val", c, f"v{i:02d}.mp4") for i, c in enumerate(CLASSES)]
  out = _run("-m", "vidjax.predict", "--checkpoint", work, *videos).stdout
  for video in videos:
    block = out.split(video, 1)[1].split("\n")[1:4]   # top-5 of 3 classes: 3 lines
    probs = [float(line.split()[1]) for line in block]
    assert sorted(re.sub(r"^\s*\d\.\s+\S+\s+", "", l) for l in block) == sorted(CLASSES)
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3

  # Evaluate the workdir without --config: scores, per-class table and confusion PNG.
  _run("-m", "vidjax.main", "--mode", "eval", "--workdir", work)
  eval_dir = os.path.join(work, "eval")
  scores = np.load(os.path.join(eval_dir, "eval_step_4_scores.npz"))
  assert scores["scores"].shape == (6, 3) and list(scores["class_names"]) == list(CLASSES)
  with open(os.path.join(eval_dir, "eval_step_4_per_class.csv")) as f:
    assert len(f.read().strip().splitlines()) == 4
  with open(os.path.join(eval_dir, "eval_step_4_confusion.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # Fuse the two periodic evals' scores 1:0.5 and check top-1 by hand.
  a, b = (np.load(os.path.join(eval_dir, f"step_{s}_scores.npz")) for s in (2, 4))
  assert list(a["files"]) == list(b["files"])
  fused = _run("scripts/fuse_scores.py", os.path.join(eval_dir, "step_2_scores.npz"),
               os.path.join(eval_dir, "step_4_scores.npz"), "--weights", "1", "0.5").stdout
  by_hand = np.mean((a["scores"] + 0.5 * b["scores"]).argmax(1) == a["labels"])
  top1 = float(re.search(r"fused: top1=([\d.]+)", fused).group(1))
  assert top1 == pytest.approx(by_hand, abs=1e-4)

  # Training curves.
  png = str(tmp_path / "curves.png")
  _run("scripts/plot_curves.py", work, "--output", png)
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10_000
