"""TCPNet's backbones: pre-activation ResNet and TEA Res2Net-50 against PyTorch references.

The references below are our own, written from reference/tcpnet.md (sections 2.2, 6, 7)
with the upstream module names, so their state_dicts have the upstream key layout.
Feature maps are compared in eval mode after conversion with converters/common.py's
machinery and converters/tcpnet_backbones.py's renames. The error is reported as
max |ours - theirs| / max(1, std(theirs)): absolute for O(1) features, relative to the
feature scale when it is larger. The real depths (pre-activation R152, TEA at T=16) are
compared as whole TCP models in tests/test_tcp.py.
"""

import copy
import os
import sys

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch_references import calibrate_batchnorm  # noqa: E402

from converters.common import ConversionError  # noqa: E402
from converters.tcpnet_backbones import (convert_backbone, rename_preact_key,  # noqa: E402
                                         rename_tea_key)
from vidjax.models import default_config  # noqa: E402
from vidjax.models.backbones import preact_resnet, res2net_tea  # noqa: E402
from vidjax.models.registry import build_backbone, lookup  # noqa: E402
from vidjax.models.backbones.preact_resnet import PreActResNet  # noqa: E402
from vidjax.models.backbones.res2net_tea import TEARes2Net  # noqa: E402
from vidjax.models.layers import BatchNorm  # noqa: E402

# Parameter counts from reference/tcpnet.md 5.2 and 6: whole-model totals minus the TCP
# head (821,376 at T=8) and new_fc (3,302,800 for 400 classes).
TEA50_PARAMS = 24_099_754
TEA50_KEYS = 813 - 29 - 2        # state_dict entries incl. num_batches_tracked


# --- PyTorch references -------------------------------------------------------------------

class RefPreActBottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(inplanes, eps=2e-5)
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes, eps=2e-5)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes, eps=2e-5)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False))
    else:
      self.downsample = None

  def forward(self, x):
    a = torch.relu(self.bn1(x))
    shortcut = x if self.downsample is None else self.downsample(a)
    out = torch.relu(self.bn2(self.conv1(a)))
    out = torch.relu(self.bn3(self.conv2(out)))
    return self.conv3(out) + shortcut


