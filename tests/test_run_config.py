"""vidjax.run_config: configs from files, workdir config.json and overrides."""

import glob
import json
import os

import ml_collections
import pytest

from conftest import ROOT
from vidjax import run_config
from vidjax.recipes import variant
from vidjax.train import checkpoint as ckpt_lib

SMOKE = os.path.join(ROOT, "configs/tsn_r50.py:smoke")


def _specs():
  """Every config file with no variant and each of the run variants."""
  files = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
  assert files
  return [f + (f":{v}" if v else "") for f in files for v in ("",) + variant.RUNS]


def test_workdir_config_json_gives_back_the_config_file(tmp_path):
  """config.json as a training run writes it (tuples become JSON lists) loads back as the
  config itself, from the workdir or the file, for every config file and run variant."""
  for n, spec in enumerate(_specs()):
    config = run_config.load(spec)
    workdir = str(tmp_path / str(n))
    ckpt_lib.check_workdir_config(config, workdir, has_checkpoint=False)
    with open(os.path.join(workdir, "config.json")) as f:
      assert "[" in f.read()   # the file does hold lists
    for saved in (workdir, os.path.join(workdir, "config.json")):
      restored = run_config.load(saved)
      assert restored.to_dict() == config.to_dict(), spec


def test_config_file_variant_and_overrides():
  config = run_config.load(SMOKE, ["data.num_frames=3", "model.pixel_mean=(0, 0, 0)",
                                   "eval.fusion=max_softmax", "data.flip=True",
                                   "optim.lr=1", "data.flip_label_map=((0, 1),)"])
  assert config.data.num_frames == 3 and config.model.pixel_mean == (0, 0, 0)
  assert config.eval.fusion == "max_softmax" and config.data.flip is True
  assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
  assert config.data.flip_label_map == ((0, 1),)
  assert config.model.backbone.depth == 18   # the smoke variant
  with pytest.raises(AttributeError):   # locked, as main's config is
    config.new_field = 1


def test_overrides_of_a_json_config_keep_the_field_types(tmp_path):
  ckpt_lib.check_workdir_config(run_config.load(SMOKE), str(tmp_path), has_checkpoint=False)
  config = run_config.load(str(tmp_path), ["data.scales=(1.0, 0.5)", "data.test_clips=2"])
  assert config.data.scales == (1.0, 0.5) and config.data.test_clips == 2
  with pytest.raises(run_config.ConfigError, match=r"config.data.test_clips: expected an int, "
                     r"got 'two'"):
    run_config.load(str(tmp_path), ["data.test_clips=two"])


@pytest.mark.parametrize("override, message", [
    ("data.num_frame=3", ("unknown config field config.data.num_frame; config.data has "
                          "the fields: area_range, ")),
    ("data.num_frames=x", "config.data.num_frames: expected an int, got 'x' (the field holds 2)."),
    ("data.num_frames=2.5", "config.data.num_frames: expected an int, got '2.5'"),
    ("data.flip=maybe", "config.data.flip: expected a bool (true or false), got 'maybe'"),
    ("optim.lr=fast", "config.optim.lr: expected a float, got 'fast'"),
    ("model.pixel_mean=abc", "config.model.pixel_mean: expected a tuple, e.g. (1, 2) or ('a', 'b'), got 'abc'"),
    ("model=3", "config.model is a section, not a value: set one of its fields (backbone, "),
    ("data.num_frames.x=1", ("unknown config field config.data.num_frames.x: "
                             "config.data.num_frames is a value, not a section.")),
    ("data.num_frames", "override 'data.num_frames': expected FIELD=VALUE"),
])
def test_bad_override_is_one_line_naming_the_field(override, message):
  with pytest.raises(run_config.ConfigError) as e:
    run_config.load(SMOKE, [override])
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_bad_specs(tmp_path):
  with pytest.raises(run_config.ConfigError, match="config file .*nope.py does not exist"):
    run_config.load(os.path.join(ROOT, "configs/nope.py"))
  with pytest.raises(run_config.ConfigError, match="unknown variant part 'bogus'"):
    run_config.load(os.path.join(ROOT, "configs/tsn_r50.py:bogus"))
  with pytest.raises(run_config.ConfigError, match="has no config.json"):
    run_config.load(str(tmp_path))
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(run_config.ConfigError, match="holds a JSON list, not an object"):
    run_config.load(str(tmp_path))


def test_split_overrides_and_checkpoint_spec(tmp_path):
  overrides, rest = run_config.split_overrides(
      ["--checkpoint", "D", "--config.a.b=1", "--config.c", "x y", "v.mp4", "--config=f.py"])
  assert overrides == ["a.b=1", "c=x y"]
  assert rest == ["--checkpoint", "D", "v.mp4", "--config=f.py"]
  workdir = tmp_path / "run"
  step = workdir / "checkpoints" / "120"
  step.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(run_config.load(SMOKE).to_dict()))
  assert run_config.checkpoint_spec(str(workdir)) == str(workdir)
  assert run_config.checkpoint_spec(str(step)) == str(workdir)
  converted = tmp_path / "converted"
  converted.mkdir()
  (converted / "vidjax_meta.json").write_text(json.dumps({"config": "configs/tsm_r50.py"}))
  with pytest.raises(run_config.ConfigError, match=r"pass --config configs/NAME.py\[:VARIANT\] "
                     r"\(the converter used configs/tsm_r50.py\)"):
    run_config.checkpoint_spec(str(converted))


def test_json_lists_become_tuples_and_objects_config_dicts(tmp_path):
  path = tmp_path / "c.json"
  path.write_text(json.dumps({"a": [[1, "x"], []], "b": {"c": None, "d": [0.5]}}))
  config = run_config.load(str(path), ["b.c=(1, 2)"])
  assert config.a == ((1, "x"), ()) and config.b.d == (0.5,)
  assert isinstance(config.b, ml_collections.ConfigDict) and config.b.c == (1, 2)
