"""Group contextualization (GC): parity of GC-TSN, GC-TSM, ECal-L-TSN and ECal-T-TSM with
PyTorch references, the 'gc' converter's strictness, and the GC configs."""

import os
import sys

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch_references import (RefBottleneck, add_resnet_trunk,  # noqa: E402
                              calibrate_batchnorm, resnet_trunk)
from conftest import load_config  # noqa: E402

import converters  # noqa: E402
from vidjax.models import build_model, resolve_model_config  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# --- PyTorch reference, written from reference/tsm_gc.md section 2 with the upstream module
# names (nets/Calibrator2D.py: conv, bn1; nets/GC_TSN.py, GC_TSM.py, ECal_TSN.py: eft1..4 /
# eft inside each Bottleneck; ops_tsntsmgst/models_*.py: base_model, new_fc). -------------

class RefL(nn.Module):
  """ECal-L (GC_L33D): Conv3d (3,1,1) over time -> BN3d -> sigmoid, element-wise."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0), bias=False)
    self.bn1 = nn.BatchNorm3d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w).permute(0, 2, 1, 3, 4)
    y = v * torch.sigmoid(self.bn1(self.conv(v)))
    return y.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


class RefT(nn.Module):
  """ECal-T (GC_T13D): spatial mean -> Conv1d k=3 over time -> BN1d -> sigmoid."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv1d(c, c, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm1d(c)

  def forward(self, x):
    nt, c, _, _ = x.shape
    y = x.mean((2, 3)).view(-1, self.t, c).permute(0, 2, 1)
    y = torch.sigmoid(self.bn1(self.conv(y))).permute(0, 2, 1).reshape(nt, c, 1, 1)
    return x * y


class RefS(nn.Module):
  """ECal-S (GC_S23DD): temporal mean -> 3x3 conv, dilation 2 -> sigmoid. `bn1` is created
  (and saved) but never applied, as upstream."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False)
    self.bn1 = nn.BatchNorm2d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w)
    return (v * torch.sigmoid(self.conv(v.mean(1))).unsqueeze(1)).view(nt, c, h, w)


class RefG(nn.Module):
  """ECal-G (GC_CLLD): mean over T, H, W -> Linear c->c (no bias) -> BN1d -> sigmoid."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Linear(c, c, bias=False)
    self.bn1 = nn.BatchNorm1d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w)
    y = torch.sigmoid(self.bn1(self.conv(v.mean((1, 3, 4)))))
    return (v * y[:, None, :, None, None]).view(nt, c, h, w)


_REF = {"L": RefL, "T": RefT, "S": RefS, "G": RefG}


def shift(x, t, fold_div=8):
  """TSM's shift (reference/tsm_gc.md 1.1), inline in GC_TSM's blockres blocks."""
  nt, c, h, w = x.shape
  v = x.view(nt // t, t, c, h, w)
  fold = c // fold_div
  out = torch.zeros_like(v)
  out[:, :-1, :fold] = v[:, 1:, :fold]
  out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
  out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
  return out.view(nt, c, h, w)


def gc_bottleneck(kinds, cdiv, t, shifted, loop=False):
  """A Bottleneck class with calibrators after bn2 (+ TSM's inline blockres shift)."""
  counter = [0]  # upstream's loop_id: calibrated blocks so far (every block of R50)

  class Block(RefBottleneck):

    def __init__(self, inplanes, planes, stride, stage, index):
      super().__init__(inplanes, planes, stride)
      del stage, index
      self.t, self.shifted, self.c = t, shifted, planes // cdiv
      self.loop_id = counter[0] % cdiv if loop else 0
      counter[0] += 1
      self.names = ["eft"] if len(kinds) == 1 else [f"eft{k + 1}" for k in range(len(kinds))]
      for name, kind in zip(self.names, kinds):
        setattr(self, name, _REF[kind](self.c, t))
      self.bypass = False  # for the test's own check that the calibrators matter

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = shift(x, self.t) if self.shifted else x
      out = torch.relu(self.bn1(self.conv1(out)))
      out = self.bn2(self.conv2(out))
      if not self.bypass:
        new = out.clone()
        for k, name in enumerate(self.names):
          s = ((self.loop_id + k) % cdiv) * self.c
          new[:, s:s + self.c] = getattr(self, name)(out[:, s:s + self.c])
        out = new
      out = self.bn3(self.conv3(torch.relu(out)))
      return torch.relu(out + identity)

  Block.expansion = 4
  return Block


class RefBase(nn.Module):

  def __init__(self, block):
    super().__init__()
    self.feature_dim = add_resnet_trunk(self, 50, block=block)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Dropout(0.5)  # VideoNet replaces base_model.fc by Dropout

  def forward(self, x):
    return self.fc(torch.flatten(self.avgpool(resnet_trunk(self, x)), 1))


class RefVideoNet(nn.Module):
  """GC's VideoNet: (N, T*3, H, W) -> base_model per frame -> new_fc -> mean over T."""

  def __init__(self, num_classes, t, kinds, cdiv, shifted, loop=False):
    super().__init__()
    self.t = t
    self.base_model = RefBase(gc_bottleneck(kinds, cdiv, t, shifted, loop))
    self.new_fc = nn.Linear(self.base_model.feature_dim, num_classes)

  def forward(self, x):
    x = self.new_fc(self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1])))
    return x.view(-1, self.t, x.shape[-1]).mean(1)


