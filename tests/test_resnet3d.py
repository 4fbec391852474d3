"""The 3D family: ResNet3d / C2D and I3DHead (models/backbones/resnet3d.py, heads/i3d.py),
the 3D layers (models/layers3d.py), the MMAction2 recipes (recipes/mmaction2.py) and the
'mmaction2' converter on real files. Parity with the PyTorch reference: test_parity.py."""

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

import converters
from conftest import DEFAULT_EMITTERS, ROOT, load_config
from converters.common import ConversionError
from converters.torch_io import load_torch_state_dict
from vidjax import models
from vidjax.models import layers3d
from vidjax.models.backbones.resnet3d import Block3dSpec, fit_pattern
from vidjax.models.registry import build_backbone

torch = pytest.importorskip("torch")

# Parameters (400 classes) of the MMAction2 1.2.0 model-zoo metafiles, as published
# (rounded to the digits given there).
PUBLISHED = {
    ("i3d_r50", ""): 28.0e6, ("i3d_r50", "heavy"): 33.0e6,
    ("i3d_r50", "nl_embedded_gaussian"): 35.4e6, ("i3d_r50", "nl_gaussian"): 31.7e6,
    ("i3d_r50", "nl_dot_product"): 35.4e6, ("slowonly_r50", ""): 32.45e6,
    ("slowonly_r50", "r101_8x8"): 60.36e6, ("slowonly_r50", "nl"): 39.81e6,
    ("c2d_r50", ""): 24.3e6, ("c2d_r50", "nopool"): 24.3e6,
}


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.slow
def test_parameter_counts_match_the_model_zoo():
  for (name, variant), published in PUBLISHED.items():
    params = converters.expected_variables(load_config(name, variant).model)["params"]
    digits = 2 if published in (32.45e6, 60.36e6, 39.81e6) else 1
    assert round(_count(params) / 1e6, digits) == published / 1e6, (name, variant)


def _shapes(name, variant, frames, size=224):
  """(layer1 output, layer4 output) shapes of the config's backbone on one clip."""
  m = models.resolve_model_config(load_config(name, variant).model)
  with m.backbone.unlocked():
    m.backbone.out_stages = (1, 4)
  backbone = build_backbone(m.backbone, jnp.float32)
  x = jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.float32)
  out = jax.eval_shape(lambda v, a: backbone.apply(v, a), jax.eval_shape(
      backbone.init, jax.random.key(0), x), x)
  return tuple(o.shape for o in out)


@pytest.mark.slow
def test_feature_maps_follow_the_spec():
  """reference/mmaction2_cost.md 1-3, 9: I3D 32x224 -> conv1 16x112 -> pool 8x56 -> pool2
  4x56 -> layer4 4x7x7; the heavy stem keeps T; SlowOnly never strides time; C2D's
  unpadded pool gives 55 px."""
  assert _shapes("i3d_r50", "", 32) == ((1, 4, 56, 56, 256), (1, 4, 7, 7, 2048))
  assert _shapes("i3d_r50", "heavy", 32) == ((1, 16, 56, 56, 256), (1, 16, 7, 7, 2048))
  assert _shapes("slowonly_r50", "", 4) == ((1, 4, 56, 56, 256), (1, 4, 7, 7, 2048))
  assert _shapes("c2d_r50", "", 8) == ((1, 4, 55, 55, 256), (1, 4, 7, 7, 2048))
  assert _shapes("i3d_r50", "smoke", 8, 32) == ((1, 1, 8, 8, 64), (1, 1, 1, 1, 512))


def _torch_conv(x, kernel, stride, padding, groups):
  y = torch.nn.functional.conv3d(torch.from_numpy(x.transpose(0, 4, 1, 2, 3)),
                                 torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2)), None,
                                 stride, padding, 1, groups)
  return y.numpy().transpose(0, 2, 3, 4, 1)


