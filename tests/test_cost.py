"""CoST (models/backbones/cost.py, recipes/cost.py, converters/cost.py): the collaborative
conv's shared kernel and coefficients, the R101-32f trunk at full depth, the feature-map
sizes of its padded pools and the strict 'cost' converter on real files. Parity with the
PyTorch reference: test_parity.py."""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, load_config
from flax import traverse_util

import converters
from converters.common import ConversionError
from converters.torch_io import load_torch_state_dict
from vidjax import models
from vidjax.models.backbones.cost import CoSTConv
from vidjax.models.registry import build_backbone

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import cost as cost_ref


def _apply(mode, variables, x):
  """(output, coefficients [3, N or 1, C]) of a CoSTConv with 4 output channels."""
  with jax.default_matmul_precision("highest"):
    y, state = CoSTConv(4, mode, (1, 2, 2)).apply(variables, x, mutable=["intermediates"])
  return y, state["intermediates"]["coefficients"][0]


def _clip(seed, shape=(2, 4, 6, 5, 3)):
  return jnp.asarray(np.random.RandomState(seed).randn(*shape).astype(np.float32))


@pytest.mark.parametrize("mode", ["a", "b"])
def test_three_views_share_one_kernel(mode):
  x = _clip(0)
  variables = CoSTConv(4, mode, (1, 2, 2)).init(jax.random.key(0), x)
  params = traverse_util.flatten_dict(variables["params"])
  kernels = {k: v.shape for k, v in params.items() if k[-1] == "kernel" and len(v.shape) == 5}
  assert kernels == {("kernel",): (1, 3, 3, 3, 4)}
  y, coefficients = _apply(mode, variables, x)
  # The output is the coefficient-weighted sum of three 3D convolutions with the one 3x3
  # kernel laid over (H, W), (T, W) and (T, H).
  w = variables["params"]["kernel"][0]
  with jax.default_matmul_precision("highest"):
    views = [jax.lax.conv_general_dilated(x, k, (1, 2, 2), [(p, p) for p in pad],
                                          dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
             for k, pad in ((w[None], (0, 1, 1)), (w[:, None], (1, 0, 1)),
                            (w[:, :, None], (1, 1, 0)))]
  c = coefficients[:, :, None, None, None]
  np.testing.assert_allclose(y, sum(v * c[i] for i, v in enumerate(views)), atol=1e-5)
  # Zeroing that kernel zeroes every view: no other weights reach the output.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.zeros_like(v) if path[-1].key == "kernel" and v.ndim == 5 else v,
      variables)
  assert float(jnp.abs(_apply(mode, zeroed, x)[0]).max()) == 0.0
  assert float(jnp.abs(y).max()) > 0.1


def test_cost_b_coefficients_follow_the_clip_and_cost_a_do_not():
  x1, x2 = _clip(1), _clip(2) * 3.0
  a = CoSTConv(4, "a", (1, 2, 2)).init(jax.random.key(0), x1)
  a1, a2 = _apply("a", a, x1)[1], _apply("a", a, x2)[1]
  assert a1.shape == (3, 1, 4)
  np.testing.assert_array_equal(a1, a2)
  np.testing.assert_allclose(a1[:, 0, 0], jax.nn.softmax(jnp.array([0.7, -0.7, -0.7])),
                             rtol=1e-6)   # the release's start
  b = CoSTConv(4, "b", (1, 2, 2)).init(jax.random.key(0), x1)
  # The release starts fc1 and fc2 at std 0.01 (near-uniform coefficients); larger
  # weights show the dependence well above float noise.
  b = jax.tree.map(lambda v: v * 100.0 if v.ndim == 2 else v, b)
  b1, b2 = _apply("b", b, x1)[1], _apply("b", b, x2)[1]
  assert b1.shape == (3, 2, 4)
  np.testing.assert_allclose(b1.sum(0), 1.0, rtol=1e-6)
  assert float(jnp.abs(b1 - b2).max()) > 1e-2                 # another clip
  assert float(jnp.abs(b1[:, 0] - b1[:, 1]).max()) > 1e-2     # another sample, same batch


