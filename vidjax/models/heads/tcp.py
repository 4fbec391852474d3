"""TCP head of TCPNet (Temporal-attentive Covariance Pooling, NeurIPS 2021).

Backbone features of every frame in, one covariance representation per clip out
(reference/tcpnet.md section 3):

    [B*T, h, w, C_in]
      -> layer_reduce1 (1x1, no bias) -> layer_reduce_bn1 -> ReLU        [B*T, h, w, 256]
      -> layer_reduce2 (1x1, no bias) -> layer_reduce_bn2 -> ReLU        [B*T, h, w, 128]
      -> att: TSA, TCA, circular temporal conv, + input, ReLU            [B*T, h, w, 128]
      -> covariance over M = T*h*w positions of the clip                  [B, 128, 128]
      -> Newton-Schulz square root (3 iterations) -> upper triangle      [B, 8256]

`TCPPooling` is that representation; `TCPHead` (registered head 'tcp') adds dropout and
the classifier `fc` (`new_fc` upstream). Flax names under the model's `head` mirror
upstream's `base_model.TCP.*` (converters/tcpnet.py): `layer_reduce{1,2}`,
`layer_reduce_bn{1,2}`, `att/tsa/{conv_phi_1, conv_phi_2, conv_phi0, norm}`,
`att/tca/{g1, g2}`, `att/conv_1d`, then `fc`.

Frames are folded into the batch video-major (row n*T + t), as the backbone gives them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax.models.heads.classifier import dropout_fc
from vidjax.models.layers import BatchNorm, Dtype, conv2d
from vidjax.models.registry import register
from vidjax.ops import covariance

# c2_msra_fill (TSA's convs) and torchvision's kaiming_normal_(fan_out, relu).
_MSRA = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def temporal_kernel_size(num_segments: int) -> int:
  """conv_1d's temporal kernel: T//2 + 1 (5 for T=8, 9 for T=16)."""
  return num_segments // 2 + 1


