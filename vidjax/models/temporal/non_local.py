"""Non-local blocks on the output of 2D residual blocks, over T x H x W of each clip.

Written from reference/tsm_gc.md 1.4 (TSM's NL3D, "embedded Gaussian") and
reference/mmaction2_cost.md 1a (mmcv's NonLocal3d modes). With x [N, T, H, W, C] per clip
and Ci = C // reduction:

  theta = conv_theta(x)                 [N, THW, Ci]   (gaussian: x itself, C channels)
  phi   = maxpool_122(conv_phi(x))      [N, P, Ci]     (gaussian: maxpool(x); P = T*H/2*W/2)
  g     = maxpool_122(conv_g(x))        [N, P, Ci]
  f     = softmax(theta phi^T [/ sqrt(Ci) if use_scale])   embedded_gaussian
          softmax(theta phi^T)                             gaussian
          theta phi^T / P                                  dot_product
  z     = x + BN(conv_out(f g))

All convs are 1x1x1 (kernels [1, 1, 1, C_in, C_out] as Conv3d) with bias, except conv_out,
which has a bias in TSM (`W.0`) and none in mmcv (`conv_out.conv`): `out_bias`. The
max-pool (1, 2, 2) floors odd sizes; `sub_sample=False` skips it. The BN after conv_out
starts at zero scale, so a fresh block is the identity (TSM and mmcv alike).

Config (`model.non_local`, registered field 'non_local', the backbone's `post` slot):
  mode: embedded_gaussian (TSM's NL3D) | gaussian | dot_product.
  positions: one tuple of 0/1 flags per stage, one flag per block (MMAction2's
    `non_local`); TSM: layer2 blocks 0, 2 and layer3 blocks 0, 2, 4 of ResNet-50.
  reduction, sub_sample, use_scale, out_bias: as above.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.hooks import BlockInfo
from vidjax.models.layers import BatchNorm, max_pool2d
from vidjax.models.registry import register

MODES = ("embedded_gaussian", "gaussian", "dot_product")
TSM_POSITIONS = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))


class Pointwise3d(nn.Module):
  """A 1x1x1 Conv3d on [..., C]: kernel [1, 1, 1, C_in, features] (torch (O, I, 1, 1, 1))."""
  features: int
  use_bias: bool = True
  kernel_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (1, 1, 1, x.shape[-1], self.features),
                        jnp.float32)
    y = jnp.einsum("...c,cd->...d", x, kernel[0, 0, 0].astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(x.dtype)
    return y


class NonLocal(nn.Module):
  """Non-local block on [N*T, H, W, C] frames (video-major), computed per clip."""
  mode: str = "embedded_gaussian"
  reduction: int = 2
  sub_sample: bool = True
  use_scale: bool = False
  out_bias: bool = True
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [N*T, H, W, C] -> the same shape."""
    if self.mode not in MODES:
      raise ValueError(f"NonLocal mode {self.mode!r}; expected one of {MODES}")
    nt, h, w, c = x.shape
    if nt % num_segments:
      raise ValueError(f"NonLocal: batch {nt} is not a multiple of num_segments={num_segments}")
    n, ci = nt // num_segments, c // self.reduction

    def pool(y):
      return max_pool2d(y, 2, 2) if self.sub_sample else y

    def per_clip(y):  # [N*T, h, w, d] -> [N, T*h*w, d]
      return y.reshape(n, -1, y.shape[-1])

    g = per_clip(pool(Pointwise3d(ci, name="g")(x)))
    if self.mode == "gaussian":
      theta, phi = per_clip(x), per_clip(pool(x))
    else:
      theta = per_clip(Pointwise3d(ci, name="theta")(x))
      phi = per_clip(pool(Pointwise3d(ci, name="phi")(x)))
    f = jnp.einsum("nqc,nkc->nqk", theta, phi)
    if self.mode == "dot_product":
      f = f / phi.shape[1]
    else:
      if self.use_scale and self.mode == "embedded_gaussian":
        f = f / jnp.sqrt(jnp.asarray(theta.shape[-1], f.dtype))
      f = jax.nn.softmax(f, axis=-1)
    y = jnp.einsum("nqk,nkc->nqc", f, g).reshape(nt, h, w, ci)
    y = Pointwise3d(c, self.out_bias, name="out_conv")(y)
    y = BatchNorm(self.bn_momentum, self.bn_eps, scale_init=nn.initializers.zeros,
                  name="out_bn")(y, train)
    return x + y


def non_local_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      mode="embedded_gaussian",   # embedded_gaussian (TSM) | gaussian | dot_product
      positions=TSM_POSITIONS,    # per stage, per block: 1 = NL after that block
      reduction=2,                # Ci = C // reduction
      sub_sample=True,            # max-pool (1, 2, 2) on phi and g
      use_scale=False,            # embedded_gaussian: divide by sqrt(Ci)
      out_bias=True,              # TSM's W.0 has a bias; mmcv's conv_out has none
  ))


def _factory(info: BlockInfo, positions: tuple, **kwargs) -> Optional[nn.Module]:
  if len(positions) != len(info.stage_sizes) or any(
      len(p) != s for p, s in zip(positions, info.stage_sizes)):
    raise ValueError(f"model.non_local.positions={positions} does not fit the backbone's "
                     f"blocks per stage {info.stage_sizes}: one 0/1 flag per block")
  if not positions[info.stage - 1][info.index]:
    return None
  return NonLocal(**kwargs)


@register("temporal", "non_local", non_local_defaults)
def build_non_local(cfg: ml_collections.ConfigDict,
                    model_cfg: ml_collections.ConfigDict) -> dict:
  if cfg.mode not in MODES:
    raise ValueError(f"model.non_local.mode={cfg.mode!r}; expected one of {MODES}")
  bn_eps = float(model_cfg.backbone.get("bn_eps", 1e-5))
  bn_momentum = float(model_cfg.backbone.get("bn_momentum", 0.9))
  positions = tuple(tuple(int(f) for f in stage) for stage in cfg.positions)
  return {"post_module": functools.partial(
      _factory, positions=positions, mode=str(cfg.mode), reduction=int(cfg.reduction),
      sub_sample=bool(cfg.sub_sample), use_scale=bool(cfg.use_scale),
      out_bias=bool(cfg.out_bias), bn_eps=bn_eps, bn_momentum=bn_momentum)}
