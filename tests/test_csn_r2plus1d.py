"""CSN and R(2+1)D (models/backbones/csn.py, r2plus1d.py): the 152-layer CSNs' structure
against the upstream layout, the model zoo's parameter counts, the (2+1)D conv's inner
widths and BN eps values, the BN-frozen variant and the recipes. Logit parity of
ir-CSN-50, ip-CSN and R(2+1)D-34: test_parity.py."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

import converters
from conftest import ROOT, load_config
from converters.common import ConversionError
from vidjax import models
from vidjax.models.backbones.csn import CSNConv2
from vidjax.models.backbones.r2plus1d import ConvModule2plus1d, mid_channels
from vidjax.train import optim

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import mmaction2 as ref  # noqa: E402  pylint: disable=g-import-not-at-top


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _flat(tree):
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


# Parameters with 400 classes, as MMAction2's CSN metafiles give them (0.x: exact).
@pytest.mark.parametrize("variant,published", [("", 29_703_568), ("ip", 33_016_592)])
def test_csn152_upstream_layout_converts_at_full_depth(variant, published):
  """The 152-layer reference's state_dict (upstream names) converts strictly onto our
  variables' names and shapes, and the count is the model zoo's."""
  config = load_config("csn_r152", variant, **{"model.num_classes": 400})
  b = models.resolve_model_config(config.model).backbone
  with torch.device("meta"):   # names and shapes only: no weights drawn
    meta = ref.Recognizer3D(ref.csn_backbone(b), ref.I3DHead(2048, 400)).state_dict()
  sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.items()}
  assert ("backbone.layer3.35.conv2.1.conv.weight" in sd) == (variant == "ip")
  # Strict: every key used, every variable of our init's eval_shape filled, shapes equal.
  variables = converters.convert("mmaction2", sd, config)
  assert _count(variables["params"]) == published
  depthwise = variables["params"]["backbone"]["layer4_2"]["conv2"]["1" if variant else "0"]
  assert depthwise["conv"]["kernel"].shape == (3, 3, 3, 1, 512)


def test_csn50_parameter_count_matches_the_model_zoo():
  """ir-CSN-50 (BN frozen): 13,131,152 with 400 classes (CSN metafile)."""
  config = load_config("csn_r152", "r50", **{"model.num_classes": 400})
  assert _count(converters.expected_variables(config.model)["params"]) == 13_131_152


def test_r2plus1d_mid_channels_and_parameter_count():
  """reference/mmaction2_cost.md 6: stem 83, layer1 3x3 144, the first downsample 54;
  integer floor agrees with upstream's float formula; the model's conv_s / conv_t use it.
  R(2+1)D-34 with 400 classes: the model zoo's 63.8M parameters."""
  assert mid_channels(3, 64, (3, 7, 7)) == 83
  assert mid_channels(64, 64, (3, 3, 3)) == 144
  assert mid_channels(64, 128, (1, 1, 1)) == 54
  for c_in in (3, 16, 64, 100, 256, 512):
    for c_out in (16, 64, 128, 300, 512):
      for k in ((3, 3, 3), (3, 7, 7), (1, 1, 1)):
        assert mid_channels(c_in, c_out, k) == ref.r2plus1d_mid_channels(c_in, c_out, k)
  config = load_config("r2plus1d_r34", **{"model.num_classes": 400})
  params = _flat(converters.expected_variables(config.model)["params"])
  assert round(_count(params) / 1e6, 1) == 63.8
  assert params["backbone/conv1/conv/conv_s/kernel"].shape == (1, 7, 7, 3, 83)
  assert params["backbone/conv1/conv/conv_t/kernel"].shape == (3, 1, 1, 83, 64)
  assert params["backbone/layer1_0/conv1/conv/conv_s/kernel"].shape == (1, 3, 3, 64, 144)
  assert params["backbone/layer2_0/downsample/conv/conv_s/kernel"].shape == (1, 1, 1, 64, 54)
  assert params["backbone/layer2_0/downsample/conv/conv_t/kernel"].shape == (1, 1, 1, 54, 128)
  assert params["backbone/layer4_2/conv2/conv/conv_t/kernel"].shape == (3, 1, 1, 1152, 512)


