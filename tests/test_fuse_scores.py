"""scripts/fuse_scores.py on two synthetic scores files, against numpy by hand."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, subprocess_env

N, K = 40, 7


def _write(path, files, labels, scores, **extra):
  """A scores file in the format of vidjax/train/eval_outputs.py, written directly."""
  np.savez(path, files=np.array(files, np.str_), labels=np.array(labels, np.int32),
           scores=np.array(scores, np.float32), **extra)


def _run(*args):
  return subprocess.run([sys.executable, "scripts/fuse_scores.py", *map(str, args)], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=120)


def _metrics(line):
  return {k: float(v) for k, v in (kv.split("=") for kv in line.split(": ", 1)[1].split())}


def _by_hand(scores, labels):
  ranked = np.argsort(-scores, axis=1)
  top1 = np.mean(ranked[:, 0] == labels)
  top5 = np.mean([labels[i] in ranked[i, :5] for i in range(len(labels))])
  per_class = [np.mean(ranked[labels == c, 0] == c) for c in np.unique(labels)]
  return {"top1": top1, "top5": top5, "mean_class_accuracy": np.mean(per_class)}


@pytest.fixture
def two_files(tmp_path):
  rng = np.random.default_rng(0)
  files = [f"val/v{i:03d}.mp4" for i in range(N)]
  labels = rng.integers(0, K, N)
  a = rng.normal(size=(N, K)) + 1.5 * np.eye(K)[labels]
  b = rng.normal(size=(N, K)) + 1.0 * np.eye(K)[labels]
  names = np.array([f"class {c}" for c in range(K)], np.str_)
  _write(tmp_path / "a.npz", files, labels, a, class_names=names)
  # The second file lists the videos in another order: rows are matched by file name.
  perm = rng.permutation(N)
  _write(tmp_path / "b.npz", [files[i] for i in perm], labels[perm], b[perm], class_names=names)
  return tmp_path, files, labels, a.astype(np.float32), b.astype(np.float32)


def test_weighted_fusion_matches_numpy(two_files):
  tmp_path, files, labels, a, b = two_files
  proc = _run(tmp_path / "a.npz", tmp_path / "b.npz", "--weights", 1, 0.5,
              "--output", tmp_path / "fused.npz")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  expected = _by_hand(a.astype(np.float64) + 0.5 * b, labels)
  fused = _metrics(lines[-1])
  assert lines[-1].startswith("fused: ")
  for key, value in expected.items():
    assert fused[key] == pytest.approx(value, abs=5e-5), key
  # Each input's own line, and the fusion beats the worse one here.
  assert _metrics(lines[1])["top1"] == pytest.approx(_by_hand(a, labels)["top1"], abs=5e-5)
  assert _metrics(lines[2])["top1"] == pytest.approx(_by_hand(b, labels)["top1"], abs=5e-5)
  with np.load(tmp_path / "fused.npz") as z:
    assert z["files"].tolist() == files
    np.testing.assert_array_equal(z["labels"], labels)
    np.testing.assert_allclose(z["scores"], a + 0.5 * b, rtol=1e-5, atol=1e-5)
    assert z["class_names"].tolist()[0] == "class 0"


def test_softmax_then_equal_weights(two_files):
  tmp_path, _, labels, a, b = two_files

  def probs(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

  proc = _run(tmp_path / "a.npz", tmp_path / "b.npz", "--softmax")
  assert proc.returncode == 0, proc.stderr
  expected = _by_hand(probs(a.astype(np.float64)) + probs(b.astype(np.float64)), labels)
  fused = _metrics(proc.stdout.splitlines()[-1])
  for key, value in expected.items():
    assert fused[key] == pytest.approx(value, abs=5e-5), key


def test_mismatched_files_are_one_line_errors(two_files):
  tmp_path, files, labels, a, _ = two_files
  other = labels.copy()
  other[3] = (other[3] + 1) % K
  _write(tmp_path / "relabelled.npz", files, other, a)
  _write(tmp_path / "fewer.npz", files[:-2], labels[:-2], a[:-2])
  _write(tmp_path / "classes.npz", files, labels, a[:, :5])
  np.savez(tmp_path / "junk.npz", x=np.zeros(3))
  cases = {"relabelled.npz": "labels 1 videos differently", "fewer.npz": "covers other videos",
           "classes.npz": "5 classes", "junk.npz": "not a scores file"}
  for name, message in cases.items():
    proc = _run(tmp_path / "a.npz", tmp_path / name)
    assert proc.returncode == 2, (name, proc.stdout)
    err = proc.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert name in err and message in err, err
  proc = _run(tmp_path / "a.npz", tmp_path / "b.npz", "--weights", 1)
  assert proc.returncode == 2 and "--weights has 1 values for 2" in proc.stderr
