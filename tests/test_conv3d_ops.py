"""vidjax.ops.conv3d: the CPU time-tap path equals XLA's 3D convolution, value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidjax.ops import conv3d


def _reference(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, strides, [(p, p) for p in padding],
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


# (x shape, kernel shape, strides, padding): each branch of time_taps_conv.
CASES = {
    "3x1x1 one product": ((2, 5, 6, 5, 8), (3, 1, 1, 8, 6), (1, 1, 1), (1, 0, 0)),
    "3x1x1 spatial stride": ((1, 4, 7, 6, 8), (3, 1, 1, 8, 6), (1, 2, 2), (1, 0, 0)),
    "5x1x1 temporal stride 4 (lateral)": ((2, 16, 4, 4, 4), (5, 1, 1, 4, 6), (4, 1, 1),
                                          (2, 0, 0)),
    "5x7x7 RGB stem, strides 2": ((1, 8, 18, 17, 3), (5, 7, 7, 3, 8), (2, 2, 2), (2, 3, 3)),
    "3x3x3 unpadded in time": ((2, 5, 6, 6, 5), (3, 3, 3, 5, 7), (1, 1, 1), (0, 1, 1)),
    "3x3x3 tiny map": ((1, 4, 3, 3, 6), (3, 3, 3, 6, 4), (1, 2, 2), (1, 1, 1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_time_taps_conv_matches_xla_value_and_gradient(case):
  x_shape, k_shape, strides, padding = CASES[case]
  rs = np.random.RandomState(len(case))
  x = jnp.asarray(rs.standard_normal(x_shape), jnp.float32)
  kernel = jnp.asarray(rs.standard_normal(k_shape) / np.sqrt(np.prod(k_shape[:4])),
                       jnp.float32)
  cotangent = jnp.asarray(
      rs.standard_normal(jax.eval_shape(lambda: _reference(x, kernel, strides, padding)).shape),
      jnp.float32)

  def value_and_grads(f):
    loss = lambda x, k: jnp.vdot(f(x, k, strides, padding), cotangent)  # noqa: E731
    return f(x, kernel, strides, padding), jax.grad(loss, (0, 1))(x, kernel)

  # One program, so that the test compiles once: XLA's convolution, the time taps, and
  # `conv` (the CPU branch, here).
  with jax.default_matmul_precision("highest"):
    (want, (dx_want, dk_want)), *got = jax.jit(lambda: [
        value_and_grads(f) for f in (_reference, conv3d.time_taps_conv, conv3d.conv)])()
  for name, (y, (dx, dk)) in zip(("time_taps_conv", "conv"), got):
    assert y.shape == want.shape, (name, y.shape, want.shape)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(dx, dx_want, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(dk, dk_want, rtol=1e-5, atol=1e-4, err_msg=name)


def test_grouped_and_too_short_inputs():
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.standard_normal((1, 4, 5, 5, 6)), jnp.float32)
  # Grouped (depthwise) kernels keep XLA's convolution on every platform.
  kernel = jnp.asarray(rs.standard_normal((3, 3, 3, 1, 6)), jnp.float32)
  got = conv3d.conv(x, kernel, (1, 1, 1), (1, 1, 1), groups=6)
  want = jax.lax.conv_general_dilated(
      x, kernel, (1, 1, 1), [(1, 1)] * 3, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
      feature_group_count=6)
  np.testing.assert_array_equal(got, want)
  # Groups 1: programs for CPU hold 2D convolutions only, those for GPUs and TPUs one 3D
  # convolution (lowered here without the device).
  traced = jax.jit(lambda x, k: conv3d.conv(x, k, (1, 1, 1), (1, 1, 1))).trace(
      x, kernel.reshape(3, 3, 3, 6, 1))
  for platform, spatial_dims in (("cpu", "[b, 0, 1, f]"), ("cuda", "[b, 0, 1, 2, f]"),
                                 ("tpu", "[b, 0, 1, 2, f]")):
    convs = [line for line in traced.lower(lowering_platforms=(platform,)).as_text()
             .splitlines() if "stablehlo.convolution" in line]
    assert convs and all(f"dim_numbers = {spatial_dims}x" in c for c in convs), (platform,
                                                                                 convs)
  with pytest.raises(ValueError, match="4 frames padded by 0 are fewer than the kernel's 5"):
    conv3d.time_taps_conv(x, jnp.zeros((5, 1, 1, 6, 2)), (1, 1, 1), (0, 0, 0))
