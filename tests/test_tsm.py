"""TSM: the shift against its PyTorch reference and a numpy transcription, hook placement,
the 'tsm' converter's strictness and the TSM configs (parity: tests/test_parity.py)."""

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
from conftest import load_config  # noqa: E402
from torch_references import tsm  # noqa: E402
from torch_references.common import random_clip as _clip  # noqa: E402
from torch_references.tsm import ref_shift  # noqa: E402

import converters  # noqa: E402
from vidjax.models import build_model, default_config  # noqa: E402
from vidjax.models.temporal.shift import temporal_shift  # noqa: E402


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


def _r18_reference(clip, num_classes, seed, **overrides):
  """TSM-R18 reference (blockres shift) with `overrides` of configs/nl_tsm_r50.py."""
  config = load_config("nl_tsm_r50", **{"model.num_classes": num_classes,
                                        "model.backbone.depth": 18,
                                        "model.non_local.enabled": False, **overrides})
  return tsm.tsm(config, clip, seed)


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


def test_strict_conversion_lists_every_problem():
  clip = _clip(1, 2, 32, seed=7)
  ref = _r18_reference(clip, 4, seed=7)
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
    nl_ref = _r18_reference(clip, 4, seed=7, **{"model.non_local.enabled": True,
                                                "model.non_local.positions": positions})
    converters.convert("tsm", nl_ref.state_dict(), _config(4, depth=18, shift={}))


# --- configs and the training path ---------------------------------------------------------

def _load_config(name, variant=""):
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


@pytest.mark.slow
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
