"""TANet's temporal adaptive module, TAM (Liu et al., ICCV 2021; MMAction2's `TANet`),
written from reference/mmaction2_cost.md section 13.

Inside every block, after the first conv's BN and ReLU and before the spatial conv
(slot `inner_module`), on x [N*T, H, W, C]:

  theta = mean over H, W                                                  [N, T, C]
  G (global): per (clip, channel) temporal profile [T] -> Linear(T, alpha T, no bias)
     -> BN1d(alpha T) -> ReLU -> Linear(alpha T, K, no bias) -> softmax: a K-tap kernel
  L (local): Conv1d(C -> C / beta, k3, no bias) over time -> BN1d -> ReLU
     -> Conv1d(C / beta -> C, k1, no bias) -> sigmoid: an attention [N, T, C]
  y[t] = sum_k kernel[k] * (x * L)[t + k - K // 2]   (zero padding; per clip and channel)

G's Linear has T inputs, so a model is built for one `num_segments`. Frames are
video-major: row n * T + t of [N*T, H, W, C] is frame t of clip n. Children `G_0`,
`G_1`, `G_3`, `L_0`, `L_1`, `L_3` mirror upstream's `tam.G.0` ... `tam.L.3`.

Config (`model.tam`, registered field 'tam'): num_segments (T), alpha (G's widening, 2),
beta (L's reduction, 4), adaptive_kernel_size (K, 3). Every block of every stage.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vidjax.models.hooks import BlockInfo
from vidjax.models.layers import BatchNorm, Dtype
from vidjax.models.registry import register


class TAM(nn.Module):
  """TAM as a hook module: [N*T, H, W, C] -> [N*T, H, W, C]."""
  num_segments: int = 8
  alpha: int = 2
  beta: int = 4
  adaptive_kernel_size: int = 3
  bn_eps: float = 1e-5
  bn_momentum: float = 0.9
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    nt, h, w, c = x.shape
    t, k = num_segments, self.adaptive_kernel_size
    if t != self.num_segments:
      raise ValueError(f"TAM is built for model.tam.num_segments={self.num_segments} "
                       f"frames, got clips of {t}")
    if nt % t:
      raise ValueError(f"TAM: batch {nt} is not a multiple of num_segments={t}")
    n = nt // t
    clips = x.reshape(n, t, h, w, c)
    theta = jnp.mean(clips, axis=(2, 3))                                # [N, T, C]

    def dense(features, name):
      return nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                      name=name)

    def bn(name):
      return BatchNorm(self.bn_momentum, self.bn_eps, dtype=self.dtype, name=name)

    profiles = jnp.swapaxes(theta, 1, 2).reshape(n * c, t)             # rows (n, c)
    g = nn.relu(bn("G_1")(dense(t * self.alpha, "G_0")(profiles), train))
    kernel = nn.softmax(dense(k, "G_3")(g).astype(jnp.float32), axis=-1)
    kernel = jnp.swapaxes(kernel.reshape(n, c, k), 1, 2)               # [N, K, C]

    local = nn.Conv(c // self.beta, (3,), padding=((1, 1),), use_bias=False,
                    dtype=self.dtype, param_dtype=jnp.float32, name="L_0")(theta)
    local = nn.relu(bn("L_1")(local, train))
    local = nn.sigmoid(nn.Conv(c, (1,), use_bias=False, dtype=self.dtype,
                               param_dtype=jnp.float32, name="L_3")(local))  # [N, T, C]

    v = clips * local[:, :, None, None, :].astype(x.dtype)
    pad = k // 2
    v = jnp.pad(v, ((0, 0), (pad, k - 1 - pad), (0, 0), (0, 0), (0, 0)))
    kernel = kernel.astype(x.dtype)
    y = sum(kernel[:, j, None, None, None, :] * v[:, j:j + t] for j in range(k))
    return y.reshape(nt, h, w, c)


def tam_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      num_segments=8,          # T: G's first Linear has T inputs
      alpha=2,                 # G: Linear(T, alpha T)
      beta=4,                  # L: Conv1d(C, C / beta)
      adaptive_kernel_size=3,  # K taps of the adaptive temporal conv
  ))


def _factory(info: BlockInfo, **fields) -> nn.Module:
  return TAM(**fields)


@register("temporal", "tam", tam_defaults)
def build_tam(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict) -> dict:
  fields = dict(num_segments=int(cfg.num_segments), alpha=int(cfg.alpha), beta=int(cfg.beta),
                adaptive_kernel_size=int(cfg.adaptive_kernel_size))
  if min(fields.values()) < 1 or fields["adaptive_kernel_size"] % 2 == 0:
    raise ValueError(f"model.tam: num_segments, alpha and beta must be >= 1 and "
                     f"adaptive_kernel_size odd, got {fields}")
  backbone = model_cfg.backbone
  # TAM's BatchNorms follow the trunk's eps and momentum.
  fields.update(bn_eps=float(backbone.get("bn_eps", 1e-5)),
                bn_momentum=float(backbone.get("bn_momentum", 0.9)))
  return {"inner_module": functools.partial(_factory, **fields)}
