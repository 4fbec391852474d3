"""TSM: the shift, non-local blocks and MobileNetV2 against PyTorch references of the TSM
code base (reference/tsm_gc.md 1.1-1.8), converted with source 'tsm'."""

import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch_references import (RefBottleneck, RefBasicBlock, add_resnet_trunk,  # noqa: E402
                              calibrate_batchnorm, resnet_trunk)

import converters  # noqa: E402
from vidjax.models import build_model, default_config  # noqa: E402
from vidjax.models.temporal.shift import temporal_shift  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# --- PyTorch references, written from reference/tsm_gc.md; upstream module names. -------

def ref_shift(x, n_segment, fold_div=8):
  """ops/temporal_shift.py's naive shift (section 1.1): (N*T, C, H, W)."""
  nt, c, h, w = x.shape
  x = x.view(nt // n_segment, n_segment, c, h, w)
  fold = c // fold_div
  out = torch.zeros_like(x)
  out[:, :-1, :fold] = x[:, 1:, :fold]
  out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
  out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
  return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
  """The wrapper: shifts its input, then runs `net` (adds the `.net` key level)."""

  def __init__(self, net, n_segment, n_div=8):
    super().__init__()
    self.net, self.n_segment, self.n_div = net, n_segment, n_div

  def forward(self, x):
    return self.net(ref_shift(x, self.n_segment, self.n_div))


class NL3D(nn.Module):
  """ops/non_local.py's embedded Gaussian block (section 1.4), plus mmcv's gaussian and
  dot_product pairwise functions (reference/mmaction2_cost.md 1a) on the same layout."""

  def __init__(self, c, mode="embedded_gaussian"):
    super().__init__()
    ci, self.ci, self.mode = c // 2, c // 2, mode
    self.g = nn.Sequential(nn.Conv3d(c, ci, 1), nn.MaxPool3d((1, 2, 2)))
    if mode != "gaussian":
      self.theta = nn.Conv3d(c, ci, 1)
      self.phi = nn.Sequential(nn.Conv3d(c, ci, 1), nn.MaxPool3d((1, 2, 2)))
    self.W = nn.Sequential(nn.Conv3d(ci, c, 1), nn.BatchNorm3d(c))

  def forward(self, x):  # (N, C, T, H, W)
    b = x.shape[0]
    g_x = self.g(x).view(b, self.ci, -1).permute(0, 2, 1)
    if self.mode == "gaussian":
      theta_x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
      phi_x = nn.functional.max_pool3d(x, (1, 2, 2)).reshape(b, x.shape[1], -1)
    else:
      theta_x = self.theta(x).view(b, self.ci, -1).permute(0, 2, 1)
      phi_x = self.phi(x).view(b, self.ci, -1)
    f = theta_x @ phi_x
    f = f / f.shape[-1] if self.mode == "dot_product" else f.softmax(dim=-1)
    y = (f @ g_x).permute(0, 2, 1).reshape(b, self.ci, *x.shape[2:])
    return self.W(y) + x


class NL3DWrapper(nn.Module):

  def __init__(self, block, c, n_segment, mode):
    super().__init__()
    self.block, self.nl, self.n_segment = block, NL3D(c, mode), n_segment

  def forward(self, x):
    x = self.block(x)
    nt, c, h, w = x.shape
    x = x.view(nt // self.n_segment, self.n_segment, c, h, w).transpose(1, 2)
    x = self.nl(x)
    return x.transpose(1, 2).reshape(nt, c, h, w)


def tsm_block_factory(depth, n_segment, place="blockres", nl_positions=None,
                      nl_mode="embedded_gaussian"):
  """A block constructor for add_resnet_trunk doing make_temporal_shift (+ make_non_local)."""
  block_cls = RefBasicBlock if depth < 50 else RefBottleneck
  n_round = 2 if depth >= 101 else 1

  def make(inplanes, planes, stride, stage, index):
    b = block_cls(inplanes, planes, stride)
    if place == "blockres":
      if index % n_round == 0:
        b.conv1 = TemporalShift(b.conv1, n_segment)
    else:
      b = TemporalShift(b, n_segment)
    if nl_positions and nl_positions[stage - 1][index]:
      b = NL3DWrapper(b, planes * block_cls.expansion, n_segment, nl_mode)
    return b

  make.expansion = block_cls.expansion
  return make


class RefResNetBase(nn.Module):

  def __init__(self, depth, block):
    super().__init__()
    self.feature_dim = add_resnet_trunk(self, depth, block=block)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Dropout(0.8)

  def forward(self, x):
    return self.fc(torch.flatten(self.avgpool(resnet_trunk(self, x)), 1))


class InvertedResidual(nn.Module):

  def __init__(self, inp, oup, stride, t):
    super().__init__()
    hidden = inp * t
    self.use_res_connect = stride == 1 and inp == oup
    dw = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
          nn.BatchNorm2d(hidden), nn.ReLU6()]
    pw_linear = [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    pw = [] if t == 1 else [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                            nn.ReLU6()]
    self.conv = nn.Sequential(*pw, *dw, *pw_linear)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class RefMobileNetV2(nn.Module):
  """archs/mobilenet_v2.py (width 1.0) with TSN._prepare_base_model's shift (section 1.7)."""

  def __init__(self, n_segment):
    super().__init__()
    feats = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                           nn.ReLU6())]
    inp = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
      for i in range(n):
        block = InvertedResidual(inp, c, s if i == 0 else 1, t)
        if len(block.conv) == 8 and block.use_res_connect:
          block.conv[0] = TemporalShift(block.conv[0], n_segment)
        feats.append(block)
        inp = c
    feats.append(nn.Sequential(nn.Conv2d(inp, 1280, 1, bias=False), nn.BatchNorm2d(1280),
                               nn.ReLU6()))
    self.features = nn.Sequential(*feats)
    self.classifier = nn.Dropout(0.8)
    self.feature_dim = 1280

  def forward(self, x):
    return self.classifier(self.features(x).mean(3).mean(2))


