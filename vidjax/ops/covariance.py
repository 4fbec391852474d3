"""Second-order pooling for TCPNet: covariance, iSQRT (Newton-Schulz) and triu vector.

The TCP head ends with

  features [B, M, C] --covariance_pool--> [B, C, C] --sqrtm_newton_schulz--> [B, C, C]
                     --triu_vector--> [B, C(C+1)/2]

and these three functions reproduce the upstream fast-MPN-COV ops (`MPNCOV.Covpool`,
`MPNCOV.Sqrtm` with the TCP authors' trace eps, `MPNCOV.Triuvec`) forward-exactly in
plain jax.numpy. See `reference/tcpnet.md` sections 3.3-3.6.

Gradients: plain autodiff. Upstream ships hand-written backward passes, but they are
adjoints of the same forward (bar the eps, a relative ~1e-6 difference on the feature
gradients), so no custom_vjp is needed. Autodiff stores the intermediate Y_i, Z_i just
like upstream's backward does.

Precision: every matmul takes `precision`; `None` (the default) uses the caller's
`jax.default_matmul_precision`. Tests and parity runs use "highest". On GPU the default
may be TF32/bf16 passes, which perturb the Newton-Schulz result noticeably (the iteration
amplifies rounding in ill-conditioned covariances); pass `precision="highest"` (or set
the default) when matching PyTorch, leave it at None when speed matters more.

Dtypes: arrays narrower than float32 (bf16, f16) are computed and returned in float32,
because three Newton-Schulz steps in bf16 lose most of the covariance's small
eigen-directions; float32 stays float32 and float64 (under x64) stays float64.

All functions are batched over any leading dimensions, jit-able, and `num_iters` is a
static Python int (the loop is unrolled; it is 3 in every TCP release).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Precision = jax.lax.PrecisionLike


def _compute_dtype(dtype) -> jnp.dtype:
  # At least float32 (see module docstring); float64 survives only under x64.
  return jnp.promote_types(dtype, jnp.float32)


def covariance_pool(x: jax.Array, precision: Precision = None) -> jax.Array:
  """Biased covariance of the M positions of each example.

  Equal to upstream's `X Î X^T` with `Î = (1/M)(I_M - (1/M) 1 1^T)`, but without the M x M
  centring matrix (1568^2 floats per clip at T=8, 224 px): centre, then one matmul.
  Subtracting the mean first (rather than E[xx^T] - mu mu^T) avoids cancellation when the
  features have a large mean, as post-ReLU features do.

  Args:
    x: [..., M, C] features; M = T*h*w positions of all frames of a clip (their order
      does not matter).
    precision: matmul precision; None follows `jax.default_matmul_precision`.

  Returns:
    [..., C, C] covariance, divided by M (not M - 1), float32 or wider.
  """
  x = jnp.asarray(x)
  x = x.astype(_compute_dtype(x.dtype))
  m = x.shape[-2]
  xc = x - jnp.mean(x, axis=-2, keepdims=True)
  return jnp.einsum("...mc,...md->...cd", xc, xc, precision=precision) / m


def sqrtm_newton_schulz(a: jax.Array, num_iters: int = 3, eps: float = 1e-5,
                        precision: Precision = None) -> jax.Array:
  """Approximate matrix square root by coupled Newton-Schulz iterations (iSQRT).

  Exactly upstream's `MPNCOV.Sqrtm` as modified by the TCP authors:

    tr = trace(a);  A = a / (tr + eps)                       pre-normalisation
    Y = 0.5 A (3I - A);  Z = 0.5 (3I - A)                    iteration 1
    repeat num_iters - 2 times:
      P = 0.5 (3I - Z Y);  Y = Y P;  Z = P Z
    out = 0.5 Y (3I - Z Y) * sqrt(tr)                        last iteration, post-compensation

  With `num_iters == 1` the result is `0.5 A (3I - A) * sqrt(tr)`, upstream's
  `iterN < 2` branch. Upstream silently treats 0 and negative counts as 1; here they
  raise ValueError.

  The result with few iterations is deliberately NOT the exact square root (about 44%
  relative error on an ill-conditioned 32x32 covariance at 3 iterations); the released
  TCP weights were trained against this approximation, so do not replace it with an
  eigendecomposition. More iterations converge to sqrtm(a) for SPD `a`.

  Gradients: the sqrt(tr) post-compensation has an infinite derivative at tr == 0 (an
  all-constant feature map gives a zero covariance). Upstream's backward yields NaN
  there; here that term's gradient is zero instead. The forward value is unchanged
  (0 * anything), and so are gradients everywhere else.

  Args:
    a: [..., C, C] symmetric positive semi-definite matrices (covariances).
    num_iters: Newton-Schulz iterations, a static Python int >= 1 (TCP uses 3).
    eps: added to the trace in the pre-normalisation only (TCP's 1e-5; 0 gives the
      original fast-MPN-COV).
    precision: matmul precision; None follows `jax.default_matmul_precision`.

  Returns:
    [..., C, C] approximate square root, float32 or wider.
  """
  if not isinstance(num_iters, (int, np.integer)) or isinstance(num_iters, bool):
    raise ValueError(f"sqrtm_newton_schulz: num_iters must be a Python int, got {num_iters!r}")
  if num_iters < 1:
    raise ValueError(f"sqrtm_newton_schulz: num_iters must be >= 1, got {num_iters}")
  a = jnp.asarray(a)
  if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
    raise ValueError(f"sqrtm_newton_schulz: expected [..., C, C] matrices, got shape {a.shape}")
  a = a.astype(_compute_dtype(a.dtype))
  mm = lambda p, q: jnp.matmul(p, q, precision=precision)
  i3 = 3.0 * jnp.eye(a.shape[-1], dtype=a.dtype)

  tr = jnp.trace(a, axis1=-2, axis2=-1)[..., None, None]
  norm_a = a / (tr + eps)
  z = 0.5 * (i3 - norm_a)
  y = mm(norm_a, z)
  if num_iters == 1:
    out = y
  else:
    for _ in range(num_iters - 2):
      p = 0.5 * (i3 - mm(z, y))
      y, z = mm(y, p), mm(p, z)
    out = 0.5 * mm(y, i3 - mm(z, y))

  # Double `where` so that the gradient at tr == 0 is 0 rather than 0 * inf = NaN;
  # negative traces (not a covariance) still give NaN, as upstream.
  is_zero = tr == 0
  sqrt_tr = jnp.where(is_zero, 0.0, jnp.sqrt(jnp.where(is_zero, 1.0, tr)))
  return out * sqrt_tr


def triu_vector(a: jax.Array) -> jax.Array:
  """Upper triangle (diagonal included) of each matrix, row-major, unscaled.

  Order is `np.triu_indices(C)`: row 0 columns 0..C-1, then row 1 columns 1..C-1, ...
  (upstream `MPNCOV.Triuvec`). Off-diagonal entries are not multiplied by sqrt(2).

  Args:
    a: [..., C, C] matrices.

  Returns:
    [..., C(C+1)/2] (8256 for C = 128), same dtype as `a`.
  """
  a = jnp.asarray(a)
  if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
    raise ValueError(f"triu_vector: expected [..., C, C] matrices, got shape {a.shape}")
  # Static numpy indices: one gather, and its transpose (a scatter) for the gradient.
  rows, cols = np.triu_indices(a.shape[-1])
  return a[..., rows, cols]