@pytest.mark.parametrize("kernel,stride,padding,groups", [
    ((1, 3, 3), (2, 2, 2), (0, 1, 1), 1),   # time folded into the batch, strided frames
    ((1, 1, 1), (1, 2, 2), (0, 0, 0), 1),   # a matrix product on strided taps
    ((1, 3, 3), (1, 1, 1), (0, 1, 1), 2),   # grouped
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), 1),   # XLA's 3D convolution
    ((5, 7, 7), (2, 2, 2), (2, 3, 3), 1),
    ((3, 3, 3), (2, 1, 1), (1, 1, 1), 4),
])
def test_conv3d_is_torch_conv3d(kernel, stride, padding, groups):
  rng = np.random.default_rng(sum(kernel) + groups)
  x = rng.standard_normal((2, 5, 9, 10, 8)).astype(np.float32)
  w = rng.standard_normal(kernel + (8 // groups, 12)).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(layers3d.conv3d(jnp.asarray(x), jnp.asarray(w), stride, padding, groups))
  theirs = _torch_conv(x.astype(np.float64), w.astype(np.float64), stride, padding, groups)
  # Sums of up to 5*7*7*8 unit terms: float32 rounding relative to the output scale.
  np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())


def test_pools_are_torch_max_pool3d():
  x = np.random.default_rng(0).standard_normal((2, 7, 11, 12, 3)).astype(np.float32)
  tx = torch.from_numpy(x.transpose(0, 4, 1, 2, 3))

  def theirs(kernel, stride, padding):
    y = torch.nn.functional.max_pool3d(tx, kernel, stride, padding)
    return y.numpy().transpose(0, 2, 3, 4, 1)

  for stride, pad in (((2, 2, 2), 1), ((1, 2, 2), 0), ((1, 1, 1), 1)):
    np.testing.assert_array_equal(layers3d.max_pool3d_spatial(jnp.asarray(x), 3, stride, pad),
                                  theirs((1, 3, 3), stride, (0, pad, pad)))
  np.testing.assert_array_equal(layers3d.max_pool3d_temporal(jnp.asarray(x)),
                                theirs((2, 1, 1), (2, 1, 1), 0))   # T 7 -> 3
  with pytest.raises(ValueError, match="with_pool2.*at least 2 frames, got 1"):
    layers3d.max_pool3d_temporal(jnp.asarray(x[:, :1]), "model.backbone.with_pool2")


def _smoke_model(name="i3d_r50", variant="smoke", **fields):
  """The smoke model of a config at 1/8 of its widths (8 base channels), with `fields`."""
  config = load_config(name, variant)
  config.model.backbone.base_channels = 8
  for key, value in fields.items():
    *parents, leaf = key.split(".")
    node = config.model
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config.model


def _clips(t=8, size=32, b=2, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (b, t, size, size, 3)).astype(np.uint8)


@pytest.mark.parametrize("field,value,message", [
    ("backbone.inflate", (1, 1, 1), r"model.backbone.inflate=\(1, 1, 1\) needs one entry "
                                    r"per stage \(4\)"),
    ("backbone.inflate", ((1, 1, 1), 1, 1, 1), r"model.backbone.inflate: stage 1 entry "
                                               r"\(1, 1, 1\) must be 0, 1 or one 0/1 flag "
                                               r"per block \(2 blocks\)"),
    ("backbone.non_local", (0, (0, 2), 0, 0), r"model.backbone.non_local: stage 2"),
    ("backbone.inflate_style", "3x3x1", r"inflate_style='3x3x1'; expected one of"),
    ("backbone.non_local_cfg.mode", "cosine", r"non_local_cfg.mode='cosine'"),
    ("backbone.depth", 42, r"depth=42 is not one of \[18, 34, 50, 101, 152\]"),
])
def test_bad_backbone_fields_are_one_clear_error(field, value, message):
  model = _smoke_model(**{field: value})
  with pytest.raises(ValueError, match=message):
    models.build_model(model).init(jax.random.key(0), _clips(b=1))


def test_fit_pattern_cuts_or_repeats_per_block_flags():
  i3d = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
  assert fit_pattern(i3d, (2, 2, 2, 2)) == ((1, 1), (1, 0), (1, 0), (0, 1))
  assert fit_pattern(i3d, (3, 4, 23, 3))[2] == (1, 0) * 11 + (1,)
  assert fit_pattern((0, 0, 1, 1), (2, 2, 2, 2)) == (0, 0, 1, 1)


def _variables(module, clips, seed=0):
  """Random variables of the right shapes without compiling `init` (its random
  initialisers cost tens of seconds of XLA compilation on a small CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.key(0), clips)
  variables = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(s.dtype), shapes)
  variables["batch_stats"] = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(
      s.dtype), shapes["batch_stats"])
  return variables


def _train_step(model_config, clips):
  """(module, variables, gradients of a loss, batch_stats updates) of one jitted step."""
  module = models.build_model(model_config)
  variables = _variables(module, clips)

  def loss(params):
    logits, updates = module.apply({**variables, "params": params}, clips, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
    return jnp.sum(logits ** 2), updates

  # XLA's default emitters: test_remat compares two programs to float32 rounding.
  grads, updates = jax.jit(jax.grad(loss, has_aux=True),
                           compiler_options=DEFAULT_EMITTERS)(variables["params"])
  return module, variables, grads, updates


def _flat(tree):
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
def test_frozen_stages_and_partial_bn():
  clips = _clips()
  model = _smoke_model("i3d_r50", "nl_gaussian_smoke", **{"backbone.frozen_stages": 1})
  _, variables, grads, updates = _train_step(model, clips)
  g, stats = _flat(grads["backbone"]), _flat(variables["batch_stats"]["backbone"])
  new_stats = _flat(updates["batch_stats"]["backbone"])
  for path, grad in g.items():
    frozen = path.startswith(("conv1/", "layer1_"))
    assert (float(jnp.abs(grad).max()) == 0.0) == frozen, path
  for path, value in stats.items():
    moved = not np.array_equal(value, new_stats[path])
    assert moved != path.startswith(("conv1/", "layer1_")), path
  mask = _flat(models.frozen_param_mask(model, variables["params"])["backbone"])
  assert {p for p, m in mask.items() if m} == {p for p in mask
                                               if p.startswith(("conv1/", "layer1_"))}

  # partial BN: every trunk BN affine but the stem's is frozen; non-local BNs train.
  model = _smoke_model("i3d_r50", "nl_gaussian_smoke", **{"backbone.partial_bn": True})
  mask = _flat(models.frozen_param_mask(model, variables["params"]))
  assert not mask["backbone/conv1/bn/scale"] and mask["backbone/layer1_0/conv2/bn/bias"]
  assert mask["backbone/layer2_0/downsample/bn/scale"]
  assert not mask["backbone/layer2_1/non_local_block/out_bn/scale"]
  assert not mask["backbone/layer1_0/conv1/conv/kernel"]


@pytest.mark.slow
def test_norm_eval_keeps_every_batchnorm_in_eval_mode():
  """Every BN (the non-local blocks' too) keeps its statistics, and the train-mode output
  is eval mode's."""
  clips = _clips()
  model = _smoke_model("i3d_r50", "nl_gaussian_smoke",
                       **{"backbone.norm_eval": True, "head.dropout_rate": 0.0})
  module = models.build_model(model)
  variables = _variables(module, clips)
  train = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))
  logits, updates = train(variables, clips)
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"],
               variables["batch_stats"])
  np.testing.assert_allclose(logits, jax.jit(module.apply)(variables, clips), atol=1e-5)
  model.backbone.norm_eval = False   # the check can fail: batch statistics move
  moved = jax.jit(lambda v, x: models.build_model(model).apply(
      v, x, train=True, mutable=["batch_stats"]))(variables, clips)[0]
  assert not np.allclose(moved, logits, atol=1e-3)


