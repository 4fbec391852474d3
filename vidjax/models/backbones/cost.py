"""CoST (Li et al., CVPR 2019): ResNet3dCoST of the official release on clips
[N, T, H, W, C], with its C2D and I3D baselines as options of the same trunk.

Written from reference/mmaction2_cost.md section 19. The trunk is MMAction2's ResNet3d
(backbones/resnet3d.py) with two changes:

  * two more inflate styles, 'costa' and 'costb': an inflated block is conv1 1x1x1 ->
    conv2 the collaborative conv (below, stride (t, s, s)) -> BN -> ReLU -> conv3 1x1x1;
    blocks that are not inflated stay C2D-style (1x1x1, (1, 3, 3), 1x1x1);
  * the stem's max-pool takes a (2, 3, 3) window when `pool1_stride_t` is not 1 (else
    (1, 3, 3)), stride (pool1_stride_t, 2, 2), padding (0, 1, 1). Unlike MMAction2 1.x's
    C2D the pool is padded (112 -> 56 px).

The collaborative spatiotemporal conv (`CoSTConv`, upstream `CoSTa` / `CoSTb`) holds one
3x3 kernel w[a, b] (`kernel` [1, 3, 3, C_in, C_out], torch `weight` (C_out, C_in, 1, 3,
3)) and applies it to three views of the clip, same stride, padding 1 on the two kernel
axes:

    H-W view  w over (H = a, W = b)   an ordinary spatial 3x3 conv
    T-W view  w over (T = a, W = b)
    T-H view  w over (T = a, H = b)

and sums them with per-channel coefficients that are a softmax over the three views:

    CoST(a)  `alpha` [3, C_out] (rows hw, tw, th), shared by all samples;
    CoST(b)  p_v = global max-pool of view v over (T, H, W), [N, C_out]; `fc1` (C_out ->
             C_out, no bias) on each p_v; `fc2` (3 -> 3, no bias) mixes the three views per
             (n, c); softmax over the views. No nonlinearity between fc1 and fc2.

The coefficients [3, N or 1, C_out] are sown as `intermediates/.../coefficients`.

Registered backbone 'cost' (defaults: CoST(b)-R50 of the release: conv1 (1, 7, 7),
inflate ((0,1,0),(1,0,1,0),(1,0,1,0,1,0),(1,0,1)), no zero-init of the last BN). Its C2D
is `inflate=(0, 0, 0, 0)`, its I3D `inflate_style='3x1x1'`; depths 50, 101, 152 (the
release's bottleneck trunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.backbones.resnet import RESNET_SPECS
from vidjax.models.backbones.resnet3d import (
  INFLATE_STYLES,
  Bottleneck3d,
  ResNet3d,
  build_resnet3d_fields,
  resnet3d_defaults,
  resnet3d_frozen_rule,
)
from vidjax.models.backbones.trunk import build_trunk
from vidjax.models.layers import Dtype, NormBlock
from vidjax.models.layers3d import HE_FAN_OUT, conv3d, max_pool3d_spatial
from vidjax.models.registry import register

COST_STYLES = ("costa", "costb")
# The release's inflation pattern: every other block, from block 1 of layer1.
COST_INFLATE = ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (1, 0, 1))


def _alpha_init(key, shape, dtype=jnp.float32):
  """CoST(a)'s start: 0.7 for the H-W view, -0.7 for the temporal ones (per channel)."""
  del key
  return jnp.broadcast_to(jnp.asarray([0.7, -0.7, -0.7], dtype)[:, None], shape)


def view_convs(x: jax.Array, w: jax.Array, strides: Sequence[int]) -> tuple[jax.Array, ...]:
  """The shared 3x3 kernel on the three views of `x`.

  Args:
    x: [N, T, H, W, C_in].
    w: [3, 3, C_in, C_out], w[a, b].
    strides: (t, h, w).
  Returns:
    (hw, tw, th), each [N, T', H', W', C_out].

  Each temporal view is the spatial conv of a transposed clip: the axis the kernel skips
  goes where time was, so every view runs as frames of 2D convolutions (layers3d.conv3d's
  kT = 1 path), not as a 3D convolution.
  """
  st, sh, sw = strides
  k = w[None]
  hw = conv3d(x, k, (st, sh, sw), (0, 1, 1))
  # T-W: [N, H, T, W, C]; kernel axes (a, b) over (T, W).
  tw = conv3d(x.transpose(0, 2, 1, 3, 4), k, (sh, st, sw), (0, 1, 1)).transpose(0, 2, 1, 3, 4)
  # T-H: [N, W, T, H, C]; kernel axes (a, b) over (T, H).
  th = conv3d(x.transpose(0, 3, 1, 2, 4), k, (sw, st, sh), (0, 1, 1)).transpose(0, 2, 3, 1, 4)
  return hw, tw, th


