"""Converters: parity with a PyTorch TSN reference, strictness, key layouts, the CLI."""

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
from torch import nn  # noqa: E402
from torch_references import (add_resnet_trunk, calibrate_batchnorm,  # noqa: E402
                              resnet_trunk)

import converters  # noqa: E402
from vidjax.checkpoint import load_variables  # noqa: E402
from vidjax.models import build_model, default_config  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # TSM's data pipeline, 0..1 units
STD = np.array([0.229, 0.224, 0.225], np.float32)


# --- PyTorch reference: TSM's TSN wrapper around a torchvision-layout ResNet. --------------
# Written from reference/tsm_gc.md (sections 1.5, 1.6); module names follow the upstream
# state_dict (base_model.layerS.B.downsample.0, new_fc, ...).

class RefResNet(nn.Module):

  def __init__(self, depth):
    super().__init__()
    self.feature_dim = add_resnet_trunk(self, depth)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(self.feature_dim, 1000)

  def forward(self, x):
    return self.fc(torch.flatten(self.avgpool(resnet_trunk(self, x)), 1))


class RefTSN(nn.Module):
  """input (N, T*3, H, W), normalised -> logits (N, K), average consensus."""

  def __init__(self, num_classes, num_segments, depth=50, dropout=0.8):
    super().__init__()
    self.num_segments = num_segments
    self.base_model = RefResNet(depth)
    dim = self.base_model.feature_dim
    if dropout > 0:
      self.base_model.fc = nn.Dropout(dropout)
      self.new_fc = nn.Linear(dim, num_classes)
    else:
      self.base_model.fc = nn.Linear(dim, num_classes)
      self.new_fc = None

  def forward(self, x):
    x = self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1]))
    if self.new_fc is not None:
      x = self.new_fc(x)
    return x.view(-1, self.num_segments, x.shape[-1]).mean(1)


def _randomize(model, clip_nchw, seed):
  """Random weights and non-trivial BN statistics at a sane activation scale.

  BN statistics are first measured on a batch (momentum 1 copies the batch stats), then
  perturbed, so activations stay O(1) through 50 layers and the comparison has teeth.
  """
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
  return calibrate_batchnorm(model, clip_nchw, g, (0.5, 2.0))


def _clip(b=2, t=3, size=64, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def _to_torch_input(clip):
  """uint8 [B, T, H, W, 3] -> normalised (B, T*3, H, W) as TSM's pipeline feeds it."""
  x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
  b, t, h, w, _ = x.shape
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, h, w)))


def _config(depth, num_classes, dropout=0.5):
  config = ml_collections.ConfigDict()
  config.model = default_config("recognizer", "recognizer2d")
  config.model.num_classes = num_classes
  config.model.head.dropout_rate = dropout
  config.model.backbone.depth = depth
  return config


def _reference(depth, num_classes, clip, dropout=0.8, seed=0):
  model = RefTSN(num_classes, clip.shape[1], depth, dropout)
  return _randomize(model, _to_torch_input(clip), seed)


@pytest.fixture(scope="module")
def r18():
  clip = _clip()
  return clip, _reference(18, 7, clip, seed=1)


def _max_diff(ref, config, state_dict, clip):
  variables = converters.convert("tsm", state_dict, config)
  module = build_model(config.model)
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip))
  with torch.no_grad():
    theirs = ref(_to_torch_input(clip)).numpy()
  assert ours.shape == theirs.shape
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  return float(np.abs(ours - theirs).max())


def test_parity_tsn_r50():
  clip = _clip(2, 3, 64)
  ref = _reference(50, 11, clip)
  sd = {"module." + k: v for k, v in ref.state_dict().items()}  # as TSM's main.py saves
  assert len(ref.state_dict()) == 320  # reference/tsm_gc.md 1.2: 320 entries
  diff = _max_diff(ref, _config(50, 11), sd, clip)
  print(f"TSN-R50 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_tsn_r18_fc_in_base_model():
  """dropout == 0 upstream: the classifier is base_model.fc and there is no new_fc."""
  clip = _clip(1, 2, 64, seed=3)
  ref = _reference(18, 5, clip, dropout=0.0, seed=2)
  sd = ref.state_dict()
  assert "base_model.fc.weight" in sd and not any(k.startswith("new_fc") for k in sd)
  diff = _max_diff(ref, _config(18, 5, dropout=0.0), sd, clip)
  print(f"TSN-R18 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


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