class RefPreActResNet(nn.Module):
  SIZES = {50: (3, 4, 6, 3), 152: (3, 8, 36, 3)}

  def __init__(self, depth):
    super().__init__()
    self.bn_data = nn.BatchNorm2d(3, eps=2e-5)
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64, eps=2e-5)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for s, (n, planes, stride) in enumerate(zip(self.SIZES[depth], (64, 128, 256, 512),
                                                (1, 2, 2, 1)), start=1):
      blocks = []
      for i in range(n):
        blocks.append(RefPreActBottleneck(inplanes, planes, stride if i == 0 else 1))
        inplanes = planes * 4
      setattr(self, f"layer{s}", nn.Sequential(*blocks))
    self.bn2 = nn.BatchNorm2d(2048, eps=2e-5)

  def forward(self, x):  # raw 0..255 pixels
    x = self.maxpool(torch.relu(self.bn1(self.conv1(self.bn_data(x)))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.relu(self.bn2(x))


class RefShiftModule(nn.Module):
  """Depthwise temporal conv, kernel 3, zero padding, over (N*H*W, C, T)."""

  def __init__(self, channels, n_segment):
    super().__init__()
    self.n_segment = n_segment
    self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)

  def forward(self, x):
    nt, c, h, w = x.shape
    t = self.n_segment
    x = x.view(nt // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)
    x = self.conv(x)
    return x.view(nt // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)


class RefME(nn.Module):
  def __init__(self, channels, n_segment, reduction=16):
    super().__init__()
    r = channels // reduction
    self.n_segment = n_segment
    self.conv1 = nn.Conv2d(channels, r, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(r)
    self.conv2 = nn.Conv2d(r, r, 3, padding=1, groups=r, bias=False)
    self.conv3 = nn.Conv2d(r, channels, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(channels)

  def forward(self, x):
    nt, c, h, w = x.shape
    t = self.n_segment
    b = self.bn1(self.conv1(x))
    moved = self.conv2(b)
    b5, m5 = b.view(nt // t, t, -1, h, w), moved.view(nt // t, t, -1, h, w)
    diff = torch.cat([m5[:, 1:] - b5[:, :-1], torch.zeros_like(b5[:, :1])], dim=1)
    y = diff.reshape(nt, -1, h, w).mean(dim=(2, 3), keepdim=True)
    y = torch.sigmoid(self.bn3(self.conv3(y))) - 0.5
    return x + x * y


class RefBottle2neckShift(nn.Module):
  def __init__(self, inplanes, planes, stride, stage, n_segment):
    super().__init__()
    width = planes * 26 // 64
    self.width, self.stage, self.stride = width, stage, stride
    self.conv1 = nn.Conv2d(inplanes, width * 4, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width * 4)
    self.me = RefME(width * 4, n_segment)
    self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False)
                               for _ in range(3))
    self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(3))
    self.shifts = nn.ModuleList(RefShiftModule(width, n_segment) for _ in range(4))
    self.pool = nn.AvgPool2d(3, stride, 1) if stage else None
    self.conv3 = nn.Conv2d(width * 4, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes * 4))

  def forward(self, x):
    out = self.me(torch.relu(self.bn1(self.conv1(x))))
    chunks = torch.split(out, self.width, dim=1)
    outs = []
    for i in range(3):
      sp = chunks[i] if (i == 0 or self.stage) else sp + chunks[i]
      sp = torch.relu(self.bns[i](self.convs[i](self.shifts[i](sp))))
      outs.append(sp)
    last = self.shifts[3](chunks[3])
    if self.stage and self.width != 208:
      last = self.pool(last)
    outs.append(last)
    out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(out + identity)


class RefTEARes2Net50(nn.Module):
  def __init__(self, n_segment):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for s, (n, planes, stride) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512),
                                                (1, 2, 2, 1)), start=1):
      blocks = []
      for i in range(n):
        blocks.append(RefBottle2neckShift(inplanes, planes, stride if i == 0 else 1, i == 0,
                                          n_segment))
        inplanes = planes * 4
      setattr(self, f"layer{s}", nn.Sequential(*blocks))

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _frozen_rule(name):
  """The registered frozen-parameter rule of backbone `name`, called with field values."""
  rule = lookup("backbone", name, "model.backbone").frozen_rule

  def frozen(path, frozen_stages=-1, partial_bn=False):
    cfg = default_config("backbone", name)
    cfg.update(frozen_stages=frozen_stages, partial_bn=partial_bn)
    return rule(tuple(path), cfg)
  return frozen


