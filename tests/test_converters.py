"""Converters: strictness, key layouts and the CLI on a PyTorch TSN reference (its parity:
tests/test_parity.py)."""

import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An editable install made before converters/__init__.py existed maps `converters` to a
# namespace package; the checkout itself must win.
if REPO not in sys.path:
  sys.path.insert(0, REPO)

torch = pytest.importorskip("torch")
from conftest import load_config  # noqa: E402
from torch_references import tsm  # noqa: E402
from torch_references.common import random_clip  # noqa: E402

import converters  # noqa: E402
from vidjax.checkpoint import load_variables  # noqa: E402
from vidjax.models import default_config  # noqa: E402


def _config(depth, num_classes, dropout=0.5):
  config = ml_collections.ConfigDict()
  config.model = default_config("recognizer", "recognizer2d")
  config.model.num_classes = num_classes
  config.model.head.dropout_rate = dropout
  config.model.backbone.depth = depth
  return config


@pytest.fixture(scope="module")
def r18():
  """(clip, TSN-R18 reference with 7 classes) in TSM's key layout; parity: test_parity.py."""
  clip = random_clip(2, 3, 64)
  config = load_config("tsn_r50", **{"model.num_classes": 7, "model.backbone.depth": 18})
  return clip, tsm.tsn(config, clip, seed=1)


def test_net_infix_and_module_prefix(r18):
  _, ref = r18
  sd = ref.state_dict()
  plain = converters.convert("tsm", sd, _config(18, 7))
  # TSM blockres wraps conv1 (`conv1.net.weight`), 'block' wraps the block (`0.net.conv1`).
  shifted = {}
  for k, v in sd.items():
    k = k.replace(".conv1.weight", ".conv1.net.weight") if k.startswith("base_model.layer") else k
    shifted["module." + k] = v
  shifted = {k.replace("layer4.1.conv1.net", "layer4.1.net.conv1"): v for k, v in shifted.items()}
  assert "module.base_model.layer1.0.conv1.net.weight" in shifted
  converted = converters.convert("tsm", shifted, _config(18, 7))
  jax.tree.map(np.testing.assert_array_equal, plain, converted)


def test_layout_rules(r18):
  _, ref = r18
  sd = ref.state_dict()
  v = converters.convert("tsm", sd, _config(18, 7))
  np.testing.assert_array_equal(v["params"]["backbone"]["conv1"]["kernel"],
                                sd["base_model.conv1.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(v["params"]["head"]["fc"]["kernel"], sd["new_fc.weight"].numpy().T)
  ds = v["batch_stats"]["backbone"]["layer2_0"]["downsample_bn"]
  np.testing.assert_array_equal(ds["var"], sd["base_model.layer2.0.downsample.1.running_var"].numpy())
  assert set(v) == {"params", "batch_stats"}


def test_strict_errors_list_every_key(r18):
  _, ref = r18
  sd = dict(ref.state_dict())
  sd["base_model.extra.weight"] = torch.zeros(3)
  sd["new_fc.extra"] = torch.zeros(3)
  del sd["base_model.layer1.0.conv1.weight"]
  del sd["base_model.layer3.1.bn2.running_var"]
  sd["base_model.layer2.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
  sd["new_fc.bias"] = torch.zeros(8)
  with pytest.raises(converters.ConversionError) as info:
    converters.convert("tsm", sd, _config(18, 7))
  msg = str(info.value)
  for fragment in ("base_model.extra.weight", "new_fc.extra",                # unused
                   "backbone/layer1_0/conv1/kernel", "layer3_1/bn2/var",      # missing
                   "base_model.layer2.1.conv2.weight", "new_fc.bias"):        # shape
    assert fragment in msg, (fragment, msg)
  assert "2 unused" in msg and "2 missing" in msg and "2 shape mismatches" in msg


def test_num_batches_tracked_dropped_and_class_count_checked(r18):
  _, ref = r18
  sd = ref.state_dict()
  assert any(k.endswith("num_batches_tracked") for k in sd)
  with pytest.raises(converters.ConversionError, match="new_fc.weight"):
    converters.convert("tsm", sd, _config(18, 9))


def test_unknown_source_lists_known(r18):
  with pytest.raises(ValueError, match=r"unknown converter source 'nope'.*tsm"):
    converters.convert("nope", r18[1].state_dict(), _config(18, 7))


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, r18):
  _, ref = r18
  ckpt = tmp_path / "tsn.pth"
  torch.save({"epoch": 3, "arch": "resnet18",
              "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, ckpt)
  cfg_file = tmp_path / "tiny_tsn.py"
  cfg_file.write_text(textwrap.dedent("""
      import ml_collections

      def get_config(arg=None):
        config = ml_collections.ConfigDict()
        config.model = ml_collections.ConfigDict(dict(
            name="recognizer2d", num_classes=400,
            backbone=ml_collections.ConfigDict(dict(name="resnet", depth=18))))
        return config
  """))
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "converters", "--source", "tsm", "--config", str(cfg_file),
         "--checkpoint", str(ckpt), "--output", str(out), "--config.model.num_classes=7"]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = load_variables(str(out))
  config = ml_collections.ConfigDict(dict(model=ml_collections.ConfigDict(dict(
      name="recognizer2d", num_classes=7, backbone=ml_collections.ConfigDict(dict(name="resnet",
                                                                          depth=18))))))
  expected = converters.convert("tsm", ref.state_dict(), config)
  assert jax.tree.structure(loaded) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, loaded, expected)

  # A mismatching class count fails with the offending keys and writes nothing.
  bad_out = tmp_path / "bad"
  result = subprocess.run(cmd[:-3] + ["--output", str(bad_out)], cwd=REPO, capture_output=True,
                          text=True,
                          timeout=300)
  assert result.returncode != 0
  assert "new_fc.weight" in result.stderr
  assert not bad_out.exists()
