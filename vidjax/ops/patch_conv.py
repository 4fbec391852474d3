"""NHWC convolutions as products of gathered patches where XLA:CPU's kernels are slow.

XLA:CPU has no fast convolution for tiny output maps nor a fast kernel gradient for
few-channel (RGB stem) inputs; both are computed here as matrix products of gathered
patches, the same sums in another order. GPUs and TPUs keep XLA's kernel gradient.

Layouts: inputs and outputs NHWC `[N, H, W, C]`, kernels HWIO `[kh, kw, C_in / groups,
C_out]`; padding is symmetric, `(ph, pw)` zeros on each side, as PyTorch pads.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Output maps with at most this many positions are one matrix product of gathered
# patches: XLA:CPU's convolution is far slower there (TCPNet's stride-1 layer4 on small
# clips gives 2x2 maps).
PATCH_MATMUL_MAX_POSITIONS = 4

# Convolutions of at most this many input channels (RGB stems) take their kernel gradient
# on CPU as one matrix product of gathered patches. GPUs and TPUs keep XLA's gradient:
# the patches of a 7x7 stride-2 stem hold 12x the input's elements.
PATCH_WGRAD_MAX_CHANNELS = 4


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
         padding: tuple[int, int], dilation: tuple[int, int], groups: int = 1) -> jax.Array:
  """x: [N, H, W, C_in], kernel: [kh, kw, C_in / groups, C_out] -> [N, H', W', C_out].

  Picks the kernel for the shape: `patch_matmul_conv` for tiny output maps,
  `conv_patch_wgrad` for few input channels, else `xla_conv` (groups other than 1
  always take `xla_conv`).
  """
  ho, wo = _output_hw(x, kernel, strides, padding, dilation)
  if groups == 1 and ho * wo <= PATCH_MATMUL_MAX_POSITIONS:
    return patch_matmul_conv(x, kernel, strides, padding, dilation)
  if groups == 1 and kernel.shape[2] <= PATCH_WGRAD_MAX_CHANNELS:
    return conv_patch_wgrad(x, kernel, strides, padding, dilation)
  return xla_conv(x, kernel, strides, padding, dilation, groups)


def _output_hw(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
  """H', W' of the convolution of x [N, H, W, C] with kernel [kh, kw, ., .]."""
  (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel.shape[:2], strides, padding, dilation
  return ((x.shape[1] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
          (x.shape[2] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def xla_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
             padding: tuple[int, int], dilation: tuple[int, int],
             groups: int = 1) -> jax.Array:
  """XLA's convolution. x: [N, H, W, C_in], kernel: [kh, kw, C_in / groups, C_out]
  -> [N, H', W', C_out]."""
  (ph, pw) = padding
  return jax.lax.conv_general_dilated(
      x, kernel, strides, ((ph, ph), (pw, pw)), rhs_dilation=dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def patch_matmul_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                      padding: tuple[int, int], dilation: tuple[int, int]) -> jax.Array:
  """Groups-1 convolution as patches @ kernel: [N, H', W', kh kw C_in] @ [kh kw C_in,
  C_out] -> [N, H', W', C_out], for x: [N, H, W, C_in], kernel: [kh, kw, C_in, C_out].

  The patches hold kh kw times the output's positions, so this suits tiny output maps.
  """
  (kh, kw, c_in, features), (sh, sw), (ph, pw), (dh, dw) = (kernel.shape, strides, padding,
                                                            dilation)
  ho, wo = _output_hw(x, kernel, strides, padding, dilation)
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  patches = jnp.concatenate(
      [xp[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
       for i in range(kh) for j in range(kw)], axis=-1)
  return patches @ kernel.reshape(kh * kw * c_in, features)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_patch_wgrad(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int]) -> jax.Array:
  """`xla_conv` (groups 1) whose kernel gradient on CPU is patches^T @ dy:
  [kh kw C, N H' W'] @ [N H' W', O], the patches gathered channel-major so that each
  row is one strided plane. x: [N, H, W, C], kernel: [kh, kw, C, O] -> [N, H', W', O].
  """
  return xla_conv(x, kernel, strides, padding, dilation)


def _conv_patch_wgrad_fwd(x, kernel, strides, padding, dilation):
  return xla_conv(x, kernel, strides, padding, dilation), (x, kernel)


def _conv_patch_wgrad_bwd(strides, padding, dilation, residuals, dy):
  x, kernel = residuals
  (kh, kw, c, o), (sh, sw), (ph, pw), (dh, dw) = kernel.shape, strides, padding, dilation
  _, ho, wo, _ = dy.shape
  dx = jax.vjp(lambda v: xla_conv(v, kernel, strides, padding, dilation), x)[1](dy)[0]

  def patch_product(x, dy):
    xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    patches = jnp.stack([xt[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh,
                            j * dw:j * dw + (wo - 1) * sw + 1:sw]
                         for i in range(kh) for j in range(kw)])    # [kh kw, C, N, H', W']
    dk = jnp.matmul(patches.reshape(kh * kw * c, -1), dy.reshape(-1, o),
                    preferred_element_type=jnp.promote_types(dy.dtype, jnp.float32))
    return dk.reshape(kh, kw, c, o).astype(kernel.dtype)

  def xla_gradient(x, dy):
    return jax.vjp(lambda k: xla_conv(x, k, strides, padding, dilation), kernel)[1](dy)[0]

  return dx, jax.lax.platform_dependent(x, dy, cpu=patch_product, default=xla_gradient)


conv_patch_wgrad.defvjp(_conv_patch_wgrad_fwd, _conv_patch_wgrad_bwd)
