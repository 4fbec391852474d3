"""Models: shapes, registry, train mode, freezing semantics, hook slots, layers."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

import model_fixtures
from conftest import DEFAULT_EMITTERS
from vidjax.models import build_model, default_config, known
from vidjax.models.backbones.resnet import ResNet, resnet_defaults, resnet_frozen_rule
from vidjax.models.hooks import BlockInfo
from vidjax.models.layers import BatchNorm, conv2d, max_pool2d, normalize_pixels

KEY = jax.random.key(0)


def _tsn_config(depth=18, num_classes=5, **fields):
  cfg = default_config("recognizer", "recognizer2d")
  cfg.num_classes = num_classes
  cfg.backbone.depth = depth
  for k, v in fields.items():
    (cfg.head if k in cfg.head else cfg)[k] = v
  return cfg


def is_frozen_param(path, frozen_stages=-1, partial_bn=False):
  cfg = resnet_defaults()
  cfg.update(frozen_stages=frozen_stages, partial_bn=partial_bn)
  return resnet_frozen_rule(tuple(path), cfg)


def _clips(b=2, t=3, size=64, seed=0):
  rs = np.random.RandomState(seed)
  return jnp.asarray(rs.randint(0, 256, (b, t, size, size, 3)), jnp.uint8)


def _random_variables(module, *args, seed=0, **kwargs):
  return jax.tree.map(jnp.asarray, model_fixtures.host_variables(module, *args, seed=seed,
                                                                 **kwargs))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# torchvision parameter counts with the 1000-class fc.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                      152: 60_192_808}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_shapes_and_param_counts_per_depth(depth):
  model = build_model(_tsn_config(depth, num_classes=1000))
  clips = jax.ShapeDtypeStruct((2, 3, 64, 64, 3), jnp.uint8)
  variables = jax.eval_shape(functools.partial(model.init, train=False), KEY, clips)
  assert _count(variables["params"]) == TORCHVISION_PARAMS[depth]
  logits = jax.eval_shape(functools.partial(model.apply, train=False), variables, clips)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32

  trunk = ResNet(depth=depth)
  frames = jax.ShapeDtypeStruct((6, 64, 64, 3), jnp.float32)
  v = jax.eval_shape(functools.partial(trunk.init, num_segments=3), KEY, frames)
  out = jax.eval_shape(functools.partial(trunk.apply, num_segments=3), v, frames)
  assert out.shape == (6, 2, 2, 512 if depth < 50 else 2048)


def test_tsn_r50_param_count_matches_tsm():
  model = build_model(_tsn_config(50, num_classes=400))
  v = jax.eval_shape(functools.partial(model.init, train=False), KEY,
                     jax.ShapeDtypeStruct((1, 2, 64, 64, 3), jnp.uint8))
  assert _count(v["params"]) == 24_327_632  # reference/tsm_gc.md 1.5
  names = set(v["params"]["backbone"]["layer1_0"])
  assert names == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample_conv",
                   "downsample_bn"}
  assert "downsample_conv" not in v["params"]["backbone"]["layer1_1"]


@pytest.mark.parametrize("strides,size,expected", [
    ((1, 2, 2, 2), 64, 2), ((1, 2, 2, 1), 64, 4), ((1, 1, 1, 1), 64, 16),
    ((1, 2, 2, 2), 65, 3),  # floor arithmetic of PyTorch: 65 -> 33 -> 17 -> 17 -> 9 -> 5 -> 3
])
def test_strides_change_output_size(strides, size, expected):
  trunk = ResNet(depth=50, strides=strides)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  v = jax.eval_shape(trunk.init, KEY, x)
  assert jax.eval_shape(trunk.apply, v, x).shape == (1, expected, expected, 2048)
  # layer4's first block keeps its downsample branch (channels change) even at stride 1.
  assert "downsample_conv" in v["params"]["layer4_0"]


def test_registry_errors():
  with pytest.raises(ValueError, match=r"unknown recognizer.*'nope'.*recognizer2d"):
    build_model(ml_collections.ConfigDict(dict(name="nope")))
  cfg = _tsn_config()
  cfg.head.dropout_rat = 0.3
  with pytest.raises(ValueError) as info:
    build_model(cfg)
  assert "model.head.dropout_rat" in str(info.value) and "dropout_rate" in str(info.value)
  cfg = _tsn_config()
  cfg.head.name = "nohead"
  with pytest.raises(ValueError, match="unknown head.*nohead.*known heads: .*tcp, timesformer, trn, tsn"):
    build_model(cfg)
  cfg = _tsn_config()
  cfg.neck.name = "noneck"
  with pytest.raises(ValueError, match="unknown neck.*noneck"):
    build_model(cfg)
  cfg = _tsn_config()
  cfg.backbone.dept = 50
  cfg.backbone.bn_epss = 1e-3
  with pytest.raises(ValueError) as info:
    build_model(cfg)
  msg = str(info.value)
  assert "model.backbone.dept" in msg and "model.backbone.bn_epss" in msg and "bn_momentum" in msg
  cfg = _tsn_config()
  cfg.backbone.name = "resnext"
  with pytest.raises(ValueError, match="unknown backbone.*resnext.*resnet"):
    build_model(cfg)
  cfg = _tsn_config(depth=20)
  with pytest.raises(ValueError, match="depth=20"):
    build_model(cfg)
  assert "recognizer2d" in known("recognizer") and "tsn" in known("head")


def test_missing_fields_take_defaults():
  cfg = ml_collections.ConfigDict(dict(name="recognizer2d", num_classes=3,
                                       backbone=ml_collections.ConfigDict(dict(depth=18))))
  model = build_model(cfg)
  assert (model.head.num_classes == 3 and model.backbone.depth == 18
          and model.head.dropout_rate == 0.5 and model.neck is None)


@pytest.fixture(scope="module")
def r18_tsn():
  model = build_model(_tsn_config(18, dropout_rate=0.5))
  clips = _clips(2, 2, 32)
  return model, _random_variables(model, clips, train=False), clips


@pytest.mark.slow
def test_train_mode_updates_stats_and_uses_dropout(r18_tsn):
  model, variables, clips = r18_tsn

  @jax.jit
  def train_apply(v, x, key):
    return model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

  y1, upd = train_apply(variables, clips, jax.random.key(1))
  y1b, _ = train_apply(variables, clips, jax.random.key(1))
  y2, _ = train_apply(variables, clips, jax.random.key(2))
  assert y1.shape == (2, 5)
  np.testing.assert_array_equal(y1, y1b)
  assert np.abs(np.asarray(y1 - y2)).max() > 0  # dropout masks differ
  old = traverse_util.flatten_dict(variables["batch_stats"])
  new = traverse_util.flatten_dict(upd["batch_stats"])
  assert old.keys() == new.keys()
  assert all(np.abs(np.asarray(new[k] - old[k])).max() > 0 for k in old)
  with pytest.raises(Exception, match="dropout"):
    model.apply(variables, clips, train=True, mutable=["batch_stats"])
  e1 = model.apply(variables, clips, train=False)
  np.testing.assert_array_equal(e1, model.apply(variables, clips, train=False))


def _grads_and_stats(trunk, x):
  variables = _random_variables(trunk, x)

  @jax.jit
  def step(params, stats):
    def loss(p):
      y, upd = trunk.apply({"params": p, "batch_stats": stats}, x, train=True, num_segments=2,
                           mutable=["batch_stats"])
      return jnp.mean(jnp.square(y)), upd
    (_, upd), g = jax.value_and_grad(loss, has_aux=True)(params)
    return g, upd["batch_stats"]

  grads, new_stats = step(variables["params"], variables["batch_stats"])
  old = traverse_util.flatten_dict(variables["batch_stats"])
  changed = {k[:-1] for k, v in traverse_util.flatten_dict(new_stats).items()
             if np.abs(np.asarray(v - old[k])).max() > 0}
  has_grad = {k for k, v in traverse_util.flatten_dict(grads).items()
              if np.abs(np.asarray(v)).max() > 0}
  bn_modules = {k[:-1] for k in old}
  return variables, bn_modules, changed, has_grad


def _frames():
  return jax.random.normal(jax.random.key(3), (4, 32, 32, 3))


@pytest.mark.slow
def test_frozen_stages():
  _, bns, changed, has_grad = _grads_and_stats(ResNet(depth=18, frozen_stages=1), _frames())
  frozen = lambda path: path[0] in ("conv1", "bn1") or path[0].startswith("layer1_")
  assert changed == {m for m in bns if not frozen(m)}
  assert has_grad and all(not frozen(k) for k in has_grad)
  assert ("layer2_0", "conv1", "kernel") in has_grad and ("layer2_0", "bn1", "scale") in has_grad


@pytest.mark.slow
def test_norm_eval():
  trunk = ResNet(depth=18, norm_eval=True)
  x = _frames()
  variables, _, changed, has_grad = _grads_and_stats(trunk, x)
  assert not changed
  assert ("conv1", "kernel") in has_grad and ("layer4_1", "bn2", "scale") in has_grad
  # Every BN uses running statistics, so train mode computes the eval output.
  y_train, _ = trunk.apply(variables, x, train=True, num_segments=2, mutable=["batch_stats"])
  np.testing.assert_allclose(y_train, trunk.apply(variables, x, num_segments=2), atol=1e-6)


@pytest.mark.slow
def test_partial_bn():
  variables, bns, changed, has_grad = _grads_and_stats(ResNet(depth=18, partial_bn=True),
                                                       _frames())
  assert changed == {("bn1",)}
  bn_grads = {k[:-1] for k in has_grad if k[-1] in ("scale", "bias")}
  assert bn_grads == {("bn1",)}
  assert ("layer3_0", "conv2", "kernel") in has_grad
  params = traverse_util.flatten_dict(variables["params"])
  assert {k for k in params if not is_frozen_param(k, partial_bn=True)} == has_grad


def test_is_frozen_param_matches_zero_gradients():
  _, _, _, has_grad = _grads_and_stats(ResNet(depth=18, frozen_stages=2), _frames())
  trunk = ResNet(depth=18)
  v = jax.eval_shape(trunk.init, KEY, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  params = traverse_util.flatten_dict(v["params"])
  assert {k for k in params if not is_frozen_param(k, frozen_stages=2)} == has_grad


class _Gate(nn.Module):
  """A hook with a parameter; checks the contract (shape, num_segments, train flag)."""
  channels: int

  @nn.compact
  def __call__(self, x, *, num_segments, train):
    assert x.shape[-1] == self.channels and x.shape[0] % num_segments == 0
    assert isinstance(train, bool)
    return x * self.param("alpha", nn.initializers.ones, (self.channels,))


def test_hook_slots_named_and_placed():
  calls = []

  def temporal(info: BlockInfo):
    calls.append(info)
    return _Gate(info.in_channels) if info.index == 0 else None

  trunk = ResNet(depth=50, temporal_module=temporal,
                 mid_module=lambda info: _Gate(info.width) if info.stage == 2 else None,
                 post_module=lambda info: _Gate(info.out_channels) if info.block_id == 15 else None)
  x = jax.ShapeDtypeStruct((4, 64, 64, 3), jnp.float32)
  v = jax.eval_shape(functools.partial(trunk.init, num_segments=2), KEY, x)
  p = v["params"]
  assert p["layer1_0"]["temporal"]["alpha"].shape == (64,)
  assert p["layer3_0"]["temporal"]["alpha"].shape == (512,)
  assert "temporal" not in p["layer3_1"]
  assert all(p[f"layer2_{i}"]["mid"]["alpha"].shape == (128,) for i in range(4))
  assert "mid" not in p["layer1_0"]
  assert p["layer4_2"]["post"]["alpha"].shape == (2048,)
  assert sorted({c.block_id for c in calls}) == list(range(16))
  assert calls[0].stage_sizes == (3, 4, 6, 3)


def test_identity_hooks_do_not_change_outputs():
  x = _frames()
  plain = ResNet(depth=18)
  hooked = ResNet(depth=18, temporal_module=lambda i: _Gate(i.in_channels),
                  mid_module=lambda i: _Gate(i.width), post_module=lambda i: _Gate(i.out_channels))
  v = _random_variables(hooked, x, num_segments=2)
  stripped = jax.tree.map(lambda a: a, v)
  for name, block in stripped["params"].items():
    for hook in ("temporal", "mid", "post"):
      if hook in block:
        block.pop(hook)
        v["params"][name][hook]["alpha"] = jnp.ones_like(v["params"][name][hook]["alpha"])
  # XLA's default emitters fuse both programs alike (conftest.DEFAULT_EMITTERS).
  jit = functools.partial(jax.jit, compiler_options=DEFAULT_EMITTERS)
  y_plain = jit(functools.partial(plain.apply, num_segments=2))(stripped, x)
  y_hooked = jit(functools.partial(hooked.apply, num_segments=2))(v, x)
  np.testing.assert_allclose(y_plain, y_hooked, rtol=1e-6, atol=1e-6)


def test_normalize_pixels():
  rs = np.random.RandomState(0)
  u8 = rs.randint(0, 256, (2, 4, 4, 3)).astype(np.uint8)
  mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
  a = normalize_pixels(jnp.asarray(u8), mean, std)
  b = normalize_pixels(jnp.asarray(u8, jnp.float32), mean, std)
  np.testing.assert_allclose(a, (u8 - np.array(mean)) / np.array(std), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(a, b)
  raw = normalize_pixels(jnp.asarray(u8), None, None)
  assert raw.dtype == jnp.float32
  np.testing.assert_array_equal(raw, u8.astype(np.float32))
  with pytest.raises(ValueError):
    normalize_pixels(jnp.asarray(u8), mean, None)


def test_max_pool_pads_with_minus_inf():
  x = -jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)  # all negative: zero padding would win
  y = max_pool2d(x, 3, 2, 1)
  np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], [[-1, -2], [-5, -6]])


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1),
                                                   ((3, 2), (2, 3), (1, 0))])
def test_max_pool_gradient_goes_to_pytorchs_first_maximum(kernel, stride, padding):
  """Values and gradients equal torch's max_pool2d, with many tied maxima (rounded
  inputs), where the gradient must go to the first maximum of each window."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  x = np.round(rng.standard_normal((2, 9, 11, 3)) * 1.5).astype(np.float32)
  xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
  yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding)
  g = rng.standard_normal(yt.shape).astype(np.float32)
  yt.backward(torch.tensor(g))
  y, vjp = jax.vjp(lambda v: max_pool2d(v, kernel, stride, padding), jnp.asarray(x))
  (dx,) = vjp(jnp.asarray(g.transpose(0, 2, 3, 1)))
  np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
  np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-6)


