"""3D convolutions with kT > 1 as sums over their time taps, where XLA:CPU is slow.

XLA:CPU's 3D convolution runs far behind its 2D convolution and its matrix products (an
I3D stem of 5x7x7 over three channels takes several times PyTorch's time). On CPU a
kernel `[kT, kH, kW, C_in, C_out]` is computed tap by tap in time instead, the same sums
in another order:

  * kT x 1 x 1 (I3D's inflated bottlenecks, SlowFast's lateral connections): with
    temporal stride 1 one matrix product `x @ [C_in, kT C_out]` gives every tap's output
    on every frame, then the taps' time-shifted slices are summed; with a temporal
    stride, the strided frames of each tap times its `[C_in, C_out]`, summed.
  * any other kernel: the kT 2D convolutions of the time-shifted, time-strided frames
    (`patch_conv.conv`, so the CPU patch kernels apply per tap), summed.

GPUs and TPUs keep XLA's 3D convolution (`jax.lax.platform_dependent`), as do grouped
convolutions (CSN's depthwise kernels), which were not measured here.

Layouts: x `[N, T, H, W, C_in]`, kernel `[kT, kH, kW, C_in / groups, C_out]`, padding
symmetric `(pt, ph, pw)` zeros on each side (PyTorch's), floor output sizes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vidjax.ops import patch_conv


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
         padding: tuple[int, int, int], groups: int = 1) -> jax.Array:
  """x: [N, T, H, W, C_in], kernel: [kT, kH, kW, C_in / groups, C_out] -> [N, T', H', W',
  C_out]: `time_taps_conv` on CPU (groups 1), XLA's 3D convolution elsewhere."""
  if groups != 1:
    return xla_conv(x, kernel, strides, padding, groups)
  return jax.lax.platform_dependent(
      x, kernel, cpu=lambda x, k: time_taps_conv(x, k, strides, padding),
      default=lambda x, k: xla_conv(x, k, strides, padding))


def xla_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
             padding: tuple[int, int, int], groups: int = 1) -> jax.Array:
  """XLA's 3D convolution, shapes as `conv`."""
  return jax.lax.conv_general_dilated(
      x, kernel, strides, tuple((p, p) for p in padding),
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), feature_group_count=groups)


def time_taps_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int, int],
                   padding: tuple[int, int, int]) -> jax.Array:
  """Groups-1 `conv` summed over the kernel's kT time taps, shapes as `conv`."""
  kt, kh, kw = kernel.shape[:3]
  (st, sh, sw), (pt, ph, pw) = strides, padding
  n, t = x.shape[:2]
  t_out = (t + 2 * pt - kt) // st + 1
  if t_out < 1:
    raise ValueError(f"conv3d: {t} frames padded by {pt} are fewer than the kernel's "
                     f"{kt} taps (input {x.shape}, kernel {kernel.shape})")
  if (kh, kw, ph, pw) == (1, 1, 0, 0):
    x = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x
    if st == 1:
      # One product for all taps: every frame's output of every tap, [.., kT, C_out].
      z = jnp.einsum("nthwc,cko->nthwko", x, jnp.transpose(kernel[:, 0, 0], (1, 0, 2)))
      z = jnp.pad(z, ((0, 0), (pt, pt)) + ((0, 0),) * 4)
      return sum(z[:, i:i + t_out, :, :, i] for i in range(kt))
  x = jnp.pad(x, ((0, 0), (pt, pt)) + ((0, 0),) * 3)
  y = None
  for i in range(kt):
    frames = x[:, i:i + (t_out - 1) * st + 1:st]                 # [N, T', H, W, C_in]
    if (kh, kw, ph, pw) == (1, 1, 0, 0):
      y_i = jax.lax.dot_general(frames, kernel[i, 0, 0], (((4,), (0,)), ((), ())))
    else:
      y_i = patch_conv.conv(frames.reshape((n * t_out,) + frames.shape[2:]), kernel[i],
                            (sh, sw), (ph, pw), (1, 1))
      y_i = y_i.reshape((n, t_out) + y_i.shape[1:])
    y = y_i if y is None else y + y_i
  return y
