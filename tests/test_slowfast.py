"""SlowFast (models/backbones/slowfast.py, heads/slowfast.py, configs/slowfast_r50.py):
each variant's pathway frame counts and lateral shapes, MMAction2's parameter counts, the
R101 structure against the upstream layout, the head's order, one training step of the
smoke model, and the errors. Numerical parity with the PyTorch reference: test_parity.py
(rows slowfast_*)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

import converters
from conftest import load_config
from converters.common import ConversionError
from vidjax import models
from vidjax.models.backbones.slowfast import temporal_nearest
from vidjax.train import optim, steps

torch = pytest.importorskip("torch")
from torch_references import mmaction2 as reference  # noqa: E402

# Parameters with 400 classes in MMAction2's model-zoo metafile (0.x, exact; the 1.x
# tables round them to 34.5M, 34.6M and 62.9M).
PUBLISHED = {"": 34_479_288, "8x8": 34_565_560, "r101_8x8": 62_912_312}


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _trace(variant, frames, size, **overrides):
  """(variables, intermediates) shapes of the config's model on one clip (no compute)."""
  model = models.build_model(load_config("slowfast_r50", variant, **overrides).model)
  x = jax.ShapeDtypeStruct((1, frames, size, size, 3), jnp.uint8)
  _, variables = jax.eval_shape(lambda c: model.init_with_output(
      jax.random.key(0), c, capture_intermediates=True), x)
  flat = traverse_util.flatten_dict(variables.pop("intermediates"))
  return variables, {"/".join(k): v[0] for k, v in flat.items()}