def _count(tree):
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


def test_r101_32f_at_full_depth_converts_name_for_name():
  """The release's R101-32f trunk (16 CoST blocks, 101 layers), structure only: its
  state_dict converts strictly onto `jax.eval_shape` of our init, parameter for
  parameter."""
  config = load_config("cost_r50", "r101_32f")
  ref = cost_ref.build(config)
  sd = ref.state_dict()
  assert sum(k.endswith("conv2.conv.fc1.weight") for k in sd) == 16
  variables = converters.convert("cost", sd, config)
  expected = converters.expected_variables(config.model)
  assert jax.tree.map(lambda v: v.shape, variables) == jax.tree.map(lambda v: v.shape, expected)
  assert _count(variables["params"]) == sum(p.numel() for p in ref.parameters())


def test_feature_maps_of_the_padded_pools():
  """CoST's stem pool is padded (C2D: 56 px after it, unlike MMAction2 1.x's 55) and takes
  2 frames when it strides in time (R101-32f: 32 frames -> 16 -> 8, pool2 -> 4)."""
  for variant, frames, stem, last in (("c2d", 8, (8, 56, 56), (4, 7, 7)),
                                      ("r101_32f", 32, (8, 56, 56), (4, 7, 7))):
    m = models.resolve_model_config(load_config("cost_r50", variant).model)
    with m.backbone.unlocked():
      m.backbone.depth = 50   # the same stem and pools, a lighter trace
      m.backbone.inflate = ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
    backbone = build_backbone(m.backbone, jnp.float32)
    x = jax.ShapeDtypeStruct((1, frames, 224, 224, 3), jnp.float32)
    v = jax.eval_shape(backbone.init, jax.random.key(0), x)
    got_stem = jax.eval_shape(functools.partial(backbone.apply, method="stem"), v, x)
    got = jax.eval_shape(backbone.apply, v, x)
    assert (got_stem.shape[1:4], got.shape[1:4]) == (stem, last), variant


def _smoke_state_dict(variant):
  config = load_config("cost_r50", variant)
  return config, cost_ref.build(config).state_dict()


def test_converter_reads_a_release_checkpoint_and_names_mismatches(tmp_path):
  config, sd = _smoke_state_dict("smoke")
  # As the release's MMAction2 0.x runner saves it, trained under DataParallel.
  path = tmp_path / "costb.pth"
  torch.save({"meta": {"mmaction2_version": "0.24.1", "epoch": 160},
              "state_dict": {"module." + k: v for k, v in sd.items()},
              "optimizer": {"state": {}, "param_groups": []}}, path)
  # The CLI's reader and the source (tests/test_converters.py runs the CLI itself).
  jax.tree.map(np.testing.assert_array_equal,
               converters.convert("cost", load_torch_state_dict(str(path)), config),
               converters.convert("cost", sd, config))

  # CoST(b)'s weights for CoST(a): its fc weights are unused, the alphas missing.
  with pytest.raises(ConversionError) as e:
    converters.convert("cost", sd, load_config("cost_r50", "a_smoke"))
  problems = e.value.problems()
  assert any("layer1.1.conv2.conv.fc1.weight" in p
             for p in problems["unused checkpoint keys"])
  assert any("layer1_1/conv2/conv/alpha" in p for p in problems["missing model variables"])
  # CoST's I3D for CoST(b): the inflated conv1 (3, 1, 1) meets a 1x1x1 conv1.
  _, i3d = _smoke_state_dict("i3d_smoke")
  with pytest.raises(ConversionError, match=r"layer1\.1\.conv1\.conv\.weight \(8, 32, 3, 1, "
                     r"1\).*model expects \(1, 1, 1, 32, 8\)"):
    converters.convert("cost", i3d, config)
  # MMAction2's ResNet3d config is not this source's.
  with pytest.raises(ValueError, match="source 'cost' reads CoST's ResNet3dCoST checkpoints"):
    converters.convert("cost", sd, load_config("i3d_r50", "smoke"))