class RefTSN(nn.Module):
  """ops/models.py TSN: (N, T*3, H, W) -> backbone per frame -> new_fc -> mean over T."""

  def __init__(self, base_model, num_classes, num_segments):
    super().__init__()
    self.base_model, self.num_segments = base_model, num_segments
    self.new_fc = nn.Linear(base_model.feature_dim, num_classes)

  def forward(self, x):
    x = self.new_fc(self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1])))
    return x.view(-1, self.num_segments, x.shape[-1]).mean(1)


# --- helpers ------------------------------------------------------------------------------

def _randomize(model, example, seed):
  """Random weights, then measured-and-perturbed BN statistics (calibrate_batchnorm).

  The last BN of every residual branch gets small gains (0.2..0.5), so the residual
  stream grows slowly: with gains near 1, float32 rounding alone (torch float32 against
  torch float64) reaches 2e-4 on the logits of a random ResNet-101.
  """
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Conv3d)):
        fan = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    for m in model.modules():
      last_bn = {RefBottleneck: "bn3", RefBasicBlock: "bn2"}.get(type(m))  # noqa
      last_bn = getattr(m, last_bn) if last_bn else (
          m.conv[-1] if isinstance(m, InvertedResidual) else None)
      if last_bn is not None:
        last_bn.weight.copy_(torch.rand(last_bn.weight.shape, generator=g) * 0.3 + 0.2)
      if isinstance(m, NL3D) and m.mode != "gaussian":
        # Softmax arguments of O(1): He-scaled theta/phi make them O(100) on these
        # activations, a near-argmax whose float32 rounding is 4e-3 in torch itself.
        m.theta.weight.mul_(0.3)
        m.phi[0].weight.mul_(0.3)
      if isinstance(m, nn.BatchNorm3d):
        # The NL output BN is not calibrated: W(y) varies little over a batch (attention
        # averages), so measured statistics would amplify the eval/train drift of the
        # trunk without bound. Fixed non-trivial statistics and small gains instead.
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.3 + 0.2)
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
  return calibrate_batchnorm(model, example, g, (0.5, 2.0))


def _clip(b, t, size, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def _to_torch(clip):
  x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
  b, t, h, w, _ = x.shape
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, h, w)))


def _config(num_classes, backbone="resnet", depth=50, **temporal):
  config = ml_collections.ConfigDict()
  config.model = default_config("recognizer", "recognizer2d")
  config.model.num_classes = num_classes
  if backbone == "resnet":
    config.model.backbone.depth = depth
  else:
    config.model.backbone = default_config("backbone", backbone)
  for field, values in temporal.items():
    config.model[field].update(dict(enabled=True, **values))
  return config


def _max_diff(ref, config, clip, prefix="module."):
  sd = {prefix + k: v for k, v in ref.state_dict().items()}
  variables = converters.convert("tsm", sd, config)
  module = build_model(config.model)
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip))
  with torch.no_grad():
    theirs = ref(_to_torch(clip)).numpy()
  assert ours.shape == theirs.shape
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  return float(np.abs(ours - theirs).max())


