"""Bad input to `python -m converters`: each case prints one first `error:` line naming the
file and the problem, exits with status 2 without a traceback, and writes nothing."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, subprocess_env

torch = pytest.importorskip("torch")

CONFIG = "configs/tsm_r50.py:smoke"


def _convert(checkpoint, output, *extra: str) -> subprocess.CompletedProcess:
  cmd = [sys.executable, "-m", "converters", "--source", "tsm", "--config", CONFIG,
         "--checkpoint", str(checkpoint), "--output", str(output), *extra]
  return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)


def _first_error(result: subprocess.CompletedProcess, path, *fragments: str) -> str:
  """Asserts status 2, no traceback, and a first stderr line `error: ...` naming `path`."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  line = [l for l in result.stderr.splitlines() if l.strip()][0]
  assert line.startswith("error: ") and str(path) in line, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in line, (fragment, line)
  return line


def _state_dict(module) -> dict:
  return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _tiny() -> "torch.nn.Module":
  return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                             torch.nn.Flatten(), torch.nn.Linear(4, 2))


def _missing(d):
  return d / "nowhere.pth"


def _garbage(d):
  path = d / "garbage.pth"
  path.write_bytes(np.random.default_rng(7).bytes(4096))
  return path


def _text(d):
  path = d / "notes.pth"
  path.write_text("epoch 3, top-1 71.2\n")
  return path


def _truncated_zip(d):
  path = d / "truncated.pth"
  torch.save(_state_dict(_tiny()), path)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def _truncated_legacy(d):
  path = d / "truncated_legacy.pth"
  torch.save(_state_dict(_tiny()), path, _use_new_zipfile_serialization=False)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def _pickled_module(d):
  path = d / "whole_model.pth"
  torch.save(_tiny(), path)
  return path


CASES = {   # name -> (make the file, what the line must also say)
    "missing": (_missing, "no such file"),
    "garbage": (_garbage, "not a PyTorch checkpoint"),
    "not_a_pickle": (_text, "not a PyTorch checkpoint"),
    "truncated_zip": (_truncated_zip, "truncated"),
    "truncated_legacy": (_truncated_legacy, "truncated"),
    "pickled_module": (_pickled_module, "model.state_dict()"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unreadable_checkpoint_one_line_nothing_written(case, tmp_path):
  make, says = CASES[case]
  path = make(tmp_path)
  out = tmp_path / "out"
  result = _convert(path, out)
  _first_error(result, path, says)
  assert not out.exists()


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_diagnosed_first(tmp_path):
  path = tmp_path / "other_arch.pth"
  torch.save({"epoch": 1, "state_dict": _state_dict(_tiny())}, path)
  out = tmp_path / "out"
  result = _convert(path, out)
  line = _first_error(result, path, "does not fit tsm/tsm_r50:smoke", "unused checkpoint keys",
                      "missing model variables", "is --source/--config right?")
  assert "first of the unused checkpoint keys: 0.bias" in line
  # The long listing of every key waits for --verbosity=1.
  assert "--verbosity=1" in result.stderr and "1.running_var" not in result.stderr
  assert not out.exists()


def test_unusable_output_refused_before_reading(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  path = tmp_path / "whatever.pth"
  torch.save(_state_dict(_tiny()), path)
  result = _convert(path, blocker / "out")
  _first_error(result, blocker / "out", "--output", "is a file")
  assert blocker.read_text() == "x" and not os.path.exists(blocker / "out")


def test_summary_reads_every_section_back():
  from converters.common import ConversionError  # pylint: disable=g-import-not-at-top
  near_fit = ConversionError("checkpoint does not fit the model:\n"
                             "  2 shape mismatches:\n"
                             "    new_fc.weight (7, 512) -> params/head/fc/kernel: got ...\n"
                             "    new_fc.bias (7,) -> params/head/fc/bias: got ...")
  assert near_fit.summary().startswith(
      "2 shape mismatches (first of the shape mismatches: new_fc.weight (7, 512)")
  assert "num_classes" in near_fit.summary()
  # A source that appends a section of its own (converters/gc.py) is read the same way.
  extended = ConversionError(f"{near_fit}\n  1 ECal-S BatchNorm shape mismatches:\n    x.bn1")
  assert extended.problems() == {
      "shape mismatches": ["new_fc.weight (7, 512) -> params/head/fc/kernel: got ...",
                           "new_fc.bias (7,) -> params/head/fc/bias: got ..."],
      "ECal-S BatchNorm shape mismatches": ["x.bn1"]}
  assert "is --source/--config right?" in extended.summary()
