"""Bad input to `python -m vidjax.main`: one `error:` line naming the problem, exit status 2,
no traceback, and (for what the raw arguments show) before the slow start-up; and
`train/skipped_files` counting distinct unreadable files across epochs and a resume."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import data_fixtures as fx
from conftest import ROOT, subprocess_env
from vidjax import config_defaults
from vidjax.data import pipeline

SMOKE = "configs/tsn_r50.py:smoke"
# A healthy start-up (JAX, the config, the model) takes longer than this on a loaded
# 2-core machine; the checks of the raw arguments need neither.
QUICK_S = 10.0


def _main(*args: str) -> tuple[subprocess.CompletedProcess, float]:
  start = time.monotonic()
  result = subprocess.run([sys.executable, "-m", "vidjax.main", *args], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
  return result, time.monotonic() - start


def _error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
  """Asserts one clean `error:` line ends stderr, with every fragment in it; returns it."""
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  line = [l for l in result.stderr.splitlines() if l.strip()][-1]
  assert line.startswith("error: "), result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in line, (fragment, line)
  return line


def test_workdir_under_a_file_is_refused_at_once(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  result, seconds = _main("--config", SMOKE, "--workdir", str(blocker / "run"))
  _error_line(result, f"--workdir {blocker / 'run'}", f"{blocker} is a file")
  assert seconds < QUICK_S, seconds
  result, seconds = _main("--config", SMOKE, f"--workdir={blocker}")
  _error_line(result, f"--workdir {blocker}", "not a directory")
  assert seconds < QUICK_S, seconds
  assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_workdir_parent_is_refused_at_once(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    result, seconds = _main("--config", SMOKE, "--workdir", str(locked / "run"))
  finally:
    locked.chmod(0o700)
  _error_line(result, f"--workdir {locked / 'run'}", "not writable")
  assert seconds < QUICK_S, seconds
  assert not (locked / "run").exists()


def test_mistyped_config_path_names_it_and_near_matches_at_once():
  result, seconds = _main("--config", "configs/tsn_r5.py:smoke", "--workdir", "/tmp/unused")
  line = _error_line(result, "configs/tsn_r5.py", "no such file", "configs/tsn_r50.py")
  assert "did you mean" in line
  assert seconds < QUICK_S, seconds


def test_bad_variant_names_the_valid_parts():
  result, _ = _main("--config", "configs/tsn_r50.py:smok", "--workdir", "/tmp/unused")
  _error_line(result, "configs/tsn_r50.py", "'smok'", "demo | smoke")


def test_bad_override_value_names_field_type_and_value(tmp_path):
  result, _ = _main("--config", SMOKE, "--workdir", str(tmp_path / "w"),
                    "--config.batch_size=abc")
  line = _error_line(result, "config.batch_size: expected an int, got 'abc'")
  assert "unknown" not in line
  assert not (tmp_path / "w").exists()


def test_unknown_fusion_refused_with_one_view(tmp_path):
  result, _ = _main("--config", SMOKE, "--workdir", str(tmp_path / "w"),
                    "--config.eval.num_views=1", "--config.eval.fusion=mean_sofmax")
  _error_line(result, "config.eval.fusion='mean_sofmax'", "mean_softmax, mean_logits")
  assert not (tmp_path / "w").exists()   # refused before the trainer made the workdir


# ------------------------------------------------------------------- skipped files
BAD = ("missing.mp4", "empty.mp4", "truncated.mp4", "junk.webm", "gone/missing.avi")
GOOD = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("skips")
  lines = []
  for i in range(GOOD):
    fx.write_video(str(root / f"v{i}.mp4"), 8)
    lines.append(f"v{i}.mp4 {i % 2}")
  (root / "empty.mp4").write_bytes(b"")
  whole = (root / "v0.mp4").read_bytes()
  (root / "truncated.mp4").write_bytes(whole[:len(whole) // 3])
  (root / "junk.webm").write_bytes(np.random.default_rng(0).bytes(2000))
  lines += [f"{name} 0" for name in BAD]
  (root / "list.txt").write_text("\n".join(lines) + "\n")
  (root / "names.txt").write_text("a\nb\n")
  return config_defaults.data_config(
      name="tiny", root=str(root), train_list=str(root / "list.txt"),
      eval_list=str(root / "list.txt"), label_names=str(root / "names.txt"), num_classes=2,
      num_frames=2, image_size=32, train_resize=40, num_threads=1, prefetch=1)


def test_skipped_files_counts_each_unreadable_file_once_across_epochs_and_resume(data):
  # Batches of one readable clip: GOOD batches per epoch; 3 epochs meet each bad file
  # at least twice (counting events would give 10 or more).
  it = pipeline.train_iterator(data, 1, seed=0)
  counts = [(next(it), it.skipped_files)[1] for _ in range(3 * GOOD)]
  assert counts[-1] == len(BAD), counts
  assert counts == sorted(counts)
  # Resume after one epoch and a clip: the saved state (JSON, as grain checkpoints it)
  # carries the files, so the count stays exact after the resume.
  first = pipeline.train_iterator(data, 1, seed=0)
  for _ in range(GOOD + 1):
    next(first)
  state = json.loads(json.dumps(first.get_state()))
  assert state["skipped_files"] == len(BAD) and len(state["skipped_paths"]) == len(BAD)
  resumed = pipeline.train_iterator(data, 1, seed=0)
  resumed.set_state(state)
  for _ in range(2 * GOOD - 1):
    next(resumed)
  assert resumed.skipped_files == len(BAD)