def _randomize(model, x, seed):
  """Random weights, non-trivial BN statistics (measured, then perturbed), random
  affines and random temporal shift kernels around identity."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
      elif isinstance(m, nn.Conv1d):
        w = torch.randn(m.weight.shape, generator=g) * 0.4
        w[:, 0, 1] += 0.7
        m.weight.copy_(w)
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
  return calibrate_batchnorm(model, x, g, (0.5, 2.0))


def _frames(n, size, seed, raw):
  x = np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.float32)
  if not raw:  # TEA takes ImageNet-normalised frames
    x = (x / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
        [0.229, 0.224, 0.225], np.float32)
  return x


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _compare(ref, ours, name, x, num_segments, jit=True):
  """Converts `ref`, runs both in eval mode; returns (scaled max diff, variables)."""
  variables = convert_backbone({"module.base_model." + k: v for k, v in ref.state_dict().items()},
                               ours, x, name, num_segments)
  fn = lambda v, a: ours.apply(v, a, train=False, num_segments=num_segments)  # noqa: E731
  with jax.default_matmul_precision("highest"):
    got = np.asarray((jax.jit(fn) if jit else fn)(variables, jnp.asarray(x)))
  with torch.no_grad():
    want = ref(_nchw(x)).numpy().transpose(0, 2, 3, 1)
  assert got.shape == want.shape, (got.shape, want.shape)
  assert want.std() > 0.05, "reference features are degenerate; the test would prove nothing"
  diff = float(np.abs(got - want).max())
  print(f"{name} T={num_segments}: max abs diff {diff:.3g}, max |feature| "
        f"{np.abs(want).max():.3g}, feature std {want.std():.3g}")
  return diff / max(1.0, float(np.abs(want).max())), variables


# Halves XLA's CPU compile time; only for checks that do not compare against float32
# references (train-mode statistics, float64 parity).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _num_params(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _lookup(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _assert_stats_moved(old, new, paths):
  for path in paths:
    assert not np.allclose(_lookup(old, path)["mean"], _lookup(new, path)["mean"]), path
    assert not np.allclose(_lookup(old, path)["var"], _lookup(new, path)["var"]), path


# --- pre-activation ResNet ----------------------------------------------------------------

@pytest.fixture(scope="module")
def preact50():
  """(reference, frames, converted variables, scaled max diff) for pre-act R50 at 64 px."""
  x = _frames(2, 64, seed=0, raw=True)
  ref = _randomize(RefPreActResNet(50), _nchw(x), seed=1)
  diff, variables = _compare(ref, PreActResNet(depth=50), "preact_resnet", x, 1)
  return ref, x, variables, diff


def test_preact50_parity(preact50):
  *_, diff = preact50
  print(f"pre-act R50 feature max diff (scaled): {diff:.3g}")
  assert diff <= 1e-4


def test_preact50_parity_float64(preact50):
  """The same comparison in float64 on both sides: only round-off may remain."""
  ref, x, variables, _ = preact50
  ref64 = copy.deepcopy(ref).double()
  ours = PreActResNet(depth=50, dtype=jnp.float64)
  with jax.enable_x64(True):
    v64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), variables)
    got = np.asarray(jax.jit(lambda v, a: ours.apply(v, a, train=False),
                             compiler_options=_FAST_COMPILE)(
        v64, jnp.asarray(x, jnp.float64)))
  with torch.no_grad():
    want = ref64(_nchw(x).double()).numpy().transpose(0, 2, 3, 1)
  diff = float(np.abs(got - want).max())
  print(f"pre-act R50 float64 max abs diff: {diff:.3g}")
  assert diff <= 1e-9


def test_preact_rename_rules():
  assert rename_preact_key("bn_data.weight") == "bn_data.weight"
  assert rename_preact_key("bn2.running_var") == "bn2.running_var"
  assert rename_preact_key("layer3.35.bn1.bias") == "layer3_35.bn1.bias"
  assert rename_preact_key("layer4.0.downsample.0.weight") == "layer4_0.downsample_conv.weight"
  for key in ("TCP.layer_reduce1.weight", "fc.weight", "layer1.0.downsample.1.weight",
              "layer1.0.bn4.weight", "new_fc.bias"):
    assert rename_preact_key(key) is None, key


def test_preact_train_mode_updates_stats(preact50):
  _, x, variables, _ = preact50
  model = PreActResNet(depth=50)
  _, updates = jax.jit(lambda v, a: model.apply(v, a, train=True, mutable=["batch_stats"]),
                       compiler_options=_FAST_COMPILE)(variables, jnp.asarray(x))
  _assert_stats_moved(variables["batch_stats"], updates["batch_stats"],
                      (("bn_data",), ("bn1",), ("layer2_0", "bn3"), ("layer4_2", "bn1"),
                       ("bn2",)))
  # norm_eval keeps every statistic.
  frozen = PreActResNet(depth=50, norm_eval=True)
  _, same = jax.jit(lambda v, a: frozen.apply(v, a, train=True, mutable=["batch_stats"]),
                    compiler_options=_FAST_COMPILE)(variables, jnp.asarray(x))
  jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], same["batch_stats"])


def test_bn_data_gamma_gets_no_gradient():
  x = jnp.asarray(_frames(2, 8, seed=4, raw=True))
  # The network declares its bn_data with a frozen scale (traced, not run)...
  declared = {}

  def record(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, BatchNorm) and module.name == "bn_data":
      declared[module.name] = (module.freeze_scale, module.freeze_affine)
    return next_fun(*args, **kwargs)

  with flax.linen.intercept_methods(record):
    jax.eval_shape(lambda: PreActResNet(depth=50).init(jax.random.key(0), x))
  assert declared == {"bn_data": (True, False)}
  # ...and such a BatchNorm gives its scale no gradient while its bias trains.
  bn = BatchNorm(epsilon=2e-5, freeze_scale=True)
  variables = bn.init(jax.random.key(0), x)

  def loss(params):
    y, _ = bn.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                    mutable=["batch_stats"])
    return jnp.sum(y * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))

  grads = jax.grad(loss)(variables["params"])
  assert np.all(grads["scale"] == 0) and np.all(grads["bias"] != 0)
  frozen = _frozen_rule("preact_resnet")
  assert frozen(("bn_data", "scale"))
  assert lookup("backbone", "preact_resnet", "").frozen_rule(
      ("bn_data", "scale"), default_config("backbone", "preact_resnet"))
  assert not frozen(("bn_data", "bias"))
  assert frozen(("layer1_0", "bn2", "scale"), partial_bn=True)
  assert not frozen(("layer1_0", "conv2", "kernel"), partial_bn=True)
  assert frozen(("bn2", "bias"), frozen_stages=4)
  assert not frozen(("bn2", "bias"), frozen_stages=3)


# --- TEA Res2Net-50 -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tea8():
  """T = 8 with two clips in the batch: ME and the shifts must not mix clips."""
  x = _frames(16, 64, seed=8, raw=False)
  ref = _randomize(RefTEARes2Net50(8), _nchw(x), seed=9)
  ours = build_backbone(default_config("backbone", "tea_res2net"), jnp.float32)
  diff, variables = _compare(ref, ours, "tea_res2net", x, 8)
  return ref, x, variables, diff


def test_tea50_t8_parity_and_counts(tea8):
  ref, _, variables, diff = tea8
  print(f"TEA-R50 T=8 feature max diff (scaled): {diff:.3g}")
  assert diff <= 1e-4
  assert len(ref.state_dict()) == TEA50_KEYS
  assert sum(p.numel() for p in ref.parameters()) == TEA50_PARAMS
  assert _num_params(variables["params"]) == TEA50_PARAMS
  # The learned shift kernels land in the right taps: (w, 1, 3) -> [3, 1, w].
  np.testing.assert_array_equal(
      variables["params"]["layer2_1"]["shifts_3"]["kernel"],
      ref.state_dict()["layer2.1.shifts.3.conv.weight"].numpy().transpose(2, 1, 0))


def test_tea_rename_rules():
  assert rename_tea_key("layer1.0.me.conv2.weight") == "layer1_0.me.conv2.weight"
  assert rename_tea_key("layer3.5.shifts.3.conv.weight") == "layer3_5.shifts_3.weight"
  assert rename_tea_key("layer2.0.bns.2.running_mean") == "layer2_0.bns_2.running_mean"
  assert rename_tea_key("layer4.0.downsample.1.bias") == "layer4_0.downsample_bn.bias"
  for key in ("TCP.TCP_att.conv_1d.weight", "fc.weight", "bn_data.weight",
              "layer1.0.me.bn2.weight", "layer1.0.shifts.0.weight"):
    assert rename_tea_key(key) is None, key


def test_tea_train_mode_updates_stats(tea8):
  _, x, variables, _ = tea8
  model = TEARes2Net()
  _, updates = jax.jit(lambda v, a: model.apply(v, a, train=True, num_segments=8,
                                                mutable=["batch_stats"]),
                       compiler_options=_FAST_COMPILE)(variables, jnp.asarray(x[:8]))
  _assert_stats_moved(variables["batch_stats"], updates["batch_stats"],
                      (("bn1",), ("layer1_0", "me", "bn3"), ("layer3_2", "bns_1"),
                       ("layer4_0", "downsample_bn")))
  frozen = _frozen_rule("tea_res2net")
  assert frozen(("layer1_0", "me", "bn1", "scale"), partial_bn=True)
  assert not frozen(("bn1", "scale"), partial_bn=True)
  assert not frozen(("layer1_0", "shifts_0", "kernel"), partial_bn=True)
  assert frozen(("conv1", "kernel"), frozen_stages=0)


def test_strict_conversion_lists_bad_keys(tea8):
  ref, x, _, _ = tea8
  sd = dict(ref.state_dict())
  sd["layer1.0.me.extra.weight"] = torch.zeros(3)
  del sd["layer2.0.shifts.1.conv.weight"]
  sd["layer3.0.convs.0.weight"] = torch.zeros(104, 104, 1, 1)
  with pytest.raises(ConversionError) as info:
    convert_backbone(sd, TEARes2Net(), x, "tea_res2net", 8)
  msg = str(info.value)
  for part in ("layer1.0.me.extra.weight", "layer2_0/shifts_1/kernel", "layer3.0.convs.0.weight"):
    assert part in msg, part
