"""scripts/: frame extraction, resizing and the data benchmark on real video files
(build_file_list.py: tests/test_build_file_list.py)."""

import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env


def _run(*args):
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True)


@pytest.mark.slow
def test_extract_frames_resize_and_frame_lists(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import data_fixtures as fx  # pylint: disable=g-import-not-at-top
  from vidjax.data import decode  # pylint: disable=g-import-not-at-top
  src = tmp_path / "videos"
  for cls, n in [("a", 12), ("b", 9)]:
    (src / cls).mkdir(parents=True)
    fx.write_video(str(src / cls / f"clip_{cls}.mp4"), n)
  (src / "b" / "broken.mp4").write_bytes(b"not a video")
  (tmp_path / "in.txt").write_text("a/clip_a.mp4 0\nb/clip_b.mp4 1\n")
  # Frames, via the video list: a frame list comes out.
  proc = _run("scripts/extract_frames.py", "--src", str(src), "--out", str(tmp_path / "fr"),
              "--list", str(tmp_path / "in.txt"), "--out-list", str(tmp_path / "frames.txt"),
              "--processes", "1")
  assert proc.returncode == 0, proc.stderr
  assert "extract: 100%" in proc.stderr and "2/2" in proc.stderr   # the progress bar
  assert (tmp_path / "frames.txt").read_text().split("\n")[:2] == ["a/clip_a 12 0", "b/clip_b 9 1"]
  frames = decode.read_frame_folder(str(tmp_path / "fr" / "b" / "clip_b"), np.arange(9))
  np.testing.assert_array_equal(fx.clip_indices(frames), np.arange(9))
  # build_file_list --frames finds the same folders and counts.
  proc = _run("scripts/build_file_list.py", "--root", str(tmp_path / "fr"), "--frames",
              "--output", str(tmp_path / "fl.txt"))
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "fl.txt").read_text().split("\n")[:2] == ["a/clip_a 12 0", "b/clip_b 9 1"]
  # Resize every video under src (2 processes); the broken one is reported, exit 1.
  proc = _run("scripts/resize_videos.py", "--src", str(src), "--out", str(tmp_path / "small"),
              "--short-side", "24", "--processes", "2")
  assert proc.returncode == 1 and "b/broken.mp4" in proc.stderr
  assert "resize: 100%" in proc.stderr and "3/3" in proc.stderr
  small = decode.decode_video(str(tmp_path / "small" / "a" / "clip_a.mp4"),
                              lambda n: np.arange(n))
  assert small.shape == (12, 24, 32, 3)
  np.testing.assert_array_equal(fx.clip_indices(small), np.arange(12))


@pytest.mark.slow
def test_bench_data_runs_every_cell(tmp_path):
  proc = _run("scripts/bench_data.py", "--workers", "0", "--num-videos", "2", "--frames", "70",
              "--batch", "2", "--batches", "1", "--cache", str(tmp_path / "cache"))
  assert proc.returncode == 0, proc.stderr
  table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
  assert len(table) == 1 + 4   # header, 2 recipes x (mp4, frames)
  for row in table[1:]:
    assert all(float(x) > 0 for x in row.strip("| ").split(" | ")[2:])