def test_zero_init_residual():
  """SlowOnly trains from scratch with MMAction2's zero_init_residual: the last BN gain
  of each block starts at 0; I3D's recipe turns it off."""
  so = models.resolve_model_config(load_config("slowonly_r50").model).backbone
  i3d = models.resolve_model_config(load_config("i3d_r50").model).backbone
  assert so.zero_init_residual and not i3d.zero_init_residual
  trunk = build_backbone(so, jnp.float32)
  assert trunk.zero_init_residual
  for cls, last, zero in ((trunk.bottleneck, "conv3", True), (trunk.basic_block, "conv2", False)):
    spec = Block3dSpec(stage=2, index=1, planes=4, out_channels=16 if last == "conv3" else 4)
    block = cls(spec=spec, zero_init_residual=zero)
    params = jax.jit(block.init, static_argnums=(2, 3))(
        jax.random.key(0), jnp.ones((1, 2, 4, 4, spec.out_channels)), False, False)["params"]
    assert float(jnp.abs(params[last]["bn"]["scale"]).max()) == (0.0 if zero else 1.0)
    assert float(params["conv1"]["bn"]["scale"].min()) == 1.0


@pytest.mark.slow
def test_remat_gives_the_same_gradients():
  clips = _clips(t=4)
  model = _smoke_model("slowonly_r50")
  _, v1, g1, _ = _train_step(model, clips)
  model.backbone.remat = True
  _, v2, g2, _ = _train_step(model, clips)
  jax.tree.map(np.testing.assert_array_equal, v1, v2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)


def test_head_pools_time_and_space():
  """I3DHead's logits are fc(mean over T, H, W): a clip's features in any order give the
  same logits, and dropout acts in training only."""
  head = models.registry.lookup("head", "i3d", "model.head").builder(
      models.default_config("head", "i3d"), ml_collections.ConfigDict(dict(num_classes=5)),
      jnp.float32)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4, 16)), jnp.float32)
  v = head.init(jax.random.key(0), x)
  logits = head.apply(v, x)
  kernel, bias = v["params"]["fc"]["kernel"], v["params"]["fc"]["bias"]
  np.testing.assert_allclose(logits, x.mean(axis=(1, 2, 3)) @ kernel + bias, atol=1e-6)
  np.testing.assert_allclose(head.apply(v, x[:, ::-1, :, ::-1]), logits, atol=1e-6)
  train = head.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train, logits)


