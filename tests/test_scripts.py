"""scripts/build_file_list.py on the demo data written as real video files."""

import os
import subprocess
import sys

from conftest import ROOT, subprocess_env
from vidjax.data import demo


def test_build_file_list_from_class_folders(tmp_path):
  demo.write_video_files(str(tmp_path / "videos"), split="train", num_examples=12,
                         num_frames=4, image_size=32, seed=0)
  root = tmp_path / "videos" / "train"
  out = tmp_path / "list.txt"
  proc = subprocess.run([sys.executable, "scripts/build_file_list.py", "--root", str(root),
                         "--output", str(out)], cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  lines = out.read_text().split()
  paths, labels = lines[0::2], [int(x) for x in lines[1::2]]
  names = (tmp_path / "label_names.txt").read_text().split()
  assert len(paths) == 12 and sorted(names) == sorted(demo.CLASS_NAMES)
  for path, label in zip(paths, labels):
    assert os.path.exists(root / path) and path.split("/")[0] == names[label]
  proc = subprocess.run([sys.executable, "scripts/build_file_list.py", "--root",
                         str(tmp_path / "nope"), "--output", str(out)], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True)
  assert proc.returncode == 2 and "nope is not a directory" in proc.stderr
