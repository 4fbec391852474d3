"""TCPNet's backbones, pre-activation ResNet and TEA Res2Net-50: rename rules, strict
conversion, train-mode statistics, frozen parameters and float64 agreement with their
PyTorch references (tests/torch_references/tcpnet_backbones.py, upstream key layout).
Float32 parity of the backbones alone and of whole TCP models: tests/test_parity.py."""

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
from conftest import load_config  # noqa: E402
from torch_references import tcpnet_backbones  # noqa: E402
from torch_references.common import nchw as _nchw, random_clip  # noqa: E402

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


def _frozen_rule(name):
  """The registered frozen-parameter rule of backbone `name`, called with field values."""
  rule = lookup("backbone", name, "model.backbone").frozen_rule

  def frozen(path, frozen_stages=-1, partial_bn=False):
    cfg = default_config("backbone", name)
    cfg.update(frozen_stages=frozen_stages, partial_bn=partial_bn)
    return rule(tuple(path), cfg)
  return frozen


def _converted(config, clip, seed, ours):
  """(reference, frames, converted variables) of the backbone of `config` on `clip`."""
  ref = tcpnet_backbones.backbone(config, clip, seed)
  x = tcpnet_backbones.frames(config, clip)
  m = config.model.backbone
  variables = convert_backbone({"module.base_model." + k: v for k, v in ref.state_dict().items()},
                               ours, x, m.name, clip.shape[1])
  return ref, x, variables


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
  """(reference, raw frames, converted variables) for pre-act R50 at 64 px: the reference
  and clip of test_parity.py's preact_r50_backbone row."""
  config = load_config("tcp_tsn_r152", **{"model.backbone.depth": 50})
  return _converted(config, random_clip(2, 1, 64, seed=0), 1, PreActResNet(depth=50))


@pytest.mark.slow
def test_preact50_float64(preact50):
  """The float32 parity (test_parity.py) in float64 on both sides: only round-off may
  remain."""
  ref, x, variables = preact50
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


@pytest.mark.slow
def test_preact_train_mode_updates_stats(preact50):
  _, x, variables = preact50
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
  x = jnp.asarray(random_clip(1, 2, 8, seed=4)[0].astype(np.float32))
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
  """(reference, frames, converted variables) for TEA at T = 8 with two clips: the
  reference and clip of test_parity.py's tea_r50_t8_backbone row."""
  ours = build_backbone(default_config("backbone", "tea_res2net"), jnp.float32)
  return _converted(load_config("tcp_tea_r50"), random_clip(2, 8, 64, seed=8), 9, ours)


@pytest.mark.slow
def test_tea50_t8_counts(tea8):
  ref, _, variables = tea8
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


@pytest.mark.slow
def test_tea_train_mode_updates_stats(tea8):
  _, x, variables = tea8
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


@pytest.mark.slow
def test_strict_conversion_lists_bad_keys(tea8):
  ref, x, _ = tea8
  sd = dict(ref.state_dict())
  sd["layer1.0.me.extra.weight"] = torch.zeros(3)
  del sd["layer2.0.shifts.1.conv.weight"]
  sd["layer3.0.convs.0.weight"] = torch.zeros(104, 104, 1, 1)
  with pytest.raises(ConversionError) as info:
    convert_backbone(sd, TEARes2Net(), x, "tea_res2net", 8)
  msg = str(info.value)
  for part in ("layer1.0.me.extra.weight", "layer2_0/shifts_1/kernel", "layer3.0.convs.0.weight"):
    assert part in msg, part