class CoSTConv(nn.Module):
  """The collaborative spatiotemporal conv, upstream `CoSTa` (`mode` 'a') or `CoSTb`
  ('b'); see the module docstring. No bias (it sits inside a ConvModule).

  Attributes:
    features: C_out.
    mode: 'a' (learned coefficients) or 'b' (coefficients from the pooled views).
    strides: (t, s, s).
  """
  features: int
  mode: str = "b"
  strides: tuple[int, int, int] = (1, 1, 1)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [N, T, H, W, C_in] -> [N, T', H', W', features]."""
    if self.mode not in ("a", "b"):
      raise ValueError(f"CoSTConv {self.name}: mode must be 'a' or 'b', got {self.mode!r}")
    kernel = self.param("kernel", HE_FAN_OUT, (1, 3, 3, x.shape[-1], self.features),
                        jnp.float32)
    views = view_convs(x.astype(self.dtype), kernel[0].astype(self.dtype), self.strides)
    # Coefficients in float32 whatever the compute dtype: a softmax of small differences.
    if self.mode == "a":
      alpha = self.param("alpha", _alpha_init, (3, self.features), jnp.float32)
      coefficients = jax.nn.softmax(alpha, axis=0)[:, None]              # [3, 1, C]
    else:
      pooled = jnp.stack([jnp.max(v, axis=(1, 2, 3)) for v in views], axis=1)  # [N, 3, C]
      init = nn.initializers.normal(0.01)
      mixed = nn.Dense(self.features, use_bias=False, kernel_init=init, name="fc1")(
          pooled.astype(jnp.float32))
      logits = nn.Dense(3, use_bias=False, kernel_init=init, name="fc2")(
          mixed.transpose(0, 2, 1))                                      # [N, C, 3]
      coefficients = jax.nn.softmax(logits, axis=-1).transpose(2, 0, 1)  # [3, N, C]
    self.sow("intermediates", "coefficients", coefficients)
    c = coefficients.astype(self.dtype)[:, :, None, None, None]
    return views[0] * c[0] + views[1] * c[1] + views[2] * c[2]


class CoSTConvBN(NormBlock):
  """mmcv ConvModule around the CoST conv: children `conv` (CoSTConv) and `bn`, ReLU."""
  features: int
  mode: str = "b"
  strides: tuple[int, int, int] = (1, 1, 1)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = CoSTConv(self.features, self.mode, self.strides, self.dtype, name="conv")(x)
    return nn.relu(self.norm("bn")(x, train))


class CoSTBottleneck3d(Bottleneck3d):
  """Bottleneck3dCoST: Bottleneck3d, plus the 'costa' / 'costb' styles (conv1 1x1x1,
  conv2 the CoST conv)."""

  def is_cost(self) -> bool:
    return self.spec.inflate and self.spec.inflate_style in COST_STYLES

  def kernels(self):
    if self.is_cost():   # conv2's entry only names the CoST conv's 3x3 window
      return ((1, 1, 1), (0, 0, 0)), ((1, 3, 3), (1, 1, 1))
    return super().kernels()

  def conv2_module(self, kernel, stride, padding):
    if not self.is_cost():
      return super().conv2_module(kernel, stride, padding)
    return CoSTConvBN(self.spec.planes, self.spec.inflate_style[-1], tuple(stride),
                      name="conv2", **self.norm_fields())


class ResNet3dCoST(ResNet3d):
  """The release's ResNet3dCoST: CoST blocks and the (2, 3, 3) stem pool when the pool
  has a temporal stride."""
  specs: ClassVar[dict] = {d: RESNET_SPECS[d] for d in (50, 101, 152)}
  bottleneck: ClassVar[type] = CoSTBottleneck3d
  inflate_styles: ClassVar[tuple[str, ...]] = INFLATE_STYLES + COST_STYLES

  def stem_pool(self, x: jax.Array) -> jax.Array:
    st = self.pool1_stride_t
    if st != 1:   # MaxPool3d kernel (2, 3, 3): the max of frames k st and k st + 1 first
      t = x.shape[1]
      if t < 2:
        raise ValueError(f"model.backbone.pool1_stride_t={st}: the (2, 3, 3) stem pool "
                         f"needs at least 2 frames after conv1, got {t}")
      n = (t - 2) // st + 1
      x = jnp.maximum(x[:, 0:(n - 1) * st + 1:st], x[:, 1:(n - 1) * st + 2:st])
    return max_pool3d_spatial(x, 3, (1, self.pool1_stride_s, self.pool1_stride_s), 1)


def cost_defaults() -> ml_collections.ConfigDict:
  return resnet3d_defaults("cost", conv1_kernel=(1, 7, 7), inflate=COST_INFLATE,
                           inflate_style="costb", zero_init_residual=False)


@register("backbone", "cost", cost_defaults, frozen_rule=resnet3d_frozen_rule)
def build_cost(cfg: ml_collections.ConfigDict, dtype: Any, **hooks: Any) -> ResNet3dCoST:
  if hooks:
    raise ValueError(f"model.backbone.name='cost' has no hook slots; got {sorted(hooks)}")
  return build_trunk(ResNet3dCoST, cfg, dtype, **build_resnet3d_fields(cfg))
