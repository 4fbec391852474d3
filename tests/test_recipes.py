"""The recipe tables shared by every config (vidjax/recipes): one data set table, one test
protocol table, one variant grammar, recipes as changes on the full defaults, and config
docstrings that name their part files."""

import dataclasses
import os
import re

import pytest
from vidjax import run_config

from conftest import ROOT, load_config
from vidjax.data import transforms
from vidjax.models import registry, resolve_model_config
from vidjax.recipes import datasets, protocols, set_fields
from vidjax.train import optim

CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py"))

# (config, variant) naming each data set, across the families.
_BY_DATASET = {
    "sthv1": [("tsm_r50", "sthv1"), ("tsm_r101", "sthv1"), ("gc_tsn_r50", ""),
              ("gc_tsm_r50", "sthv1"), ("ecal_l_tsn_r50", "r16"), ("ecal_t_tsm_r50", "")],
    "sthv2": [("tsm_r50", "sthv2_16f"), ("gc_tsn_r50", "sthv2_test")],
    "diving48": [("tsm_r50", "diving48"), ("gc_tsm_r50", "diving48")],
    "k400": [("tsn_r50", ""), ("tsm_r50", ""), ("nl_tsm_r50", ""), ("tsm_mobilenetv2", ""),
             ("gc_tsn_r50", "k400"), ("tcp_tsn_r50", ""), ("tcp_tea_r50", "16f"),
             ("tcp_tsn_r152", ""), ("i3d_r50", ""), ("c2d_r50", "nopool"),
             ("slowonly_r50", "r101_8x8")],
    "hmdb51": [("tsm_r50", "hmdb51"), ("tcp_tsn_r50", "hmdb"), ("tcp_tea_r50", "hmdb")],
    "minik200": [("tcp_tsn_r50", "minik200")],
    "ucf101": [("tsm_r50", "ucf101")],
    "jester": [("tsm_r101", "jester")],
}
_BY_DATASET["k400_audio"] = [("audio_tsn_r18", "")]

# Variants with a test part and the protocol each must get.
_TESTS = [
    ("tsm_r50", "test1", "test1"), ("tsm_r50", "sthv2_16f_test2x3", "test2x3"),
    ("tsm_r50", "dense,test30", "test30"), ("tsm_r101", "sthv2_test2x3", "test2x3"),
    ("nl_tsm_r50", "test30", "test30"), ("tsm_mobilenetv2", "test1", "test1"),
    ("gc_tsn_r50", "test", "gc_test2"), ("gc_tsm_r50", "sthv2_16f_test", "gc_test2"),
    ("gc_tsn_r50", "k400_test", "gc_test10"), ("ecal_l_tsn_r50", "k400_16f_test3", "test30"),
    ("gc_tsm_r50", "diving48_test", "test1"), ("tcp_tsn_r50", "test30", "tcp_test30"),
    ("tcp_tea_r50", "test30_16f", "tcp_test30"), ("tcp_tsn_r152", "16f_test30", "tcp_test30"),
    ("i3d_r50", "nl_dot_product_test30", "mmaction2_test30"),
    ("slowonly_r50", "8x8_test1", "mmaction2_val"),
    ("c2d_r50", "nopool_test30", "mmaction2_c2d_test30"),
]
# C3D (UCF101, 112 px) and X3D-S (182 px) have their own protocols; X3D-M MMAction2's.
_TESTS += [
    ("c3d", "", "mmaction2_c3d_val"), ("c3d", "test10", "mmaction2_c3d_test10"),
    ("x3d", "s", "mmaction2_x3d_s_val"), ("x3d", "s_test30", "mmaction2_x3d_s_test30"),
    ("x3d", "test30", "mmaction2_test30"),
]


def test_every_family_reads_a_data_set_from_the_one_table():
  """Data prepared for one family runs the others: every config naming a data set gets
  the table's root, lists and frame naming (a family may only choose to flip)."""
  assert set(_BY_DATASET) == set(datasets.DATASETS)
  for key, uses in _BY_DATASET.items():
    entry = dataclasses.asdict(datasets.DATASETS[key])
    del entry["flip"]
    for name, variant in uses:
      config = load_config(name, variant)
      got = {k: config.data[k] for k in entry}
      assert got == entry, (key, name, variant)
      assert config.model.num_classes == entry["num_classes"]
  tsm, gc = load_config("tsm_r50", "sthv1").data, load_config("gc_tsn_r50", "").data
  assert (tsm.root, tsm.train_list, tsm.eval_list) == (gc.root, gc.train_list, gc.eval_list)
  assert tsm.flip is False and gc.flip is True   # the families' own choice


