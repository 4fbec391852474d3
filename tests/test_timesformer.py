"""TimeSformer (models/backbones/timesformer.py, heads/timesformer.py): ViT-B/16's
upstream layout for the three attention types by name and shape, strict conversion
errors, which attention types see the frames' order, the clip-size check, one train step
of the smoke model and the recipe. Logit parity: test_parity.py (timesformer_divst,
timesformer_jointst, timesformer_spaceonly)."""

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import converters
from conftest import ROOT, load_config
from vidjax import models
from vidjax.train import optim, steps

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import mmaction2 as ref  # noqa: E402  pylint: disable=g-import-not-at-top

VARIANTS = ("", "jointst", "spaceonly")
_TIMESFORMER_NO_DECAY = (r"cls_token$", r"pos_embed$", r"time_embed$")


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep="/")


def _upstream_layout(config) -> dict:
  """The reference's state_dict for `config` as zero-cost arrays of its shapes (meta
  tensors: names and shapes only, no weights drawn)."""
  with torch.device("meta"):
    meta = ref.timesformer_recognizer(config).state_dict()
  return {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in meta.items()}


@pytest.mark.parametrize("variant,entries,count", [
    ("", 249, 121_566_352), ("jointst", 153, 86_112_400), ("spaceonly", 152, 86_106_256)])
def test_vit_b16_upstream_layout_converts_strictly(variant, entries, count):
  """ViT-B/16 on 8 frames of 224 px: the upstream state_dict (section 16: 249 entries
  for divided attention) converts strictly onto our variables, traced with
  jax.eval_shape, name for name and shape for shape; 400 classes."""
  config = load_config("timesformer", variant)
  sd = _upstream_layout(config)
  assert len(sd) == entries
  expected = _flat(converters.expected_variables(config.model))
  variables = _flat(converters.convert("mmaction2", sd, config))
  assert {k: v.shape for k, v in variables.items()} == {k: v.shape for k, v in expected.items()}
  assert len(variables) == entries and sum(int(np.prod(v.shape)) for v in
                                           variables.values()) == count
  assert variables["params/backbone/pos_embed"].shape == (1, 197, 768)
  assert variables["params/backbone/patch_embed/projection/kernel"].shape == (16, 16, 3, 768)
  assert variables["params/backbone/layers_11/attentions_0/attn/in_proj/kernel"].shape == (
      768, 2304)
  assert variables["params/head/fc/kernel"].shape == (768, 400)
  assert ("params/backbone/time_embed" in variables) == (variant != "spaceonly")
  assert ("params/backbone/layers_0/attentions_0/temporal_fc/kernel" in variables) == (
      variant == "")


def test_conversion_is_strict():
  """A 1.x checkpoint (`state_dict` with the data preprocessor's mean and std 127.5)
  converts; a missing tensor, a tensor of another attention type and a time embedding
  for other frame counts are each named, and nothing converts."""
  small = {"model.backbone.num_layers": 1, "model.backbone.embed_dims": 64,
           "model.backbone.num_heads": 4}
  config = load_config("timesformer", "smoke", **small)
  sd = _upstream_layout(config)
  pixels = np.full((3, 1, 1, 1), 127.5, np.float32)
  converters.convert("mmaction2", {"state_dict": {**sd, "data_preprocessor.mean": pixels,
                                                  "data_preprocessor.std": pixels},
                                   "meta": {"mmaction2_version": "1.2.0"}}, config)
  missing = {k: v for k, v in sd.items() if "temporal_fc.weight" not in k}
  with pytest.raises(converters.ConversionError,
                     match=r"missing model variables:\n.*layers_0/attentions_0/temporal_fc/"
                           r"kernel \(64, 64\)"):
    converters.convert("mmaction2", missing, config)
  joint = load_config("timesformer", "jointst_smoke", **small)
  with pytest.raises(converters.ConversionError) as error:
    converters.convert("mmaction2", sd, joint)
  problems = error.value.problems()
  assert any("temporal_fc.weight" in e for e in problems["unused checkpoint keys"])
  assert any("norms_0/scale" in e for e in problems["missing model variables"])
  sd["backbone.time_embed"] = np.zeros((1, 16, 64), np.float32)
  with pytest.raises(converters.ConversionError, match=r"backbone.time_embed \(1, 16, 64\)"
                     r".*model expects \(1, 8, 64\)"):
    converters.convert("mmaction2", sd, config)


# One-off programs: XLA's backend optimisations are most of their compile time.
_QUICK = {"xla_backend_optimization_level": 0}