@pytest.mark.parametrize("channels,kernel,stride,padding,dilation", [
    (3, 7, 2, 3, 1),     # ResNet's stem
    (2, 3, (1, 2), (2, 1), 2),
    (5, 3, 2, 1, 1)])
def test_conv_gradients_match_pytorch(channels, kernel, stride, padding, dilation):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 13, 11, channels)).astype(np.float32)
  conv = conv2d(4, kernel, stride, padding, dilation)
  params = conv.init(KEY, jnp.asarray(x))["params"]
  y, vjp = jax.vjp(lambda v, p: conv.apply({"params": p}, v), jnp.asarray(x), params)
  g = rng.standard_normal(y.shape).astype(np.float32)
  dx, dparams = vjp(jnp.asarray(g))
  xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
  wt = torch.tensor(np.asarray(params["kernel"]).transpose(3, 2, 0, 1), requires_grad=True)
  yt = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
  yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(dparams["kernel"], wt.grad.numpy().transpose(2, 3, 1, 0), atol=1e-4)


def test_stem_kernel_gradient_is_a_patch_product_on_cpu_only():
  """The RGB stem's kernel gradient lowers to a matrix product of gathered patches for
  CPU and to XLA's convolution for GPU and TPU, where the patches would cost memory."""
  conv = conv2d(8, 7, 2, 3, 1)
  x = jnp.ones((2, 16, 16, 3))
  params = conv.init(KEY, x)["params"]
  grad = jax.jit(jax.grad(lambda p, v: conv.apply({"params": p}, v).sum(), argnums=(0, 1)))
  ops = {}
  for platform in ("cpu", "cuda", "tpu"):
    text = jax.export.export(grad, platforms=(platform,))(params, x).mlir_module()
    ops[platform] = (text.count("stablehlo.convolution"), text.count("stablehlo.dot_general"))
  # The input gradient is a convolution everywhere; the kernel's, on CPU only, a product.
  assert ops["cpu"] == (1, 1) and ops["cuda"] == ops["tpu"] == (2, 0), ops