def _randomize(model, x, seed):
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        fan = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan) ** 0.5)
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, _BN_TYPES):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    # Logits of std ~1-2: float32 rounding through 50 random layers grows with their scale
    # (the reference's own float32 vs float64 difference is ~2e-5 per unit of logit std).
    model.new_fc.weight.mul_(0.4)
  model = calibrate_batchnorm(model, x, g, (0.5, 2.0), types=_BN_TYPES)
  with torch.no_grad():  # ECal-S's unused BN: far from identity, so using it would show
    for m in model.modules():
      if isinstance(m, RefS):
        m.bn1.running_mean.copy_(torch.randn(m.bn1.running_mean.shape, generator=g))
        m.bn1.running_var.copy_(torch.rand(m.bn1.running_var.shape, generator=g) * 3 + 0.2)
  return model


def _clip(b=2, t=4, size=32, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def _to_torch(clip):
  x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
  b, t, h, w, _ = x.shape
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, h, w)))


def _reference(config, clip, seed=0):
  m = resolve_model_config(config.model)
  kinds = tuple(m.ecal.calibrators)
  shifted = bool(m.get("shift") is not None and m.shift.enabled)
  ref = RefVideoNet(m.num_classes, clip.shape[1], kinds, m.ecal.cdiv, shifted, m.ecal.loop)
  # BN statistics measured on more clips than the test compares: ECal-G's BN1d sees one
  # vector per clip, and 2 samples would give near-zero variances that amplify rounding.
  calib = _clip(8, clip.shape[1], clip.shape[2], seed=seed + 100)
  return _randomize(ref, _to_torch(calib), seed)


def _parity(config, clip, seed=0, expect_keys=None):
  """Max abs logit difference between the converted model and the reference."""
  ref = _reference(config, clip, seed)
  sd = {"module." + k: v for k, v in ref.state_dict().items()}  # as GC's main saves
  if expect_keys is not None:
    assert len(sd) == expect_keys
  variables = converters.convert("gc", sd, config)
  module = build_model(config.model)
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip))
  x = _to_torch(clip)
  with torch.no_grad():
    theirs = ref(x).numpy()
    for m in ref.modules():
      if hasattr(m, "bypass"):
        m.bypass = True
    plain = ref(x).numpy()
  assert ours.shape == theirs.shape
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  # The calibrators must change the logits far beyond the tolerance, or parity proves little.
  assert np.abs(plain - theirs).max() > 1e-2
  return float(np.abs(ours - theirs).max())


def _config(name, num_classes=7, **overrides):
  return load_config(name, "", **{"model.num_classes": num_classes, **overrides})