def _load_torch(torch_module, variables):
  """Our variables into a torch module with the same names (the converter's layouts)."""
  with torch.no_grad():
    for path, value in _flat(variables["params"]).items():
      *mod, leaf = path.split("/")
      m = torch_module.get_submodule(".".join(mod))
      v = np.asarray(value)
      if leaf == "kernel":
        m.weight.copy_(torch.from_numpy(v.transpose(4, 3, 0, 1, 2).copy()))
      else:
        getattr(m, {"scale": "weight", "bias": "bias"}[leaf]).copy_(torch.from_numpy(v))
    for path, value in _flat(variables["batch_stats"]).items():
      *mod, leaf = path.split("/")
      m = torch_module.get_submodule(".".join(mod))
      getattr(m, f"running_{leaf}").copy_(torch.from_numpy(np.asarray(value)))
  return torch_module.eval()


def _compare(ours_module, theirs, x, seed):
  """Random variables with running variances near 1e-4 (where eps 1e-3 vs 1e-5 moves the
  outputs far beyond rounding), ours vs `theirs` loaded with them."""
  rng = np.random.default_rng(seed)
  variables = jax.eval_shape(ours_module.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), variables)
  variables["batch_stats"] = jax.tree.map(
      lambda a: rng.uniform(1e-5, 3e-4, a.shape).astype(np.float32), variables["batch_stats"])
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(ours_module.apply(variables, x))
  with torch.no_grad():
    out = _load_torch(theirs, variables)(torch.from_numpy(np.array(x).transpose(0, 4, 1, 2, 3)))
  theirs_out = out.numpy().transpose(0, 2, 3, 4, 1)
  np.testing.assert_allclose(ours, theirs_out, atol=1e-4 * np.abs(theirs_out).max())
  return variables, ours


def test_conv2plus1d_is_the_reference_with_both_eps():
  """A strided ConvModule2plus1d against the reference's ConvModule with a Conv2plus1d,
  with running variances where eps matters: bn_s at 1e-5, the outer BN at 1e-3."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 5, 9, 9, 6)), jnp.float32)
  ours = ConvModule2plus1d(8, (3, 3, 3), (2, 2, 2), (1, 1, 1))
  theirs = ref.ConvModule(6, 8, 3, 2, 1, eps=1e-3)
  theirs.conv = ref.Conv2plus1d(6, 8, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1e-5)
  variables, out = _compare(ours, theirs, x, 1)
  assert out.shape == (1, 3, 5, 5, 8) and theirs.conv.conv_s.out_channels == mid_channels(
      6, 8, (3, 3, 3))
  swapped = ConvModule2plus1d(8, (3, 3, 3), (2, 2, 2), (1, 1, 1), bn_eps=1e-5, mid_bn_eps=1e-3)
  assert not np.allclose(swapped.apply(variables, x), out, atol=1e-2 * np.abs(out).max())


@pytest.mark.parametrize("mode", ["ir", "ip"])
def test_csn_conv2_is_the_reference(mode):
  """CSN's conv2 sequence (depthwise, strided; ip: 1x1x1 + BN without ReLU first), eps
  1e-3, against the reference's nn.Sequential."""
  x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 5, 8, 8, 6)), jnp.float32)
  ours = CSNConv2(6, (3, 3, 3), (2, 2, 2), (1, 1, 1), mode)
  seq = [ref._depthwise(6, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1e-3)]  # pylint: disable=protected-access
  if mode == "ip":
    seq.insert(0, ref.ConvModule(6, 6, 1, act=False, eps=1e-3))
  _, out = _compare(ours, torch.nn.Sequential(*seq), x, 3)
  assert out.shape == (1, 3, 4, 4, 6) and out.min() == 0.0   # ReLU last


@pytest.mark.slow
def test_bn_frozen_keeps_batchnorm_statistics_and_affines():
  """ir-CSN-50 BN-frozen (`r50`; smoke widths): in train mode every BN keeps its running
  statistics, and the optimiser leaves every BN scale and bias where it was while
  the convolutions move; the default (BN training) freezes nothing."""
  config = load_config("csn_r152", "r50_smoke", **{"model.head.dropout_rate": 0.0})
  assert config.model.backbone.bn_frozen and config.model.backbone.norm_eval
  module = models.build_model(config.model)
  clips = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8)
  rng = np.random.default_rng(1)
  shapes = jax.eval_shape(module.init, jax.random.key(0), clips)
  variables = jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(s.dtype), shapes)
  variables["batch_stats"] = jax.tree.map(
      lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), shapes["batch_stats"])
  train = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"],
                                            rngs={"dropout": jax.random.key(0)}))
  _, updates = train(variables, clips)
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])

  params = variables["params"]
  mask = _flat(models.frozen_param_mask(config.model, params))
  frozen = {p for p, m in mask.items() if m}
  bn_affines = {p for p in mask if p.startswith("backbone/") and p.split("/")[-2] == "bn"}
  assert frozen == bn_affines and "backbone/layer2_0/conv2/0/bn/scale" in frozen
  assert "backbone/conv1/bn/bias" in frozen
  tx, _ = optim.build_optimizer(config.optim, params, 10,
                                frozen=models.frozen_param_mask(config.model, params))
  step = jax.jit(lambda g, p: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))
  new = _flat(step(jax.tree.map(jnp.ones_like, params), params))
  for path, value in _flat(params).items():
    assert np.array_equal(new[path], value) == (path in frozen), path

  default = load_config("csn_r152", "smoke")
  assert not any(jax.tree.leaves(models.frozen_param_mask(default.model, params)))