def test_num_views_is_clips_times_crops():
  for name, p in protocols.PROTOCOLS.items():
    assert p.num_views == p.clips * transforms.num_test_crops(p.crop), name
  used = set()
  for name, variant, protocol in _TESTS:
    config = load_config(name, variant)
    p = protocols.PROTOCOLS[protocol]
    assert (config.data.test_clips, config.data.test_sampling, config.data.test_crop,
            config.data.image_size) == (p.clips, p.sampling, p.crop, p.size), (name, variant)
    assert config.eval.num_views == config.data.test_clips * transforms.num_test_crops(
        config.data.test_crop) == p.num_views
    used.add(protocol)
  assert used == set(protocols.PROTOCOLS)
  # Set only by the protocol table, never by hand.
  for folder in ("configs", "vidjax/recipes"):
    for f in os.listdir(os.path.join(ROOT, folder)):
      if f.endswith(".py") and f != "protocols.py":
        with open(os.path.join(ROOT, folder, f)) as fh:
          assert "num_views =" not in fh.read(), f


@pytest.mark.parametrize("name", CONFIGS)
def test_unknown_variant_part_is_one_clear_error(name):
  with pytest.raises(ValueError) as e:
    load_config(name, "sthv1_bogus" if name.startswith(("tsm_r", "gc_")) else "bogus")
  message = str(e.value)
  assert message.startswith(f"configs/{name}.py: unknown variant part 'bogus'"), message
  assert "accepted parts" in message and "demo | smoke" in message
  with pytest.raises(ValueError, match=f"configs/{name}.py: variant 'smoke_demo' names more "
                     "than one run"):
    load_config(name, "smoke_demo")


def test_variant_grammar_rules():
  # ',' and '_' in any order give one config.
  assert load_config("tsm_r50", "sthv2_16f_test2x3") == load_config("tsm_r50", "test2x3,sthv2,16f")
  assert load_config("gc_tsn_r50", "k400,test3,16f") == load_config("gc_tsn_r50", "k400_16f_test3")
  with pytest.raises(ValueError, match="names more than one data set: 'sthv1' and 'sthv2'"):
    load_config("tsm_r50", "sthv1_sthv2")
  with pytest.raises(ValueError, match="'demo' takes no data set"):
    load_config("tsm_r50", "demo_16f")
  with pytest.raises(ValueError, match="'test3'.*Kinetics"):
    load_config("gc_tsm_r50", "sthv2_test3")
  with pytest.raises(ValueError, match="'dense' is the Kinetics recipe"):
    load_config("tsm_r50", "sthv1_dense")
  with pytest.raises(ValueError, match="8 frames only"):
    load_config("tcp_tsn_r50", "hmdb_16f")
  assert load_config("ecal_l_tsn_r50", "r16_smoke").model.ecal.cdiv == 16   # model parts
  with pytest.raises(KeyError, match="config.optim.lrr"):
    set_fields(load_config("tsn_r50"), {"optim.lrr": 0.1})


def _documented_variants():
  """(config, variant) of every `configs/NAME.py:VARIANT` written in the README or a
  config, and of the README model zoo's `:VARIANT` lists."""
  found = set()
  texts = [os.path.join(ROOT, "README.md")] + [
      os.path.join(ROOT, "configs", f"{n}.py") for n in CONFIGS]
  for path in texts:
    with open(path) as f:
      for line in f:
        for name, variant in re.findall(r"configs/(\w+)\.py:([\w,]+)", line):
          found.add((name, variant))
        zoo = re.match(r"\| .*?\| `configs/(\w+)\.py` \(([^)]*)\)", line)
        if zoo:
          found.update((zoo.group(1), v) for v in re.findall(r"`:(\w+)`", zoo.group(2)))
  return sorted(found - {(n, "VARIANT") for n in CONFIGS + ["NAME"]} - {("tsn_r50", "tiny")})