def test_parity_gc_tsn_r50():
  clip = _clip(2, 4, 32)
  # 704 entries = 320 + 16 blocks x 4 calibrators x 6 (reference/tsm_gc.md 2.3).
  diff = _parity(_config("gc_tsn_r50"), clip, seed=1, expect_keys=704)
  print(f"GC-TSN-R50 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_gc_tsm_r50():
  clip = _clip(2, 4, 32, seed=2)
  diff = _parity(_config("gc_tsm_r50"), clip, seed=2, expect_keys=704)
  print(f"GC-TSM-R50 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_ecal_l_tsn_r50_cdiv16():
  """ECal-L on 1/16 of the channels (the 'r = 16' reading): the rest pass unchanged."""
  clip = _clip(2, 4, 32, seed=3)
  config = load_config("ecal_l_tsn_r50", "r16", **{"model.num_classes": 7})
  assert config.model.ecal.cdiv == 16
  diff = _parity(config, clip, seed=3, expect_keys=320 + 16 * 6)
  print(f"ECal-L-TSN-R50 (cdiv 16) max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


def test_parity_ecal_t_tsm_r50():
  clip = _clip(2, 4, 32, seed=4)
  diff = _parity(_config("ecal_t_tsm_r50"), clip, seed=4, expect_keys=320 + 16 * 6)
  print(f"ECal-T-TSM-R50 max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4


# --- The converter's strictness (no forward pass: shapes only). -----------------------------

@pytest.fixture(scope="module")
def gc_state_dict():
  ref = RefVideoNet(7, 4, ("L", "T", "S", "G"), 4, shifted=False)
  return {k: v.clone() for k, v in ref.state_dict().items()}


def test_unused_ecal_s_batchnorm_is_accepted_only_where_ecal_s_is(gc_state_dict):
  sd = dict(gc_state_dict)
  assert "base_model.layer3.5.eft3.bn1.running_var" in sd
  variables = converters.convert("gc", sd, _config("gc_tsn_r50"))
  eft3 = variables["params"]["backbone"]["layer3_5"]["mid"]["eft3"]
  assert set(eft3) == {"conv"}  # no BN in ECal-S
  np.testing.assert_array_equal(
      eft3["conv"]["kernel"],
      sd["base_model.layer3.5.eft3.conv.weight"].numpy().transpose(2, 3, 1, 0))
  # Without the stored BN the checkpoint converts too (nothing reads it).
  converters.convert("gc", {k: v for k, v in sd.items() if ".eft3.bn1." not in k},
                     _config("gc_tsn_r50"))
  # A mis-shaped unused BN is still an error that names it.
  sd["base_model.layer1.0.eft3.bn1.running_mean"] = torch.zeros(5)
  with pytest.raises(converters.ConversionError) as info:
    converters.convert("gc", sd, _config("gc_tsn_r50"))
  assert "base_model.layer1.0.eft3.bn1.running_mean (5,)" in str(info.value)


def test_unknown_keys_fail_listing_every_one(gc_state_dict):
  sd = dict(gc_state_dict)
  sd["base_model.layer1.0.eft5.conv.weight"] = torch.zeros(16, 16)
  sd["base_model.layer2.1.eft2.extra"] = torch.zeros(3)
  sd["base_model.layer4.2.eft1.bn1.running_var"] = torch.zeros(64)  # wrong width
  del sd["base_model.layer3.0.eft4.conv.weight"]
  with pytest.raises(converters.ConversionError) as info:
    converters.convert("gc", sd, _config("gc_tsn_r50"))
  msg = str(info.value)
  for fragment in ("base_model.layer1.0.eft5.conv.weight", "base_model.layer2.1.eft2.extra",
                   "base_model.layer4.2.eft1.bn1.running_var",
                   "backbone/layer3_0/mid/eft4/conv/kernel"):
    assert fragment in msg, (fragment, msg)
  assert "2 unused" in msg and "1 shape mismatches" in msg and "1 missing" in msg
  # ECal-S's BN keys are only dropped where the model has an ECal-S: in a model without
  # one (a single ECal-L) they are unused keys like any other.
  with pytest.raises(converters.ConversionError) as info:
    converters.convert("gc", gc_state_dict,
                       _config("gc_tsn_r50", **{"model.ecal.calibrators": ("L",)}))
  assert "base_model.layer1.0.eft3.bn1.weight" in str(info.value)


# --- Module and configs. ---------------------------------------------------------------------

def test_groups_pass_other_channels_unchanged():
  from vidjax.models.temporal.gc import GroupCalibration
  x = jax.random.normal(jax.random.key(0), (2 * 3, 4, 4, 32))
  # c = 4, cdiv 8, upstream --loop's rotation: groups 6, 7, 0, 1 -> channels 8..24 untouched.
  for loop_id, untouched in ((6, slice(8, 24)),):
    module = GroupCalibration(kinds=("L", "T", "S", "G"), cdiv=8, loop_id=loop_id)
    variables = jax.jit(module.init, static_argnums=2)(jax.random.key(1), x, 3)
    y = jax.jit(module.apply, static_argnums=2)(variables, x, 3)
    np.testing.assert_array_equal(y[..., untouched], x[..., untouched])
    assert np.abs(np.asarray(y - x)).max() > 1e-3
    assert set(variables["params"]) == {"eft1", "eft2", "eft3", "eft4"}


@pytest.mark.parametrize("name", ["gc_tsn_r50", "gc_tsm_r50", "ecal_l_tsn_r50",
                                  "ecal_t_tsm_r50"])
def test_configs(name):
  for variant in ("", "16f", "test", "sthv2", "sthv2_16f_test", "k400", "k400_test",
                  "k400_16f_test3", "diving48", "diving48_test", "demo", "smoke"):
    config = load_config(name, variant)
    model = resolve_model_config(config.model)
    assert model.ecal.enabled and model.num_classes == config.data.num_classes or \
        variant in ("demo", "smoke")
    assert model.shift.enabled == name.endswith("tsm_r50")
    if "test" in variant:
      assert config.eval.num_views == max(config.data.test_clips, 1) * (
          3 if variant.endswith("test3") else 1)
  assert load_config(name, "").data.flip_label_map == ((86, 87), (93, 94), (166, 167))
  for bad in ("sthv3", "test3", "k400_sthv2", "tiny"):
    with pytest.raises(ValueError, match=f"configs/{name}.py"):
      load_config(name, bad)


def test_smoke_model_traces():
  """The smoke member (ResNet-18 + shift, ECal after each BasicBlock's first BN) traces
  in train mode with the calibrators' BN statistics mutable (shapes only: compiling it
  would cost the test budget; the demo run trains the real thing)."""
  config = load_config("gc_tsm_r50", "smoke")
  module = build_model(config.model)
  clip = jax.ShapeDtypeStruct((2, 4, 32, 32, 3), np.uint8)
  variables = jax.eval_shape(module.init, jax.random.key(0), clip)
  mid = variables["params"]["backbone"]["layer1_0"]["mid"]
  assert mid["eft1"]["conv"]["kernel"].shape == (3, 1, 1, 16, 16)   # 64 // cdiv 4
  assert mid["eft2"]["conv"]["kernel"].shape == (3, 16, 16)
  logits, updates = jax.eval_shape(lambda v, x: module.apply(
      v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}),
      variables, clip)
  assert logits.shape == (2, config.model.num_classes)
  assert set(updates["batch_stats"]["backbone"]["layer4_1"]["mid"]) == {"eft1", "eft2", "eft4"}


def test_invalid_ecal_config():
  config = _config("gc_tsn_r50", **{"model.ecal.cdiv": 2})
  with pytest.raises(ValueError, match="cdiv=2"):
    build_model(config.model)
  config = _config("gc_tsn_r50", **{"model.ecal.calibrators": ("L", "X")})
  with pytest.raises(ValueError, match="calibrators"):
    build_model(config.model)


def test_calibrated_blocks_and_loop_ids_follow_upstream_counters():
  """Which blocks carry calibrators and their --loop offsets, against upstream's
  _make_layer counters (reference/tsm_gc.md 2.3), for R50 and R101 (n_round 2 in layer3)."""
  from vidjax.models.hooks import BlockInfo
  from vidjax.models.temporal.gc import calibrated_block, loop_id
  for sizes in ((3, 4, 6, 3), (3, 4, 23, 3)):
    for cdiv in (4, 8):
      counter, block_id = 0, 0
      for stage, n in enumerate(sizes, start=1):
        n_round = 2 if n >= 23 else 1
        for i in range(n):
          info = BlockInfo(stage, i, block_id, sizes, 64, 64, 256, 1, 4)
          block_id += 1
          has = i == 0 or i % n_round == 0
          assert calibrated_block(info) == has
          if has:
            assert loop_id(info, cdiv) == counter % cdiv, (sizes, stage, i)
            counter += 1
      assert counter == (16 if sizes[2] == 6 else 3 + 4 + 12 + 3)