@pytest.mark.parametrize("variant,frames,size,slow_t,fuse_k,laterals,widths", [
    # R50 at 224 px: the slow pathway sees T / tau frames; each lateral conv turns the
    # fast features into slow ones of 2 / beta of the slow width (spec section 4).
    ("", 32, 224, 4, 5, (16, 64, 128, 256), (80, 320, 640, 1280)),
    ("8x8", 32, 224, 8, 7, (16, 64, 128, 256), (80, 320, 640, 1280)),
    # ResNet3d-18 pathways: stage inputs 64, 64, 128, 256.
    ("smoke", 16, 32, 2, 5, (16, 16, 32, 64), (80, 80, 160, 320)),
])
def test_pathway_frames_and_lateral_shapes(variant, frames, size, slow_t, fuse_k, laterals,
                                           widths):
  variables, out = _trace(variant, frames, size)
  expansion = 4 if widths[0] != widths[1] else 1
  last = 2048 // (4 // expansion)
  slow, fast = out["backbone/__call__"]
  assert slow.shape == (1, slow_t, size // 32, size // 32, last)
  assert fast.shape == (1, frames, size // 32, size // 32, last // 8)
  params = variables["params"]["backbone"]["slow_path"]
  spatial = (size // 4, size // 4, size // 8, size // 16)
  for s, (name, c) in enumerate(zip(
      ("conv1_lateral", "layer1_lateral", "layer2_lateral", "layer3_lateral"), laterals,
      strict=True)):
    assert out[f"backbone/slow_path/{name}/__call__"].shape == (
        1, slow_t, spatial[s], spatial[s], c), name
    assert params[name]["conv"]["kernel"].shape == (fuse_k, 1, 1, c // 2, c), name
    # MMAction2's lateral_inplanes: the first block of stage s + 1 takes the widened input.
    assert params[f"layer{s + 1}_0"]["conv1"]["conv"]["kernel"].shape[3] == widths[s]
  assert set(variables["params"]["head"]["fc"]["kernel"].shape) >= {last + last // 8}
  if variant in PUBLISHED:
    assert _count(variables["params"]) == PUBLISHED[variant]


@pytest.mark.slow
def test_r101_8x8_converts_strictly_from_the_upstream_layout():
  """Names and shapes of the full-depth model: the reference built from the spec in the
  upstream layout (1254 entries: two ResNet3d-101 of 624, 4 lateral convs, fc_cls)
  converts strictly, to MMAction2's parameter count."""
  config = load_config("slowfast_r50", "r101_8x8")
  m = models.resolve_model_config(config.model)
  ref = reference.Recognizer3D(reference.SlowFast(m.backbone),
                               reference.SlowFastHead(2048 + 256, m.num_classes))
  state_dict = ref.state_dict()
  assert len(state_dict) == 1254
  assert state_dict["backbone.slow_path.layer3.22.conv1.conv.weight"].shape == (256, 1024, 3, 1, 1)
  variables = converters.convert("mmaction2", state_dict, config)
  assert _count(variables["params"]) == PUBLISHED["r101_8x8"]


def test_conversion_is_strict_about_the_laterals():
  """A checkpoint with fusion kernel 7 (the 8x8 models) does not fill a fusion-kernel-5
  model (4x16): each lateral conv is one shape mismatch; a lateral BN the model lacks is
  an unused key."""
  fk7 = load_config("slowfast_r50", "smoke", **{"model.backbone.slow_pathway.fusion_kernel": 7})
  b = models.resolve_model_config(fk7.model).backbone
  state_dict = reference.SlowFastHead(512 + 64, 6).state_dict()
  state_dict = {**{f"backbone.{k}": v for k, v in reference.SlowFast(b).state_dict().items()},
                **{f"cls_head.{k}": v for k, v in state_dict.items()}}
  converters.convert("mmaction2", state_dict, fk7)
  with pytest.raises(ConversionError) as e:
    converters.convert("mmaction2", state_dict, load_config("slowfast_r50", "smoke"))
  assert sorted(p.split()[0] for p in e.value.problems()["shape mismatches"]) == [
      f"backbone.slow_path.{n}_lateral.conv.weight" for n in ("conv1", "layer1", "layer2",
                                                               "layer3")]
  extra = {**state_dict, "backbone.slow_path.layer2_lateral.bn.weight": torch.ones(32)}
  with pytest.raises(ConversionError, match=r"backbone.slow_path.layer2_lateral.bn.weight"):
    converters.convert("mmaction2", extra, fk7)


def test_slow_frames_are_torch_nearest_resize():
  """Spec 4 and pitfall 13: the slow pathway's frames are every tau-th from frame 0, as
  PyTorch's nearest interpolation by 1 / tau picks them (T // tau of them)."""
  x = np.arange(37, dtype=np.float32).reshape(1, 37, 1, 1, 1)
  for t in (8, 16, 32, 12, 37):
    for rate in (1, 2, 4, 8):
      theirs = torch.nn.functional.interpolate(
          torch.from_numpy(x[:, :t, :, :, 0].reshape(1, 1, t, 1, 1)), mode="nearest",
          scale_factor=(1.0 / rate, 1, 1)).numpy().reshape(-1)
      ours = np.asarray(temporal_nearest(jnp.asarray(x[:, :t]), rate, "slow")).reshape(-1)
      np.testing.assert_array_equal(ours, theirs)


def test_head_concatenates_fast_then_slow():
  """Spec pitfall 1: logits = fc([mean(fast), mean(slow)]), dropout in training only."""
  head = models.registry.lookup("head", "slowfast", "model.head").builder(
      models.default_config("head", "slowfast"),
      ml_collections.ConfigDict(dict(num_classes=5)), jnp.float32)
  rng = np.random.default_rng(0)
  slow = jnp.asarray(rng.standard_normal((2, 2, 3, 3, 16)), jnp.float32)
  fast = jnp.asarray(rng.standard_normal((2, 8, 3, 3, 4)), jnp.float32)
  v = head.init(jax.random.key(0), (slow, fast))
  kernel, bias = v["params"]["fc"]["kernel"], v["params"]["fc"]["bias"]
  assert kernel.shape == (20, 5)
  pooled = jnp.concatenate([fast.mean(axis=(1, 2, 3)), slow.mean(axis=(1, 2, 3))], -1)
  np.testing.assert_allclose(head.apply(v, (slow, fast)), pooled @ kernel + bias, atol=1e-6)
  train = head.apply(v, (slow, fast), train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(train, head.apply(v, (slow, fast)))
  with pytest.raises(ValueError, match="SlowFastHead expects \\(slow, fast\\) features"):
    head.apply(v, slow)


def _random_variables(shapes, seed=0):
  """Random variables of the right shapes without compiling `init`."""
  rng = np.random.default_rng(seed)
  variables = jax.tree.map(lambda s: rng.normal(0.0, 0.1, s.shape).astype(s.dtype), shapes)
  variables["batch_stats"] = jax.tree.map(
      lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), shapes["batch_stats"])
  return variables


@pytest.mark.slow
def test_smoke_trains_one_step():
  """One optimiser step of the smoke model (the trainer's train_step) with the slow
  pathway's stem and layer1 frozen: every other parameter of both pathways moves, the
  first lateral conv too (upstream never freezes it), layer1's does not."""
  config = load_config("slowfast_r50", "smoke",
                       **{"model.backbone.slow_pathway.frozen_stages": 1})
  model = models.build_model(config.model)
  size = config.data.image_size
  rng = np.random.default_rng(1)
  clips = rng.integers(0, 256, (2, 8, size, size, 3)).astype(np.uint8)
  labels = rng.integers(0, config.model.num_classes, (2,)).astype(np.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(clips))
  variables = _random_variables(shapes)
  frozen = models.frozen_param_mask(config.model, variables["params"])
  tx, schedule = optim.build_optimizer(config.optim, variables["params"], 4, frozen)
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           opt_state=tx.init(variables["params"]))
  # XLA's backend optimisations are most of this one-off program's compile (two trunks,
  # forward and backward); the step computes the same without them.
  step = jax.jit(lambda s, b, r: steps.train_step(s, b, r, model=model, tx=tx,
                                                   schedule=schedule),
                 compiler_options={"xla_backend_optimization_level": 0})
  new, metrics, finite = step(state, {"clip": clips, "label": labels}, jax.random.key(2))
  assert bool(finite) and float(metrics.compute()["loss"]) > 0
  def flat(tree):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}

  before, after = flat(variables["params"]), flat(new.params)
  frozen_paths = {p for p, f in flat(frozen).items() if f}
  assert frozen_paths == {p for p in before if p.startswith(
      ("backbone/slow_path/conv1/", "backbone/slow_path/layer1_"))}
  for path in before:
    moved = not np.array_equal(before[path], after[path])
    assert moved != (path in frozen_paths), path
  stats_before, stats_after = flat(variables["batch_stats"]), flat(new.batch_stats)
  for path in stats_before:
    moved = not np.array_equal(stats_before[path], stats_after[path])
    assert moved != path.startswith(("backbone/slow_path/conv1/",
                                     "backbone/slow_path/layer1_")), path


@pytest.mark.parametrize("variant,frames,overrides,message", [
    ("smoke", 4, {}, r"the slow pathway takes every 8-th frame and needs at least 8 "
                     r"frames, got 4"),
    ("smoke", 12, {}, r"lateral after the stems: fast features \(12, 8, 8\).*slow pathway "
                      r"has \(1, 8, 8\); feed a frame count that is a multiple of "
                      r"model.backbone.resample_rate"),
    ("smoke", 16, {"model.backbone.fast_pathway.base_channels": 16},
     r"the fast pathway gives 16 channels, the slow pathway's lateral conv takes 8"),
    ("smoke", 16, {"model.backbone.slow_pathway.depth": 42},
     r"model.backbone.slow_pathway.depth=42 is not one of"),
    ("smoke", 16, {"model.backbone.fast_pathway.inflate": (1, 1, 1)},
     r"model.backbone.fast_pathway.inflate=\(1, 1, 1\) needs one entry per stage"),
    ("smoke", 16, {"model.backbone.speed_ratio": 16},
     r"resample_rate=8, speed_ratio=16 .* must be >= 1 with resample_rate >= speed_ratio"),
])
def test_bad_input_is_one_clear_error(variant, frames, overrides, message):
  with pytest.raises(ValueError, match=message):
    _trace(variant, frames, 32, **overrides)


def test_recipe():
  """MMAction2's recipe: 32x2x1 data for every SlowFast, the sampling part sets the
  pathways' rates; R101 is published as 8x8 only."""
  base, fast8 = load_config("slowfast_r50"), load_config("slowfast_r50", "8x8_test30")
  for config in (base, fast8):
    assert (config.data.num_frames, config.data.frame_interval, config.data.sampler,
            config.data.test_sampling) == (32, 2, "dense", "mmaction2_3d")
  b = base.model.backbone
  assert (b.resample_rate, b.speed_ratio, b.channel_ratio, b.slow_pathway.fusion_kernel) == (
      8, 8, 8, 5)
  b = fast8.model.backbone
  assert (b.resample_rate, b.speed_ratio, b.slow_pathway.fusion_kernel) == (4, 4, 7)
  assert (fast8.eval.num_views, fast8.data.test_crop) == (30, "three_crop")
  assert (base.optim.name, base.optim.lr, base.batch_size, base.optim.epochs,
          base.optim.warmup_epochs, base.optim.clip_grad_norm) == ("sgd", 0.1, 64, 256.0,
                                                                  34.0, 40.0)
  assert load_config("slowfast_r50", "4x16") == base
  with pytest.raises(ValueError, match=r"'r101' is published as 8x8 only: use 'r101_8x8'"):
    load_config("slowfast_r50", "r101")
  smoke = models.resolve_model_config(load_config("slowfast_r50", "smoke").model).backbone
  assert (smoke.slow_pathway.depth, smoke.fast_pathway.depth) == (18, 18)
  demo = load_config("slowfast_r50", "demo")
  assert (demo.data.num_frames, demo.data.source_frames, demo.model.num_classes) == (16, 16, 6)
  _, out = _trace("demo", 16, demo.data.image_size)
  assert out["__call__"].shape == (1, 6)
  assert out["backbone/__call__"][0].shape[1] == 2   # the slow pathway's frames