def test_every_documented_variant_loads():
  variants = _documented_variants()
  assert ("tcp_tsn_r50", "demo") in variants and ("tsm_r50", "dense_test30") in variants
  for name, variant in variants:
    load_config(name, variant)


def _flat_keys(node, prefix=""):
  keys = set()
  for k in node.keys():
    if hasattr(node[k], "keys"):
      keys |= _flat_keys(node[k], f"{prefix}{k}.")
    else:
      keys.add(prefix + k)
  return keys


@pytest.mark.parametrize("name", CONFIGS)
def test_every_default_field_can_be_overridden(name):
  """Recipes are changes on the full defaults, so `--config.X=...` finds every field the
  registry and the optimiser accept."""
  for variant in ("", "smoke"):
    config = load_config(name, variant)
    assert _flat_keys(config.model) == _flat_keys(resolve_model_config(config.model))
    assert set(config.optim.keys()) == set(optim.default_config().keys())


def test_overrides_reach_fields_a_recipe_leaves_at_default():
  overrides, _ = run_config.split_overrides([
      "--config.model.head.dropout_rate=0.8", "--config.model.non_local.mode=gaussian",
      "--config.model.backbone.out_stages=(3,4)", "--config.optim.nesterov=True"])
  config = run_config.load(f"{ROOT}/configs/tsm_r50.py:sthv1", overrides)
  assert config.model.head.dropout_rate == 0.8 and config.model.non_local.mode == "gaussian"
  assert tuple(config.model.backbone.out_stages) == (3, 4) and config.optim.nesterov


@pytest.mark.parametrize("name", CONFIGS)
def test_docstring_names_each_part_file(name):
  """A config's docstring leads from its name to each model part's file in one hop, and
  carries no measurement of our machines (dates, loads: the README holds those)."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  with open(path) as f:
    text = f.read()
  doc = " ".join(text.split('"""')[1].split())
  model = resolve_model_config(load_config(name).model)
  parts = [("recognizer", model.name)]   # CLIP's recognizer holds its towers itself
  parts += [(kind, model[kind].name) for kind in ("backbone", "neck", "head")
            if kind in model and model[kind].name]
  parts += [("temporal", field) for field, _ in registry.temporal_entries()
            if field in model and model[field].enabled]   # recognizer3d has none
  for kind, part in parts:
    module = registry.lookup(kind, part, "model").builder.__module__
    file = module.replace(".", "/") + ".py"
    assert os.path.exists(os.path.join(ROOT, file)), file
    assert f"{part} ({file})" in doc, (name, part, file)
  assert not re.search(_MEASUREMENT, text), name


_MEASUREMENT = r"Measured|measured|\b20\d\d-\d\d-\d\d\b|load ~"


def test_recipes_carry_no_measurement():
  for f in os.listdir(os.path.join(ROOT, "vidjax/recipes")):
    if not f.endswith(".py"):
      continue
    with open(os.path.join(ROOT, "vidjax/recipes", f)) as fh:
      assert not re.search(_MEASUREMENT, fh.read()), f
# MMAction2's 2D models on Something: TIN tests on 1 clip, TANet on twice x ThreeCrop(256).
_TESTS += [("tin_r50", "", "test1"), ("tanet_r50", "test2x3", "mmaction2_sth_test2x3")]
# TimeSformer: MMAction2's val pipeline per epoch, its 1 clip x ThreeCrop(224) test.
_TESTS += [("timesformer", "", "mmaction2_val"),
           ("timesformer", "test3", "mmaction2_timesformer_test3")]
# TRN and TPN-TSM on Something: twice x ThreeCrop(256); TPN-SlowOnly: MMAction2's 3D tests.
_TESTS += [("trn_r50", "test2x3", "mmaction2_sth_test2x3"),
           ("tpn_tsm_r50", "test2x3", "mmaction2_sth_test2x3"),
           ("tpn_tsm_r50", "", "test1"), ("tpn_slowonly_r50", "", "mmaction2_val"),
           ("tpn_slowonly_r50", "test30", "mmaction2_test30")]