def _random_variables(module, clip) -> dict:
  """Random normal variables of `module`'s shapes (no init program to compile): a time
  embedding and temporal_fc as after training."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), clip)
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape).astype(np.float32)), shapes)


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_space_only_attention_is_blind_to_the_frame_order(variant):
  """Reversing the frames changes the logits of divided and joint attention; space-only
  attention averages per-frame sequences and has no time embedding, so it gives the same
  logits."""
  config = load_config("timesformer", f"{variant}_smoke" if variant else "smoke")
  module = models.build_model(config.model)
  clip = np.random.RandomState(0).randint(0, 256, (1, 8, 32, 32, 3)).astype(np.uint8)
  both = np.concatenate([clip, clip[:, ::-1]])   # one batch: one program, one run
  apply = jax.jit(lambda v, x: module.apply(v, x, train=False), compiler_options=_QUICK)
  logits = apply(_random_variables(module, both), both)
  assert float(jnp.abs(logits).max()) > 0.1
  diff = float(jnp.abs(logits[0] - logits[1]).max())
  if variant == "spaceonly":
    assert diff < 1e-5
  else:
    assert diff > 1e-3


def test_clips_of_another_size_are_one_clear_error():
  config = load_config("timesformer", "smoke")
  module = models.build_model(config.model)
  with pytest.raises(ValueError, match=r"num_frames=8 x img_size=32 .*\(1, 4, 32, 32, 3\)"):
    module.init(jax.random.key(0), jnp.zeros((1, 4, 32, 32, 3), jnp.uint8))
  config.model.backbone.attention_type = "divided"
  with pytest.raises(ValueError, match="attention_type='divided'"):
    models.build_model(config.model)


@pytest.mark.slow
def test_smoke_trains_one_step():
  """Upstream's init (temporal_fc and the time embedding at 0) and one optimiser step of
  the smoke model (the trainer's train_step, stochastic depth on): every parameter moves
  but the temporal attentions' norm and MHA, whose gradient passes through the zero
  temporal_fc, as upstream's first step (without weight decay, which would move them)."""
  config = load_config("timesformer", "smoke", **{"optim.weight_decay": 0.0,
                                                  "model.backbone.num_layers": 1})
  model = models.build_model(config.model)
  rng = np.random.default_rng(1)
  clips = rng.integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8)
  labels = rng.integers(0, config.model.num_classes, (2,)).astype(np.int32)
  params = jax.jit(model.init, compiler_options=_QUICK)(jax.random.key(0), clips)["params"]
  before = _flat(params)
  assert not np.any(before["backbone/time_embed"])
  tx, schedule = optim.build_optimizer(config.optim, params, 4)
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                           opt_state=tx.init(params))
  step = jax.jit(lambda s, b, r: steps.train_step(s, b, r, model=model, tx=tx,
                                                   schedule=schedule),
                 compiler_options=_QUICK)
  new, metrics, finite = step(state, {"clip": clips, "label": labels}, jax.random.key(2))
  assert bool(finite) and float(metrics.compute()["loss"]) > 0
  after = _flat(new.params)
  still = re.compile(r"^backbone/layers_\d+/attentions_0/(norm|attn)/")
  for path in before:
    if path.endswith("attentions_0/temporal_fc/kernel"):
      assert not np.any(before[path]), path
    assert np.array_equal(before[path], after[path]) == bool(still.match(path)), path
  assert sum(bool(still.match(p)) for p in before) == 6


def test_recipe():
  """MMAction2's divST recipe: 8 frames 32 apart, mean / std 127.5, Nesterov SGD with lr
  0.005 for batch 64, steps at epochs 5 and 10 of 15; weight decay on everything but the
  three embeddings; test3 is 1 clip x ThreeCrop(224) after short side 224; the model
  variants change the attention type only."""
  config = load_config("timesformer")
  assert (config.data.num_frames, config.data.frame_interval) == (8, 32)
  assert (config.model.backbone.num_frames, config.model.backbone.img_size) == (8, 224)
  assert config.model.pixel_mean == (127.5,) * 3 == config.model.pixel_std
  assert (config.optim.name, config.optim.lr, config.optim.nesterov, config.batch_size) == (
      "sgd", 0.005, True, 64)
  assert (config.optim.epochs, config.optim.lr_steps, config.optim.clip_grad_norm) == (
      15.0, (5, 10), 40.0)
  params = _flat(converters.expected_variables(config.model)["params"])
  no_decay = {p for p in params if any(re.search(r, p) for r in config.optim.no_decay)}
  assert no_decay == {"backbone/cls_token", "backbone/pos_embed", "backbone/time_embed"}
  assert tuple(config.optim.no_decay) == _TIMESFORMER_NO_DECAY
  test3 = load_config("timesformer", "test3")
  assert (test3.data.test_clips, test3.data.test_crop, test3.data.test_scale,
          test3.data.image_size, test3.eval.num_views) == (1, "three_crop", 224, 224, 3)
  for variant, kind in (("jointst", "joint_space_time"), ("spaceonly", "space_only")):
    other = load_config("timesformer", variant)
    assert other.model.backbone.attention_type == kind
    other.model.backbone.attention_type = config.model.backbone.attention_type
    assert other.to_dict() == config.to_dict()
  demo, smoke = load_config("timesformer", "demo"), load_config("timesformer", "smoke")
  assert (demo.model.backbone.num_frames, demo.model.backbone.img_size) == (8, 32)
  assert demo.model.to_dict() == smoke.model.to_dict()
  assert (demo.optim.name, demo.optim.epochs, demo.data.train_examples) == ("adamw", 4.0, 1920)
  assert set(_TIMESFORMER_NO_DECAY) <= set(demo.optim.no_decay)
