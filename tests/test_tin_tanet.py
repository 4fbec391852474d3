"""TIN and TANet (models/temporal/tin.py, tam.py): the ResNet-50 zoo configs against the
upstream layout by name and shape, the frame count they are built for, the hook slots'
exclusivity, and the recipes. Logit parity: test_parity.py (tin_r18, tanet_r18)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import converters
from conftest import ROOT, load_config
from vidjax import models
from vidjax.models.temporal.tin import fractional_shift

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import mmaction2 as ref  # noqa: E402  pylint: disable=g-import-not-at-top


@pytest.mark.parametrize("name,build,keys", [("tin_r50", ref.tin_recognizer, 448),
                                             ("tanet_r50", ref.tanet_recognizer, 544)])
def test_r50_upstream_layout_converts_strictly(name, build, keys):
  """The full-depth reference's state_dict (upstream names, 174 classes, 8 segments)
  converts strictly onto the zoo config's variables (shapes only, no forward pass)."""
  config = load_config(name)
  with torch.device("meta"):
    meta = build(models.resolve_model_config(config.model)).state_dict()
  assert len(meta) == keys
  sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.items()}
  variables = converters.convert("mmaction2", sd, config)
  assert variables["params"]["head"]["fc"]["kernel"].shape == (2048, 174)


def test_frame_count_is_fixed_by_the_config():
  """TIN's fc1 and TAM's G are built for num_segments frames: other clips are refused
  with one error naming the field."""
  for name, field in (("tin_r50", "tin"), ("tanet_r50", "tam")):
    config = load_config(name, "smoke")
    module = models.build_model(config.model)
    with pytest.raises(ValueError, match=rf"model.{field}.num_segments=4.* 2"):
      jax.eval_shape(lambda m=module: m.init(jax.random.key(0),
                                             jnp.zeros((1, 2, 32, 32, 3), jnp.uint8)))


def test_tin_and_tsm_shift_share_one_slot():
  config = load_config("tin_r50", "smoke")
  config.model.shift.enabled = True
  with pytest.raises(ValueError, match="temporal_module"):
    models.build_model(config.model)


def test_fractional_shift_interpolates_and_pads_with_zeros():
  """Integer offsets move frames (out[t] = in[t - s]); half offsets average neighbours;
  frames from outside the clip are zero."""
  x = jnp.arange(1, 6, dtype=jnp.float32).reshape(1, 5, 1) * jnp.ones((1, 1, 4))
  out = np.asarray(fractional_shift(x, jnp.array([[1.0, -1.0, 0.5, -2.0]])))
  np.testing.assert_allclose(out[0, :, 0], [0, 1, 2, 3, 4])
  np.testing.assert_allclose(out[0, :, 1], [2, 3, 4, 5, 0])
  np.testing.assert_allclose(out[0, :, 2], [0.5, 1.5, 2.5, 3.5, 4.5])
  np.testing.assert_allclose(out[0, :, 3], [3, 4, 5, 0, 0])


def test_recipes():
  tin = load_config("tin_r50")
  assert (tin.data.name, tin.model.num_classes, tin.model.tin.num_segments) == (
      "somethingv1", 174, 8)
  assert (tin.optim.lr, tin.optim.schedule, tin.optim.epochs, tin.batch_size) == (
      0.02, "cosine", 40.0, 48)
  assert tin.model.head.dropout_rate == 0.8 and tin.data.sampler == "segments"
  tanet = load_config("tanet_r50", "test2x3")
  assert (tanet.eval.num_views, tanet.data.test_crop, tanet.eval.fusion) == (
      6, "three_crop", "mean_softmax")
  assert tanet.optim.lr_steps == (30, 40, 45) and tanet.model.head.dropout_rate == 0.6
  demo = load_config("tanet_r50", "demo")
  assert demo.model.tam.num_segments == demo.data.num_frames == 4
  assert demo.data.sampler == "segments"
