"""C3D and X3D (models/backbones/c3d.py, x3d.py, heads/x3d.py): the 112-px C3D's
structure against the upstream layout (its 8192-input fc6), the model zoo's parameter
counts, X3D's SE placement and head, X3D-S and X3D-M as one network, C3D's clip-size
check and the recipes. Logit parity: test_parity.py (c3d_32px, x3d_m, x3d_s)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import converters
from conftest import ROOT, load_config
from vidjax import models
from vidjax.models.backbones.x3d import round_width

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import mmaction2 as ref  # noqa: E402  pylint: disable=g-import-not-at-top


def _params(variables) -> tuple[dict, int]:
  """'a/b/kernel' -> array of `variables['params']`, and their total size."""
  params = traverse_util.flatten_dict(variables["params"], sep="/")
  return params, sum(int(np.prod(v.shape)) for v in params.values())


def test_c3d_upstream_layout_converts_at_112px_with_the_zoo_parameter_count():
  """The reference's 112-px state_dict (upstream names, fc6 8192 -> 4096) converts
  strictly onto our variables (traced on the config's 16x112x112 clip); 101 classes give
  the C3D metafile's 78,409,573 parameters."""
  config = load_config("c3d")
  m = models.resolve_model_config(config.model)
  fc6_in = ref.c3d_fc6_in(64, 16, 112, 112)
  assert fc6_in == 8192
  with torch.device("meta"):   # names and shapes only: no weights drawn
    meta = ref.PixelRecognizer3D(ref.C3D(64, 4096, fc6_in), ref.VectorHead(4096, 101),
                                 m.pixel_mean, m.pixel_std).state_dict()
  assert len(meta) == 22
  sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.items()}
  variables = converters.convert("mmaction2", sd, config)
  assert "batch_stats" not in variables
  params, count = _params(variables)
  assert count == 78_409_573
  assert params["backbone/fc6/kernel"].shape == (8192, 4096)
  assert params["backbone/conv5b/conv/bias"].shape == (512,)
  assert params["head/fc/kernel"].shape == (4096, 101)


def test_c3d_refuses_clips_of_another_size():
  """fc6 is built for `input_size`: another clip size is one error naming the field."""
  config = load_config("c3d", "smoke")
  module = models.build_model(config.model)
  clip = jnp.zeros((1, 16, 32, 32, 3), jnp.uint8)
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), clip))
  assert variables["params"]["backbone"]["fc6"]["kernel"].shape == (8 * 8 * 2 * 2, 64)
  with pytest.raises(ValueError, match=r"input_size=\(16, 32, 32\).*\(1, 16, 48, 48, 3\)"):
    module.init(jax.random.key(0), jnp.zeros((1, 16, 48, 48, 3), jnp.uint8))
  config.model.backbone.input_size = (8, 32, 32)
  with pytest.raises(ValueError, match="at least 16 frames"):
    models.build_model(config.model)


@pytest.mark.parametrize("variant", ["", "s"])
def test_x3d_parameter_count_se_placement_and_head(variant):
  """X3D-M and X3D-S are one network: the metafile's 3,794,322 parameters (400 classes);
  SE on the even-indexed blocks of each stage with the spec's bottlenecks (8, 8, 16, 32);
  depthwise conv2 and conv1_t; fc1 without bias; blocks ceil(2.2 x (1, 2, 5, 3))."""
  config = load_config("x3d", variant)
  assert config.data.num_frames == (13 if variant else 16)
  params, count = _params(converters.expected_variables(config.model))
  assert count == 3_794_322
  blocks = {}
  for path in params:
    top = path.split("/")[1]
    if top.startswith("layer"):
      stage, index = (int(v) for v in top[len("layer"):].split("_"))
      blocks[stage] = max(blocks.get(stage, 0), index + 1)
      assert (f"backbone/{top}/se_module/fc1/bias" in params) == (index % 2 == 0), top
  assert blocks == {1: 3, 2: 5, 3: 11, 4: 7}
  for stage, (inner, squeeze) in enumerate(((54, 8), (108, 8), (216, 16), (432, 32)), 1):
    assert round_width(inner, 1 / 16) == squeeze
    assert params[f"backbone/layer{stage}_0/se_module/fc1/kernel"].shape == (
        1, 1, 1, inner, squeeze)
    assert params[f"backbone/layer{stage}_0/conv2/conv/kernel"].shape == (3, 3, 3, 1, inner)
  assert params["backbone/conv1_s/conv/kernel"].shape == (1, 3, 3, 3, 24)
  assert params["backbone/conv1_t/conv/kernel"].shape == (5, 1, 1, 1, 24)
  assert params["backbone/conv5/conv/kernel"].shape == (1, 1, 1, 192, 432)
  assert params["head/fc1/kernel"].shape == (432, 2048)
  assert "head/fc1/bias" not in params and params["head/fc2/bias"].shape == (400,)


def test_recipes_mean_std_and_protocols():
  """Each model normalises with its own mean / std; C3D tests 10 centre-cropped clips of
  112 px on UCF101; X3D-S and X3D-M differ in their clips and test crops only."""
  c3d = load_config("c3d", "test10")
  assert c3d.model.pixel_mean == (104.0, 117.0, 128.0) and c3d.model.pixel_std == (1.0,) * 3
  assert (c3d.data.name, c3d.model.num_classes, c3d.eval.num_views) == ("ucf101", 101, 10)
  assert (c3d.data.image_size, c3d.data.test_scale, c3d.data.num_frames) == (112, 128, 16)
  assert (c3d.optim.lr, c3d.optim.weight_decay, c3d.optim.lr_steps) == (1e-3, 5e-4, (20, 40))
  m, s = load_config("x3d", "test30"), load_config("x3d", "s_test30")
  for config in (m, s):
    assert config.model.pixel_mean == (114.75,) * 3 and config.model.pixel_std == (57.38,) * 3
    assert config.eval.num_views == 30 and config.data.test_crop == "three_crop"
  assert (m.data.num_frames, m.data.frame_interval, m.data.image_size) == (16, 5, 256)
  assert (s.data.num_frames, s.data.frame_interval, s.data.image_size) == (13, 6, 182)
  assert m.model.to_dict() == s.model.to_dict()
  assert load_config("x3d", "s").data.image_size == 160   # trained at 160 px
