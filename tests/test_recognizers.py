"""The model layer's plumbing: recognizers per input kind, the registry, multi-stage
backbones, necks and their auxiliary losses, frozen-parameter masks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import model_fixtures
from vidjax import models
from vidjax.models import registry
from vidjax.models.recognizers import IMAGENET_MEAN, IMAGENET_STD


class _Conv3D(nn.Module):
  """Records the input it sees; a 3x3x3 conv so the output depends on frame order."""

  @nn.compact
  def __call__(self, x, train=False):
    self.sow("intermediates", "input", x)
    return nn.Conv(4, (3, 3, 3), padding="SAME", name="conv")(x)   # [B, T, H, W, 4]


class _PoolHead(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, num_segments, train=False):
    return nn.Dense(self.num_classes, name="fc")(x.mean(axis=(1, 2, 3)))


class _AuxNeck(nn.Module):
  """Passes the last stage on; sows a loss that depends on every stage it gets."""

  @nn.compact
  def __call__(self, features, num_segments, train=False):
    self.sow("losses", "aux", sum(jnp.mean(f ** 2) for f in features))
    return features[-1]


@pytest.fixture(scope="module", autouse=True)
def _test_parts():
  registry.register("backbone", "_test_conv3d", lambda: ml_collections.ConfigDict(
      dict(name="_test_conv3d")))(lambda cfg, dtype, **hooks: _Conv3D())
  registry.register("head", "_test_pool", lambda: ml_collections.ConfigDict(
      dict(name="_test_pool")))(lambda cfg, model_cfg, dtype: _PoolHead(model_cfg.num_classes))
  registry.register("neck", "_test_aux", lambda: ml_collections.ConfigDict(
      dict(name="_test_aux")))(lambda cfg, model_cfg, dtype: _AuxNeck())
  yield
  for kind, name in (("backbone", "_test_conv3d"), ("head", "_test_pool"), ("neck", "_test_aux")):
    del registry._REGISTRY[kind][name]


def _clips(b=2, t=4, size=8):
  return np.random.RandomState(0).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def test_recognizer3d_gives_the_backbone_normalised_clips_as_they_are():
  cfg = ml_collections.ConfigDict(dict(name="recognizer3d", num_classes=5,
                                       backbone=dict(name="_test_conv3d"),
                                       head=dict(name="_test_pool")))
  model = models.build_model(cfg)
  clips = _clips()
  variables = model_fixtures.host_variables(model, clips)
  logits, state = model.apply(variables, clips, mutable=["intermediates"])
  seen = state["intermediates"]["backbone"]["input"][0]
  expected = (clips.astype(np.float32) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
  assert seen.shape == clips.shape
  np.testing.assert_allclose(seen, expected, rtol=1e-6, atol=1e-6)
  assert logits.shape == (2, 5)
  # Frame order reaches the backbone: reversing time changes the logits.
  assert not np.allclose(logits, model.apply(variables, clips[:, ::-1]))


@pytest.mark.slow
def test_multi_stage_backbone_neck_and_aux_loss():
  cfg = models.default_config("recognizer", "recognizer2d")
  cfg.update(num_classes=3)
  cfg.backbone.update(depth=18, out_stages=(3, 4))
  cfg.neck = ml_collections.ConfigDict(dict(name="_test_aux"))
  model = models.build_model(cfg)
  clips = _clips(1, 2, 64)
  variables = model_fixtures.host_variables(model, clips)
  variables = {k: variables[k] for k in ("params", "batch_stats")}
  backbone = model.backbone.clone(parent=None)
  x = jnp.zeros((2, 64, 64, 3))
  stage3, stage4 = backbone.apply({k: v["backbone"] for k, v in variables.items()}, x,
                                  num_segments=2)
  assert stage3.shape == (2, 4, 4, 256) and stage4.shape == (2, 2, 2, 512)
  logits, state = model.apply(variables, clips, mutable=["losses"])
  assert logits.shape == (1, 3)
  (aux,) = state["losses"]["neck"]["aux"]
  assert float(aux) > 0


def test_registry_resolves_every_named_part_and_reports_bad_ones():
  cfg = models.default_config("recognizer", "recognizer2d")
  cfg.backbone.out_stages = (5,)
  with pytest.raises(ValueError, match="out_stages=.5,.: stages are 1..4"):
    models.build_model(cfg)
  cfg = ml_collections.ConfigDict(dict(name="recognizer2d", neck=dict(name="_test_aux", k=1)))
  with pytest.raises(ValueError, match=r"unknown field model.neck.k; accepted fields of "
                                       r"model.neck \(_test_aux\): name"):
    models.resolve_model_config(cfg)
  cfg = ml_collections.ConfigDict(dict(name="recognizer2d", head=dict(name="tcp")))
  resolved = models.resolve_model_config(cfg)
  assert resolved.head.dim == 128 and resolved.neck.name == "" and resolved.backbone.depth == 50


def test_frozen_mask_applies_each_parts_rule():
  cfg = models.default_config("recognizer", "recognizer2d")
  cfg.backbone.update(depth=18, frozen_stages=1)
  model = models.build_model(cfg)
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 2, 32, 32, 3), jnp.uint8))["params"]
  mask = models.frozen_param_mask(cfg, params)
  assert mask["backbone"]["conv1"]["kernel"] and mask["backbone"]["layer1_1"]["bn2"]["scale"]
  assert not mask["backbone"]["layer2_0"]["conv1"]["kernel"]
  assert not any(jax.tree.leaves(mask["head"]))
