"""Max pooling over [N, H, W, C] with a hand-written gradient.

XLA's own gradient of a max (select-and-scatter, or selects over the window slices) is
slow on XLA:CPU; this one records the winning tap in the forward pass and scatters by
stride-parity classes. It is used on every platform, so that gradients agree everywhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _max_pool_out(x, window, strides, padding):
  (kh, kw), (sh, sw), (ph, pw) = window, strides, padding
  init = jnp.array(-jnp.inf, x.dtype)
  return jax.lax.reduce_window(x, init, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1),
                               ((0, 0), (ph, ph), (pw, pw), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[int, int]) -> jax.Array:
  """x: [N, H, W, C] -> [N, H', W', C], floor mode, padding `(ph, pw)` -inf on each side.

  The gradient goes to the first maximum of each window in row-major order, as PyTorch's
  indices give it.
  """
  return _max_pool_out(x, window, strides, padding)


def _max_pool_fwd(x, window, strides, padding):
  (kh, kw), (sh, sw), (ph, pw) = window, strides, padding
  out = _max_pool_out(x, window, strides, padding)
  n, ho, wo, c = out.shape
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
  # The winning tap t = i * kw + j of each window: the first in row-major order.
  tap = jnp.full(out.shape, kh * kw - 1, jnp.int8 if kh * kw < 128 else jnp.int32)
  for t in reversed(range(kh * kw - 1)):
    i, j = divmod(t, kw)
    window_t = jax.lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1,
                                                j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
    tap = jnp.where(window_t == out, jnp.array(t, tap.dtype), tap)
  return out, (tap, x.shape)


def _max_pool_bwd(window, strides, padding, residuals, g):
  (kh, kw), (sh, sw), (ph, pw) = window, strides, padding
  tap, (n, h, w, c) = residuals
  ho, wo = g.shape[1:3]
  # Padded input row r = sh * R + a receives from taps i = a + sh * q of output row R - q;
  # each parity class (a, b) is a sum of shifted, masked copies of g, then interleaved.
  rows, cols = -(-(h + 2 * ph) // sh), -(-(w + 2 * pw) // sw)
  zero = jnp.array(0, g.dtype)
  classes = []
  for a in range(sh):
    per_b = []
    for b in range(sw):
      acc = jnp.zeros((n, rows, cols, c), g.dtype)
      for i in range(a, kh, sh):
        for j in range(b, kw, sw):
          q, r = i // sh, j // sw
          masked = jnp.where(tap == i * kw + j, g, zero)
          acc = acc + jax.lax.pad(masked, zero, ((0, 0, 0), (q, rows - ho - q, 0),
                                                 (r, cols - wo - r, 0), (0, 0, 0)))
      per_b.append(acc)
    classes.append(jnp.stack(per_b, axis=3))               # [N, rows, cols, sw, C]
  dxp = jnp.stack(classes, axis=2).reshape(n, rows * sh, cols * sw, c)
  return (dxp[:, ph:ph + h, pw:pw + w],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