def test_batchnorm_pytorch_running_update():
  x = jax.random.normal(jax.random.key(1), (4, 3, 2, 5)) * 3 + 1
  bn = BatchNorm(momentum=0.9, epsilon=1e-5)
  v = bn.init(KEY, x)
  y, upd = bn.apply(v, x, train=True, mutable=["batch_stats"])
  xs = np.asarray(x).reshape(-1, 5)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * xs.mean(0), rtol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * xs.var(0, ddof=1), rtol=1e-5)
  np.testing.assert_allclose(y, ((xs - xs.mean(0)) / np.sqrt(xs.var(0) + 1e-5)).reshape(x.shape),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 5, 6, 4), (2, 3, 4, 5, 6)])
def test_batchnorm_training_gradients_match_pytorch(shape):
  """BatchNorm + ReLU in training mode against torch's
  BatchNorm2d/3d: output, input/scale/bias gradients and the running update."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  c = shape[-1]
  x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
  g = rng.standard_normal(shape).astype(np.float32)
  scale = (rng.random(c) + 0.5).astype(np.float32)
  bias = rng.standard_normal(c).astype(np.float32)
  bn = BatchNorm(momentum=0.9, epsilon=1e-5)
  stats = {"mean": jnp.zeros(c), "var": jnp.ones(c)}

  def forward(x, params):
    y, upd = bn.apply({"params": params, "batch_stats": stats}, x, train=True,
                      mutable=["batch_stats"])
    return jax.nn.relu(y), upd

  (y, upd), vjp = jax.vjp(forward, jnp.asarray(x), {"scale": scale, "bias": bias})
  dx, dparams = vjp((jnp.asarray(g), jax.tree.map(jnp.zeros_like, upd)))
  tbn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm3d)(c)
  with torch.no_grad():
    tbn.weight.copy_(torch.tensor(scale))
    tbn.bias.copy_(torch.tensor(bias))
  to_torch = lambda a: torch.tensor(np.moveaxis(a, -1, 1))
  from_torch = lambda t: np.moveaxis(t.detach().numpy(), 1, -1)
  xt = to_torch(x).requires_grad_()
  yt = torch.relu(tbn(xt))
  yt.backward(to_torch(g))
  np.testing.assert_allclose(y, from_torch(yt), atol=1e-5)
  np.testing.assert_allclose(dx, from_torch(xt.grad), atol=1e-5)
  np.testing.assert_allclose(dparams["scale"], tbn.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dparams["bias"], tbn.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], tbn.running_mean.numpy(), rtol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["var"], tbn.running_var.numpy(), rtol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = build_model(_tsn_config(18, dtype="bfloat16"))
  clips = jax.ShapeDtypeStruct((1, 2, 64, 64, 3), jnp.uint8)
  v = jax.eval_shape(functools.partial(model.init, train=False), KEY, clips)
  assert {x.dtype for x in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(functools.partial(model.apply, train=False), v, clips).dtype == jnp.float32