def _resnet_ref(depth, clip, num_classes, seed, **factory_kwargs):
  base = RefResNetBase(depth, tsm_block_factory(depth, clip.shape[1], **factory_kwargs))
  ref = RefTSN(base, num_classes, clip.shape[1])
  return _randomize(ref, _to_torch(clip), seed)


# --- the shift ----------------------------------------------------------------------------

def _numpy_shift(x, t, n_div):
  """Direct transcription of section 1.1, one loop iteration per (clip, frame)."""
  nt, h, w, c = x.shape
  fold = c // n_div
  out = np.zeros_like(x)
  for n in range(nt // t):
    for f in range(t):
      row = n * t + f
      if f + 1 < t:
        out[row, ..., :fold] = x[row + 1, ..., :fold]
      if f >= 1:
        out[row, ..., fold:2 * fold] = x[row - 1, ..., fold:2 * fold]
      out[row, ..., 2 * fold:] = x[row, ..., 2 * fold:]
  return out


@pytest.mark.parametrize("t,c,n_div", [(4, 16, 8), (3, 20, 8), (5, 12, 4), (1, 16, 8)])
def test_shift_matches_numpy_transcription(t, c, n_div):
  x = np.random.RandomState(t * c).randn(2 * t, 3, 2, c).astype(np.float32)
  ours = np.asarray(temporal_shift(jnp.asarray(x), t, n_div))
  np.testing.assert_array_equal(ours, _numpy_shift(x, t, n_div))
  if t > 1:  # the direction: channel 0 of frame 0 comes from frame 1
    np.testing.assert_array_equal(ours[0, ..., 0], x[1, ..., 0])


def test_shift_matches_torch_reference():
  x = np.random.RandomState(0).randn(8, 16, 3, 3).astype(np.float32)  # (N*T, C, H, W)
  theirs = ref_shift(torch.from_numpy(x), 4).numpy()
  ours = np.asarray(temporal_shift(jnp.asarray(x.transpose(0, 2, 3, 1)), 4))
  np.testing.assert_array_equal(ours, theirs.transpose(0, 2, 3, 1))


def test_shift_rejects_partial_clip():
  with pytest.raises(ValueError, match="num_segments=4"):
    temporal_shift(jnp.zeros((6, 2, 2, 8)), 4)


def test_slot_conflict_and_bad_fields():
  from vidjax.models.hooks import build_hooks
  from vidjax.models import registry
  # A module that also wants the `temporal_module` slot conflicts with the shift.
  registry.register("temporal", "_test_conflict",
                    lambda: ml_collections.ConfigDict({"enabled": False}))(
      lambda cfg, model_cfg: {"temporal_module": lambda info: None})
  try:
    model_cfg = default_config("recognizer", "recognizer2d")
    model_cfg.shift.enabled = True
    model_cfg["_test_conflict"] = ml_collections.ConfigDict({"enabled": True})
    with pytest.raises(ValueError, match="both need the backbone's 'temporal_module' slot"):
      build_hooks(model_cfg)
  finally:
    del registry._REGISTRY["temporal"]["_test_conflict"]
  bad = default_config("recognizer", "recognizer2d")
  bad.shift.update(enabled=True, place="blocks")
  with pytest.raises(ValueError, match="model.shift.place='blocks'"):
    build_model(bad)


def test_shift_placement_and_n_round():
  """R101: blocks with even index in every stage; R50: all; 'block': the pre slot."""
  from vidjax.models.hooks import BlockInfo, build_hooks

  def info(index, sizes):
    return BlockInfo(stage=1, index=index, block_id=index, stage_sizes=sizes, in_channels=64,
                     width=64, out_channels=256, stride=1, expansion=4)

  cfg = default_config("recognizer", "recognizer2d")
  cfg.shift.enabled = True
  slot = build_hooks(cfg)["temporal_module"]
  assert all(slot(info(i, (3, 4, 6, 3))) is not None for i in range(3))
  assert [slot(info(i, (3, 4, 23, 3))) is not None for i in range(4)] == [True, False] * 2
  cfg.shift.place = "block"
  hooks = build_hooks(cfg)
  assert set(hooks) == {"pre_module"} and hooks["pre_module"](info(1, (3, 4, 23, 3)))


# --- parity -------------------------------------------------------------------------------

def test_parity_tsm_r50_blockres():
  clip = _clip(2, 4, 32)
  ref = _resnet_ref(50, clip, 11, seed=1)
  sd = ref.state_dict()
  assert len(sd) == 320 + 0 and "base_model.layer1.0.conv1.net.weight" in sd
  diff = _max_diff(ref, _config(11, shift={}), clip)
  print(f"TSM-R50 blockres max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_tsm_r101_every_other_block():
  clip = _clip(1, 4, 32, seed=2)
  ref = _resnet_ref(101, clip, 7, seed=2)
  sd = ref.state_dict()
  assert "base_model.layer3.2.conv1.net.weight" in sd and "base_model.layer3.1.conv1.weight" in sd
  diff = _max_diff(ref, _config(7, depth=101, shift={}), clip)
  print(f"TSM-R101 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_tsm_r18_block_place():
  clip = _clip(2, 4, 32, seed=3)
  ref = _resnet_ref(18, clip, 6, seed=3, place="block")
  assert "base_model.layer1.0.net.conv1.weight" in ref.state_dict()
  diff = _max_diff(ref, _config(6, depth=18, shift={"place": "block"}), clip)
  print(f"TSM-R18 'block' max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4
  # The same weights as 'blockres' or without a shift give other logits: the
  # comparison sees where (and whether) frames are shifted.
  assert _max_diff(ref, _config(6, depth=18, shift={}), clip) > 1e-3


def test_parity_nl_tsm_r50():
  clip = _clip(2, 4, 64, seed=4)
  positions = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))
  ref = _resnet_ref(50, clip, 9, seed=4, nl_positions=positions)
  sd = ref.state_dict()
  assert len(sd) == 385 and "base_model.layer2.0.nl.W.1.running_var" in sd
  assert "base_model.layer2.0.block.conv1.net.weight" in sd
  diff = _max_diff(ref, _config(9, shift={}, non_local={}), clip)
  print(f"NL-TSM-R50 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


@pytest.mark.parametrize("mode", ["gaussian", "dot_product"])
def test_parity_non_local_modes_r18(mode):
  clip = _clip(2, 4, 32, seed=5)
  positions = ((0, 0), (1, 0), (0, 0), (0, 0))   # layer2: 4x4 maps, 2x2 after pooling
  ref = _resnet_ref(18, clip, 5, seed=5, nl_positions=positions, nl_mode=mode)
  diff = _max_diff(ref, _config(5, depth=18, shift={},
                                non_local={"mode": mode, "positions": positions}), clip)
  print(f"NL ({mode}) TSM-R18 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_tsm_mobilenet_v2():
  clip = _clip(2, 4, 32, seed=6)
  ref = _randomize(RefTSN(RefMobileNetV2(4), 8, 4), _to_torch(clip), 6)
  sd = ref.state_dict()
  shifted = sorted(int(k.split(".")[2]) for k in sd if k.endswith("conv.0.net.weight"))
  assert shifted == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
  n_entries = len(sd)
  diff = _max_diff(ref, _config(8, backbone="mobilenet_v2", shift={}), clip)
  print(f"TSM-MobileNetV2 ({n_entries} entries) max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4
  # The released checkpoint may keep its Linear as base_model.classifier (section 1.7).
  sd = {k.replace("new_fc.", "base_model.classifier."): v for k, v in sd.items()}
  config = _config(8, backbone="mobilenet_v2", shift={})
  variables = converters.convert("tsm", sd, config)
  np.testing.assert_allclose(np.asarray(variables["params"]["head"]["fc"]["kernel"]),
                             ref.new_fc.weight.detach().numpy().T)


def test_strict_conversion_lists_every_problem():
  clip = _clip(1, 2, 32, seed=7)
  ref = _resnet_ref(18, clip, 4, seed=7)
  sd = dict(ref.state_dict())
  sd["base_model.layer1.0.extra.weight"] = torch.zeros(3)
  del sd["base_model.layer2.0.bn1.running_var"]
  sd["new_fc.weight"] = torch.zeros(5, 512)
  with pytest.raises(converters.ConversionError) as err:
    converters.convert("tsm", sd, _config(4, depth=18, shift={}))
  msg = str(err.value)
  assert "base_model.layer1.0.extra.weight" in msg
  assert "layer2_0/bn1/var" in msg
  assert "new_fc.weight" in msg and "(512, 4)" in msg
  # An NL checkpoint into a model without non-local blocks: every nl key is unused.
  with pytest.raises(converters.ConversionError, match="post"):
    positions = ((0, 0), (1, 0), (0, 0), (0, 0))
    nl_ref = _resnet_ref(18, clip, 4, seed=7, nl_positions=positions)
    converters.convert("tsm", nl_ref.state_dict(), _config(4, depth=18, shift={}))


# --- configs and the training path ---------------------------------------------------------

def _load_config(name, variant=""):
  from conftest import load_config
  return load_config(name, variant)


@pytest.mark.parametrize("name,variants", [
    ("tsm_r50", ("", "16f", "dense", "sthv1", "sthv2_16f_test2x3", "ucf101", "hmdb51",
                 "jester", "diving48_test2x3", "dense,test30",
                 "test1", "demo", "smoke")),
    ("tsm_r101", ("", "sthv1", "sthv2_test2x3", "demo", "smoke")),
    ("nl_tsm_r50", ("", "test30", "demo", "smoke")),
    ("tsm_mobilenetv2", ("", "test30", "demo", "smoke")),
])
def test_configs(name, variants):
  from vidjax.models import resolve_model_config
  for variant in variants:
    config = _load_config(name, variant)
    model = resolve_model_config(config.model)
    assert model.shift.enabled and model.shift.place == "blockres"
    assert model.non_local.enabled == name.startswith("nl_")
    assert model.num_classes == (config.data.num_classes or model.num_classes)
    crops = 3 if "test2x3" in variant or "test30" in variant else 1
    assert config.eval.num_views == max(config.data.test_clips, 1) * crops
    if variant in ("demo", "smoke"):
      assert config.data.name == "demo"
    shape = (1, config.data.num_frames, config.data.image_size, config.data.image_size, 3)
    module = build_model(config.model)
    out = jax.eval_shape(module.init, jax.random.key(0),
                         jax.ShapeDtypeStruct(shape, jnp.uint8))
    assert out["params"]["head"]["fc"]["kernel"].shape[-1] == model.num_classes
  sth = _load_config(name, "sthv2") if name.startswith("tsm_r") else None
  if sth is not None:
    assert sth.data.flip is False and sth.data.flip_label_map == ((86, 87), (93, 94), (166, 167))
    assert sth.data.num_classes == 174
  for bad in ("sthv3", "sthv1_sthv2", "demo_16f", "tiny"):
    with pytest.raises(ValueError, match=f"configs/{name}.py"):
      _load_config(name, bad)


def test_mobilenet_v2_smoke_train_mode():
  """TSM-MobileNetV2 smoke in train mode: finite logits, BN statistics move (the shifted
  block's too); partial BN freezes every BN affine but the first. (Variables are filled
  from their shapes: compiling `init` and a gradient step of this net costs a minute of
  CPU here; the demo variant runs the full training path.)"""
  from flax import traverse_util
  config = _load_config("tsm_mobilenetv2", "smoke")
  module = build_model(config.model)
  clip = _clip(2, config.data.num_frames, 32, seed=8)
  abstract = jax.eval_shape(module.init, jax.random.key(0),
                            jax.ShapeDtypeStruct(clip.shape, jnp.uint8))
  rng = np.random.RandomState(0)
  flat = {}
  for path, leaf in traverse_util.flatten_dict(abstract).items():
    if path[-1] == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      flat[path] = rng.randn(*leaf.shape).astype(np.float32) * (2.0 / fan_in) ** 0.5
    else:
      flat[path] = np.full(leaf.shape, 1.0 if path[-1] in ("scale", "var") else 0.0,
                           np.float32)
  variables = traverse_util.unflatten_dict(flat)
  logits, upd = jax.jit(lambda v, x: module.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}))(
          variables, clip)
  assert logits.shape == (2, config.model.num_classes)
  assert np.all(np.isfinite(np.asarray(logits)))
  assert variables["params"]["backbone"]["features_3"]["conv_3"]["kernel"].shape == (3, 3, 1, 144)
  after = upd["batch_stats"]["backbone"]["features_3"]["conv_1"]["mean"]
  assert float(jnp.abs(after).max()) > 0
  from vidjax.models.backbones.mobilenet_v2 import mobilenet_frozen_rule
  partial = ml_collections.ConfigDict(dict(partial_bn=True))
  assert mobilenet_frozen_rule(("features_3", "conv_4", "scale"), partial)
  assert mobilenet_frozen_rule(("features_18", "layer_1", "bias"), partial)
  assert not mobilenet_frozen_rule(("features_0", "layer_1", "scale"), partial)
  assert not mobilenet_frozen_rule(("features_3", "conv_3", "kernel"), partial)
  assert not mobilenet_frozen_rule(("features_3", "conv_4", "scale"),
                                   ml_collections.ConfigDict(dict(partial_bn=False)))