class TSA(nn.Module):
  """Temporal-based spatial attention: a non-local block between frames t-1 and t-2.

  For frame t, queries come from frame t-1 and keys from frame t-2 (clamped at the
  start: replicate padding), the softmax runs over the key positions, and the affinity
  aggregates frame t's values. `x + BN(y)`, BN gamma starting at 0 (identity at init).
  """
  dim: int
  bn_momentum: float = 0.9
  freeze_bn: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [B*T, h, w, C] -> [B*T, h, w, C]."""
    n, h, w, c = x.shape
    t = num_segments
    conv = lambda name: conv2d(self.dim, 1, use_bias=True, dtype=self.dtype,
                               kernel_init=_MSRA, name=name)
    # 1x1 convs act per frame, so shifting their outputs in time equals shifting inputs.
    q = conv("conv_phi_1")(x).reshape(n // t, t, h * w, self.dim)
    k = conv("conv_phi_2")(x).reshape(n // t, t, h * w, self.dim)
    v = conv("conv_phi0")(x).reshape(n // t, t, h * w, self.dim)
    idx = np.arange(t)
    q = q[:, np.maximum(idx - 1, 0)]   # replicate padding, not circular (spec 7c)
    k = k[:, np.maximum(idx - 2, 0)]
    affinity = jnp.einsum("ntpc,ntqc->ntpq", q, k) * (self.dim ** -0.5)
    affinity = jax.nn.softmax(affinity, axis=-1)   # over the key positions of frame t-2
    y = jnp.einsum("ntpq,ntqc->ntpc", affinity, v).reshape(n, h, w, self.dim)
    y = BatchNorm(self.bn_momentum, 1e-5, self.freeze_bn, self.dtype,
                  scale_init=nn.initializers.zeros, name="norm")(y, train and not self.freeze_bn)
    return x + y


class TCA(nn.Module):
  """Temporal-based channel attention: per-(frame, channel) gates from the circular
  temporal differences of the globally pooled input, averaged over offsets 1 and 2."""
  dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, x_att: jax.Array, num_segments: int) -> jax.Array:
    """x: attention input [B*T, h, w, C] (the gates come from it); x_att: TSA output,
    same shape, which the gates scale. Returns [B*T, h, w, C]."""
    n, _, _, c = x.shape
    t = num_segments
    g = jnp.mean(x, axis=(1, 2)).reshape(n // t, t, c)
    # jnp.roll(g, s, axis=1)[t] = g[(t - s) mod T]: circular, unlike TSA (spec 7c).
    d1 = g - jnp.roll(g, 1, axis=1)
    d2 = 0.5 * (g - jnp.roll(g, 2, axis=1))
    init = dict(kernel_init=nn.initializers.normal(0.01), dtype=self.dtype)
    g1 = conv2d(4 * c, 1, use_bias=True, name="g1", **init)
    g2 = conv2d(c, 1, use_bias=True, name="g2", **init)

    def gate(d):  # the MLP is shared between the two offsets
      d = d.reshape(n, 1, 1, c)
      return jax.nn.sigmoid(g2(nn.relu(g1(d))))

    return x_att * (0.5 * (gate(d1) + gate(d2)))


class TCPAttention(nn.Module):
  """TSA -> TCA -> circular temporal conv, + input, ReLU (upstream `TCP_att`).

  With conv_1d off the module returns the attended features without residual, as
  upstream does. At init it is the identity on non-negative inputs: TSA's BN gamma and
  conv_1d's weight start at zero, so the output is relu(x) = x.
  """
  dim: int
  use_tsa: bool = True
  use_tca: bool = True
  use_conv1d: bool = True
  bn_momentum: float = 0.9
  freeze_bn: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [B*T, h, w, C] -> [B*T, h, w, C]."""
    t = num_segments
    x_att = x
    if self.use_tsa:
      x_att = TSA(self.dim, self.bn_momentum, self.freeze_bn, self.dtype, name="tsa")(
          x, t, train)
    if self.use_tca:
      x_att = TCA(self.dim, self.dtype, name="tca")(x, x_att, t)
    if not self.use_conv1d:
      return x_att
    k = temporal_kernel_size(t)
    if k % 2 == 0:
      raise ValueError(f"TCP's temporal conv needs an odd kernel T//2+1; num_segments={t} "
                       f"gives {k} (upstream cannot run it either)")
    n, h, w, c = x_att.shape
    z = x_att.reshape(n // t, t, h, w, c)
    # Circular (k-1)/2 frames each side: what upstream computes on torch <= 1.9, where
    # the released checkpoints were trained (spec 7a; torch >= 1.10 crashes instead).
    p = (k - 1) // 2
    z = jnp.concatenate([z[:, t - p:], z, z[:, :p]], axis=1) if p else z
    z = nn.Conv(c, (k, 1, 1), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros,
                name="conv_1d")(z)
    return nn.relu(z.reshape(n, h, w, c) + x)


class TCPPooling(nn.Module):
  """Channel reduction, temporal attention, covariance pooling, iSQRT, triu vector.

  Attributes:
    dim_reduce: channels after the first reduction (upstream hard-codes 256).
    dim: channels of the covariance, C (128 -> C(C+1)/2 = 8256 features).
    use_tsa, use_tca, use_conv1d: the attention parts (all on in every release).
    sqrt_iters: Newton-Schulz iterations (3 upstream; never an exact sqrtm).
    bn_momentum: flax convention (PyTorch 0.1 is 0.9).
    freeze_bn: TSN partial BN reaches the head too (it lives in `base_model`): its BNs
      use running statistics and their affine parameters get no gradient.
    dtype: computation dtype of the convolutions; the covariance and square root run in
      float32 (or wider), as the Newton-Schulz iteration is sensitive to rounding.
  """
  dim_reduce: int = 256
  dim: int = 128
  use_tsa: bool = True
  use_tca: bool = True
  use_conv1d: bool = True
  sqrt_iters: int = 3
  bn_momentum: float = 0.9
  freeze_bn: bool = False
  dtype: Dtype = jnp.float32

  @property
  def out_features(self) -> int:
    return self.dim * (self.dim + 1) // 2

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [B*T, h, w, C_in] backbone features -> [B, dim*(dim+1)/2] float32."""
    return self.pool(x, num_segments, train)

  def pool(self, x: jax.Array, num_segments: int, train: bool) -> jax.Array:
    """The pooling body; its layers become children of the calling compact method."""
    n, h, w, _ = x.shape
    t = num_segments
    if n % t:
      raise ValueError(f"TCP head: batch {n} is not a multiple of num_segments={t}")
    bn_train = train and not self.freeze_bn
    bn = lambda name: BatchNorm(self.bn_momentum, 1e-5, self.freeze_bn, self.dtype, name=name)
    x = conv2d(self.dim_reduce, 1, dtype=self.dtype, name="layer_reduce1")(x)
    x = nn.relu(bn("layer_reduce_bn1")(x, bn_train))
    x = conv2d(self.dim, 1, dtype=self.dtype, name="layer_reduce2")(x)
    x = nn.relu(bn("layer_reduce_bn2")(x, bn_train))
    if self.use_tsa or self.use_tca or self.use_conv1d:
      x = TCPAttention(self.dim, self.use_tsa, self.use_tca, self.use_conv1d,
                       self.bn_momentum, self.freeze_bn, self.dtype, name="att")(x, t, train)
    # Positions of all T frames form one sample set (M = T*h*w); their order is irrelevant.
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(n // t, t * h * w, self.dim)
    cov = covariance.covariance_pool(x)
    root = covariance.sqrtm_newton_schulz(cov, num_iters=self.sqrt_iters)
    return covariance.triu_vector(root)


class TCPHead(TCPPooling):
  """TCPPooling -> dropout -> fc: [B*T, h, w, C_in] -> logits [B, K] float32.

  One prediction per clip: the covariance pools all frames, so there is no segment
  consensus (reference/tcpnet.md section 1). `num_segments` fixes conv_1d's kernel
  T//2+1, so clips must have that many frames.
  """
  num_classes: int = 400
  num_segments: int = 8
  dropout_rate: float = 0.5
  init_std: float = 0.001

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    if num_segments != self.num_segments:
      raise ValueError(f"tcp head built for num_segments={self.num_segments} (conv_1d "
                       f"kernel {temporal_kernel_size(self.num_segments)}) got clips with "
                       f"T={num_segments}")
    pooled = self.pool(x, num_segments, train).astype(self.dtype)
    return dropout_fc(pooled, self.num_classes, self.dropout_rate, self.init_std, self.dtype,
                      train)


def tcp_head_defaults() -> ml_collections.ConfigDict:
  """TCPNet's head as released (K400 TSN-R50)."""
  return ml_collections.ConfigDict(dict(
      name="tcp",
      num_segments=8,             # T; fixes conv_1d's kernel T//2+1, so clips must match
      dropout_rate=0.5,           # on the covariance vector (K400 0.5, HMDB TSN 0.8)
      fc_init_std=0.001,
      dim_reduce=256,             # first 1x1 reduction (hard-coded upstream)
      dim=128,                    # covariance size C: C(C+1)/2 = 8256 features
      use_tsa=True,               # temporal-based spatial attention
      use_tca=True,               # temporal-based channel attention
      use_conv1d=True,            # circular temporal conv (and the attention residual)
      sqrt_iters=3,               # Newton-Schulz iterations of the iSQRT square root
  ))


@register("head", "tcp", tcp_head_defaults)
def build_tcp_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> TCPHead:
  return TCPHead(
      dim_reduce=int(cfg.dim_reduce), dim=int(cfg.dim), use_tsa=bool(cfg.use_tsa),
      use_tca=bool(cfg.use_tca), use_conv1d=bool(cfg.use_conv1d),
      sqrt_iters=int(cfg.sqrt_iters),
      bn_momentum=float(model_cfg.backbone.get("bn_momentum", 0.9)),
      # Upstream's partial BN freezes every BatchNorm2d of base_model after the first,
      # and TCP sits inside base_model.
      freeze_bn=bool(model_cfg.backbone.get("partial_bn", False)),
      dtype=dtype, num_classes=int(model_cfg.num_classes),
      num_segments=int(cfg.num_segments), dropout_rate=float(cfg.dropout_rate),
      init_std=float(cfg.fc_init_std))
