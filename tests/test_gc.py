"""Group contextualization (GC): the 'gc' converter's strictness on a PyTorch reference's
state_dict, the calibrators' grouping and the GC configs (parity: tests/test_parity.py)."""

import os
import sys

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

torch = pytest.importorskip("torch")
from conftest import load_config  # noqa: E402
from torch_references.gc import RefVideoNet  # noqa: E402

import converters  # noqa: E402
from vidjax.models import build_model, resolve_model_config  # noqa: E402


def _config(name, num_classes=7, **overrides):
  return load_config(name, "", **{"model.num_classes": num_classes, **overrides})


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
