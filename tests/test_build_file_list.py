"""scripts/build_file_list.py: label maps shared across splits, atomic writes, names with
spaces or non-UTF-8 bytes, progress output; its lists read back through vidjax's readers."""

import os
import resource
import signal
import subprocess
import sys

import numpy as np

import data_fixtures as fx
from conftest import ROOT, subprocess_env
from vidjax.data import decode, demo, prepare, sources


def _run(*args, **kwargs):
  return subprocess.run([sys.executable, "scripts/build_file_list.py", *map(str, args)],
                        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                        **kwargs)


def _touch(root, *rels):
  for rel in rels:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def _list(path):
  """{path: label} of a video list, through the library's reader."""
  return {os.path.relpath(p, "/r"): l for p, (l,) in sources.parse_video_list(str(path), "/r")}


def test_build_file_list_from_class_folders(tmp_path):
  demo.write_video_files(str(tmp_path / "videos"), split="train", num_examples=12,
                         num_frames=4, image_size=32, seed=0)
  root = tmp_path / "videos" / "train"
  out = tmp_path / "list.txt"
  proc = _run("--root", root, "--output", out)
  assert proc.returncode == 0, proc.stderr
  lines = out.read_text().split()
  paths, labels = lines[0::2], [int(x) for x in lines[1::2]]
  names = (tmp_path / "label_names.txt").read_text().split()
  assert len(paths) == 12 and sorted(names) == sorted(demo.CLASS_NAMES)
  for path, label in zip(paths, labels):
    assert os.path.exists(root / path) and path.split("/")[0] == names[label]
  proc = _run("--root", tmp_path / "nope", "--output", out)
  assert proc.returncode == 2 and "nope is not a directory" in proc.stderr


def test_existing_label_file_is_read_and_never_rewritten(tmp_path):
  _touch(tmp_path / "train", "b/1.mp4", "a/2.mp4", "c/3.mp4")
  labels = tmp_path / "label_names.txt"
  labels.write_bytes(b"c\nb\na\n")    # not sorted: its order must win
  before = os.stat(labels)
  proc = _run("--root", tmp_path / "train", "--output", tmp_path / "train.txt")
  assert proc.returncode == 0, proc.stderr
  assert "label names read" in proc.stdout
  assert labels.read_bytes() == b"c\nb\na\n"
  assert os.stat(labels).st_mtime_ns == before.st_mtime_ns
  assert _list(tmp_path / "train.txt") == {"c/3.mp4": 0, "b/1.mp4": 1, "a/2.mp4": 2}


def test_class_missing_from_a_split_keeps_the_other_labels(tmp_path):
  _touch(tmp_path / "train", "a/1.mp4", "b/2.mp4", "c/3.mp4")
  _touch(tmp_path / "val", "a/4.mp4", "c/5.mp4")     # no `b` in val
  assert _run("--root", tmp_path / "train", "--output", tmp_path / "train.txt").returncode == 0
  assert (tmp_path / "label_names.txt").read_text() == "a\nb\nc\n"
  proc = _run("--root", tmp_path / "val", "--output", tmp_path / "val.txt")
  assert proc.returncode == 0, proc.stderr
  assert _list(tmp_path / "val.txt") == {"a/4.mp4": 0, "c/5.mp4": 2}
  names = sources.read_label_names(str(tmp_path / "label_names.txt"), num_classes=3)
  val = sources.ListSource(list_file=str(tmp_path / "val.txt"), root=str(tmp_path / "val"),
                           num_classes=3, label_names=names)
  assert [names[int(val[i]["label"])] for i in range(len(val))] == ["a", "c"]


def test_new_class_folder_is_an_error_naming_folder_and_file(tmp_path):
  _touch(tmp_path / "val", "a/1.mp4", "z new/2.mp4")
  (tmp_path / "label_names.txt").write_text("a\nb\n")
  (tmp_path / "val.txt").write_bytes(b"a/old.mp4 0\n")
  proc = _run("--root", tmp_path / "val", "--output", tmp_path / "val.txt")
  assert proc.returncode == 2
  err = proc.stderr.strip().splitlines()[-1]
  assert err.startswith("error: class folder ")
  assert str(tmp_path / "val" / "z new") in err and str(tmp_path / "label_names.txt") in err
  assert (tmp_path / "val.txt").read_bytes() == b"a/old.mp4 0\n"
  assert (tmp_path / "label_names.txt").read_text() == "a\nb\n"


def _limit_file_size():
  # A disk that fills up mid-write: writes past 4 KiB fail with EFBIG (not a signal).
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_failing_write_leaves_the_existing_list_byte_identical(tmp_path):
  _touch(tmp_path / "train", *[f"class_{i % 3}/video_{i:04d}.mp4" for i in range(400)])
  old = b"class_0/old.mp4 0\n" * 3
  (tmp_path / "train.txt").write_bytes(old)
  proc = _run("--root", tmp_path / "train", "--output", tmp_path / "train.txt",
              preexec_fn=_limit_file_size)
  assert proc.returncode == 1
  assert f"error: cannot write {tmp_path / 'train.txt'}" in proc.stderr
  assert (tmp_path / "train.txt").read_bytes() == old
  assert sorted(os.listdir(tmp_path)) == ["label_names.txt", "train", "train.txt"]  # no temp
  # Without the limit the same run replaces it, keeping the file's mode.
  os.chmod(tmp_path / "train.txt", 0o640)
  proc = _run("--root", tmp_path / "train", "--output", tmp_path / "train.txt")
  assert proc.returncode == 0, proc.stderr
  assert len(_list(tmp_path / "train.txt")) == 400
  assert os.stat(tmp_path / "train.txt").st_mode & 0o777 == 0o640