@pytest.mark.parametrize("field,value,message", [
    ("bn_frozen", True, r"bn_frozen=True needs model.backbone.norm_eval=True"),
    ("bottleneck_mode", "ii", r"bottleneck_mode='ii'; expected one of \('ir', 'ip'\)"),
    ("depth", 34, r"depth=34 is not one of \[50, 101, 152\]"),
])
def test_bad_csn_fields_are_one_clear_error(field, value, message):
  config = load_config("csn_r152", "smoke")
  config.model.backbone[field] = value
  with pytest.raises(ValueError, match=message):
    models.build_model(config.model)


def test_recipes():
  """The model-zoo recipes (vidjax/recipes/mmaction2.py) and the 30-view test."""
  csn = load_config("csn_r152")
  assert (csn.data.num_frames, csn.data.frame_interval, csn.batch_size, csn.optim.lr,
          csn.optim.epochs, csn.optim.schedule, tuple(csn.optim.lr_steps),
          csn.optim.warmup_epochs, csn.optim.warmup_start_factor, csn.optim.weight_decay,
          csn.optim.clip_grad_norm, csn.data.train_crop) == (
              32, 2, 96, 5e-4, 58.0, "step", (32, 48), 16.0, 0.1, 1e-4, 40.0,
              "random_resized")
  b = csn.model.backbone
  assert (b.name, b.depth, b.bottleneck_mode, b.bn_eps, b.norm_eval, b.bn_frozen,
          b.with_pool2, tuple(b.temporal_strides), b.inflate_style) == (
              "csn", 152, "ir", 1e-3, False, False, False, (1, 2, 2, 2), "3x3x3")
  ip = load_config("csn_r152", "ip_test30")
  assert (ip.model.backbone.bottleneck_mode, ip.model.backbone.bn_frozen,
          ip.eval.num_views, ip.data.test_sampling) == ("ip", True, 30, "mmaction2_3d")
  assert load_config("csn_r152", "r50").model.backbone.depth == 50

  r21d = load_config("r2plus1d_r34")
  assert (r21d.data.num_frames, r21d.data.frame_interval, r21d.batch_size, r21d.optim.lr,
          r21d.optim.epochs, r21d.optim.schedule, r21d.optim.warmup_epochs,
          r21d.model.backbone.bn_eps, r21d.model.backbone.mid_bn_eps) == (
              8, 8, 64, 0.01, 180.0, "cosine", 0.0, 1e-3, 1e-5)
  long = load_config("r2plus1d_r34", "32x2_test30")
  assert (long.data.num_frames, long.data.frame_interval, long.eval.num_views) == (32, 2, 30)
  with pytest.raises(ValueError, match=r"unknown variant part 'r50'"):
    load_config("r2plus1d_r34", "r50")


def test_demo_variants_run_forward():
  for name in ("csn_r152", "r2plus1d_r34"):
    config = load_config(name, "demo")
    shape = (1, config.data.num_frames, config.data.image_size, config.data.image_size, 3)
    module = models.build_model(config.model)
    out = jax.eval_shape(lambda x, m=module: m.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct(shape, jnp.uint8))
    assert out.shape == (1, 6), name


def test_ip_checkpoint_does_not_load_into_ir():
  """Strict conversion: an ip-CSN state_dict for an ir config lists the extra conv2.1 and
  the mismatched conv2.0 kernels."""
  config = load_config("csn_r152", "ip_smoke")
  b = models.resolve_model_config(config.model).backbone
  sd = ref.Recognizer3D(ref.csn_backbone(b), ref.I3DHead(512, 6)).state_dict()
  with pytest.raises(ConversionError) as e:
    converters.convert("mmaction2", sd, load_config("csn_r152", "smoke"))
  problems = e.value.problems()
  assert any("layer1.0.conv2.1.conv.weight" in p for p in problems["unused checkpoint keys"])
  assert any(p.startswith("backbone.layer1.0.conv2.0.conv.weight (16, 16, 1, 1, 1)")
             for p in problems["shape mismatches"])
