"""scripts/plot_curves.py on metrics.jsonl files written by the trainer's JSON-lines writer."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, subprocess_env
from vidjax.train import writers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ORANGE = np.array([1.0, 0x7F / 255, 0x0E / 255])   # matplotlib's C1: the second run


def _run(*args):
  return subprocess.run([sys.executable, "scripts/plot_curves.py", *map(str, args)], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=120)


def _write_run(workdir, lr, steps=6, eval_every=3):
  """The records a training run writes: counts at step 0, train metrics every step, eval."""
  os.makedirs(workdir, exist_ok=True)
  writer = writers.JsonlWriter(os.path.join(workdir, "metrics.jsonl"))
  writer.write_scalars(0, {"num_params": 1234, "steps_per_epoch": 3})
  for step in range(1, steps + 1):
    writer.write_scalars(step, {"train/loss": 2.0 / step, "train/top1": 0.1 * step,
                                "train/learning_rate": lr * (1 - step / steps),
                                "train/skipped_files": 0})
    if step % eval_every == 0:
      writer.write_scalars(step, {"eval/top1": 0.1 * step, "eval/loss": 1.0 / step})
  writer.close()


def _has_colour(png, rgb):
  import matplotlib.image  # pylint: disable=import-outside-toplevel
  pixels = matplotlib.image.imread(png)[..., :3]
  return bool((np.abs(pixels - rgb).max(-1) < 0.02).any())


def test_two_runs_overlaid(tmp_path):
  _write_run(tmp_path / "lr0.1", 0.1)
  _write_run(tmp_path / "lr0.01", 0.01)
  one, two = tmp_path / "one.png", tmp_path / "two.png"
  proc = _run(tmp_path / "lr0.1", "--output", one)
  assert proc.returncode == 0, proc.stderr
  proc = _run(tmp_path / "lr0.1", tmp_path / "lr0.01", "--output", two)
  assert proc.returncode == 0, proc.stderr
  assert "lr0.01: 6 train/loss, 2 eval/top1, 6 train/learning_rate" in proc.stdout
  for png in (one, two):
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
  # The second run's curves (colour C1) are drawn only in the overlay.
  assert _has_colour(str(two), ORANGE) and not _has_colour(str(one), ORANGE)


def test_resumed_run_draws_the_last_value_of_a_step(tmp_path):
  _write_run(tmp_path / "a", 0.1)
  _write_run(tmp_path / "a", 0.1, steps=2, eval_every=2)   # a rerun appends steps 1-2
  sys.path.insert(0, os.path.join(ROOT, "scripts"))
  try:
    import plot_curves  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  metrics = plot_curves.read_metrics(str(tmp_path / "a"))
  assert metrics["train/loss"][0] == [1, 2, 3, 4, 5, 6]
  assert metrics["train/learning_rate"][1][:2] == pytest.approx([0.05, 0.0])  # the rerun's
  assert metrics["eval/top1"][0] == [2, 3, 6]
  assert plot_curves.run_labels(["x/run", "y/run", "z/other"]) == ["x/run", "y/run", "other"]


def test_missing_or_bad_metrics_are_one_line_errors(tmp_path):
  _write_run(tmp_path / "good", 0.1)
  (tmp_path / "empty").mkdir()
  proc = _run(tmp_path / "good", tmp_path / "empty", "--output", tmp_path / "x.png")
  assert proc.returncode == 2
  err = proc.stderr.strip()
  assert err == f"error: {tmp_path / 'empty'} has no metrics.jsonl (a training run writes " \
                "WORKDIR/metrics.jsonl)."
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2}\n[1, 2]\n')
  proc = _run(tmp_path / "bad", "--output", tmp_path / "x.png")
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
  assert "metrics.jsonl:2: expected a JSON object" in proc.stderr
  assert not (tmp_path / "x.png").exists()