def test_recipe_variants():
  with pytest.raises(ValueError, match=r"'r101' is published as 8x8 only: use 'r101_8x8'"):
    load_config("slowonly_r50", "r101")
  with pytest.raises(ValueError, match=r"unknown variant part 'nl'"):
    load_config("i3d_r50", "nl_embedded")   # the mode is part of the part
  assert load_config("i3d_r50", "test30_nl_gaussian") == load_config("i3d_r50",
                                                                     "nl_gaussian,test30")
  nl = load_config("slowonly_r50", "nl_8x8")
  assert (nl.data.num_frames, nl.data.frame_interval) == (8, 8)
  assert nl.model.backbone.non_local_cfg.use_scale and nl.optim.lr_steps == (100, 140)
  nopool = load_config("c2d_r50", "nopool_test30")
  assert (nopool.model.name, nopool.eval.fusion, nopool.data.image_size,
          nopool.data.test_scale, nopool.eval.num_views) == (
              "recognizer2d", "mean_logits", 224, 224, 30)
  for name in ("c2d_r50", "i3d_r50", "slowonly_r50"):
    config = load_config(name)
    assert (config.data.sampler, config.data.test_sampling, config.optim.no_decay,
            config.optim.clip_grad_norm) == ("dense", "mmaction2_3d", (), 40.0), name


def test_demo_variants_run_forward():
  for name in ("c2d_r50", "i3d_r50", "slowonly_r50"):
    config = load_config(name, "demo")
    shape = (1, config.data.num_frames, config.data.image_size, config.data.image_size, 3)
    module = models.build_model(config.model)
    out = jax.eval_shape(lambda x: module.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct(shape, jnp.uint8))
    assert out.shape == (1, 6), name


def _upstream_state_dict(name, variant, clip):
  sys.path.insert(0, f"{ROOT}/tests")
  from torch_references import mmaction2  # pylint: disable=import-outside-toplevel
  config = load_config(name, variant)
  return config, mmaction2.recognizer(config, clip, 0).state_dict()


def test_converter_reads_an_mmaction2_checkpoint(tmp_path):
  """A training checkpoint as MMAction2 saves it, through the CLI's reader (the CLI
  itself: tests/test_converters.py, tests/test_converter_errors.py)."""
  clip = _clips(size=64)
  config, sd = _upstream_state_dict("i3d_r50", "nl_dot_product_smoke", clip)
  path = tmp_path / "i3d.pth"
  torch.save({"meta": {"mmaction2_version": "0.24.1", "epoch": 3}, "state_dict": sd}, path)
  loaded = load_torch_state_dict(str(path))
  expected = converters.convert("mmaction2", sd, config)
  jax.tree.map(np.testing.assert_array_equal, converters.convert("mmaction2", loaded, config),
               expected)
  # The same file for the C2D config: the mismatch is named, nothing converted.
  with pytest.raises(ConversionError, match="unused checkpoint keys"):
    converters.convert("mmaction2", loaded, load_config("c2d_r50", "smoke"))


def test_strict_conversion_of_kernels_and_keys():
  clip = _clips(size=64)
  config, sd = _upstream_state_dict("c2d_r50", "smoke", clip)
  assert sd["backbone.conv1.conv.weight"].ndim == 4   # MMAction2's 2D ResNet kernels
  variables = converters.convert("mmaction2", sd, config)
  assert variables["params"]["backbone"]["conv1"]["conv"]["kernel"].shape == (1, 7, 7, 3, 64)
  # A 2D kernel is not inflated silently for a 3D trunk (SlowOnly-R18 has C2D's shapes
  # in layer1 and layer2).
  so = load_config("slowonly_r50", "smoke")
  with pytest.raises(ConversionError) as e:
    converters.convert("mmaction2", sd, so)
  mismatches = e.value.problems()["shape mismatches"]
  assert any(m.startswith("backbone.conv1.conv.weight (64, 3, 7, 7)") for m in mismatches)
  extra = {**sd, "backbone.layer1.0.conv9.conv.weight": sd["backbone.conv1.conv.weight"]}
  with pytest.raises(ConversionError, match=r"backbone.layer1.0.conv9.conv.weight"):
    converters.convert("mmaction2", extra, config)