def test_spaces_in_class_and_file_names_round_trip_to_the_decoder(tmp_path):
  root = tmp_path / "videos"
  rels = ["abseiling down/my clip 1.mp4", "abseiling down/two  spaces\tand tab.mp4",
          "riding a bike/sub dir/x.mp4"]
  for i, rel in enumerate(rels):
    os.makedirs(os.path.dirname(root / rel), exist_ok=True)
    fx.write_video(str(root / rel), 4 + i)
  proc = _run("--root", root, "--output", tmp_path / "list.txt")
  assert proc.returncode == 0, proc.stderr
  names = sources.read_label_names(str(tmp_path / "label_names.txt"))
  assert names == ["abseiling down", "riding a bike"]
  src = sources.ListSource(list_file=str(tmp_path / "list.txt"), root=str(root),
                           num_classes=2, label_names=names)
  got = {os.path.relpath(src[i]["video"], root): int(src[i]["label"]) for i in range(len(src))}
  assert got == {rels[0]: 0, rels[1]: 0, rels[2]: 1}
  # The reader's paths open the very files: each clip shows its own frame count.
  for i in range(len(src)):
    frames = decode.Reader()(src[i], np.arange)
    np.testing.assert_array_equal(fx.clip_indices(frames), np.arange(len(frames)))
    assert len(frames) == 4 + rels.index(os.path.relpath(src[i]["video"], root))


def test_frame_lists_with_spaces(tmp_path):
  root = tmp_path / "frames"
  counts = {"abseiling down/clip one": 3, "abseiling down/clip 2 7": 2, "b/x": 5}
  for rel, n in counts.items():
    for i in range(n):
      _touch(root, f"{rel}/img_{i + 1:05d}.jpg")
  _touch(root, "b/x/notes.txt", "b/edge /img_00001.jpg")
  proc = _run("--root", root, "--frames", "--output", tmp_path / "frames.txt")
  assert proc.returncode == 0, proc.stderr
  assert "left out 1 name that" in proc.stderr and "'b/edge '" in proc.stderr
  entries = sources.parse_frame_list(str(tmp_path / "frames.txt"), str(root), num_classes=2)
  got = {os.path.relpath(d, root): (n, l) for d, n, l in entries}
  assert got == {"abseiling down/clip one": (3, [0]), "abseiling down/clip 2 7": (2, [0]),
                 "b/x": (5, [1])}


def test_non_utf8_names_are_left_out_with_one_warning(tmp_path):
  root = os.fsencode(tmp_path / "videos")
  for rel in [b"a/ok.mp4", b"a/caf\xe9.mp4", b"bad\xff class/v.mp4", b" b/lead.mp4",
              b"b/fine.mp4"]:
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    open(os.path.join(root, rel), "wb").close()
  proc = _run("--root", tmp_path / "videos", "--output", tmp_path / "list.txt")
  assert proc.returncode == 0, proc.stderr
  warnings = [l for l in proc.stderr.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1
  for shown in (r"b'bad\xff class'", r"b'a/caf\xe9.mp4'", "' b'"):
    assert shown in warnings[0]
  assert "left out 3 names" in warnings[0]
  # What was written reads back, and names existing files.
  assert sources.read_label_names(str(tmp_path / "label_names.txt")) == ["a", "b"]
  got = sources.parse_video_list(str(tmp_path / "list.txt"), str(tmp_path / "videos"))
  assert [(os.path.relpath(p, tmp_path / "videos"), l) for p, l in got] == [
      ("a/ok.mp4", [0]), ("b/fine.mp4", [1])]
  assert all(os.path.exists(p) for p, _ in got)


def test_listable_matches_what_the_reader_reads_back(tmp_path):
  names = ["a b.mp4", "a\tb", "x ", " x", "a\nb", "\ufeffa", "caf\udce9", "ok/é.mp4", "a\u2028b"]
  for name in names:
    if not sources.listable(name):
      continue
    (tmp_path / "l.txt").write_text(f"{name} 3\n", encoding="utf-8")
    assert sources.parse_video_list(str(tmp_path / "l.txt")) == [(name, [3])]
  assert [n for n in names if not sources.listable(n)] == ["x ", " x", "a\nb", "\ufeffa",
                                                            "caf\udce9"]


def test_progress_output(tmp_path, monkeypatch, capsys):
  _touch(tmp_path / "train", "a/1.mp4", "b/2.mp4")
  proc = _run("--root", tmp_path / "train", "--output", tmp_path / "list.txt")
  assert proc.returncode == 0 and "scan: 100%" in proc.stderr and "2/2" in proc.stderr
  # Without tqdm: plain lines with a count and an ETA.
  monkeypatch.setitem(sys.modules, "tqdm", None)
  assert list(prepare.progress(iter(range(4)), 4, "scan", "class", every_s=0)) == [0, 1, 2, 3]
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines[0].startswith("scan: 1/4 class (25%), ") and ", ETA " in lines[0]
  assert lines[-1].startswith("scan: 4/4 class (100%)") and "ETA" not in lines[-1]


def test_extract_frames_rejects_a_bad_list_with_file_and_line(tmp_path):
  (tmp_path / "videos").mkdir()
  (tmp_path / "in.txt").write_text("a.mp4 0\nb.mp4 x\n")
  proc = subprocess.run([sys.executable, "scripts/extract_frames.py", "--src",
                         str(tmp_path / "videos"), "--out", str(tmp_path / "fr"), "--list",
                         str(tmp_path / "in.txt"), "--processes", "1"], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (f"error: {tmp_path / 'in.txt'}:2: labels must be integers, "
                                 "got 'x'; expected an integer >= 0.")
  assert not (tmp_path / "fr").exists()
