"""Mixup and CutMix of a clip batch, on device, inside the jitted train step.

Pure functions of (rng, clips [B, T, H, W, 3], labels [B]): each returns the mixed clips
(float32, 0..255) and soft targets [B, K]. As MMAction2's `MixupBlending` /
`CutmixBlending`: one mixing coefficient lam ~ Beta(alpha, alpha) per batch, the batch
mixed with a random permutation of itself; CutMix pastes one box, the same for every
frame (a tube), and sets lam to the kept area. With both on, each batch uses CutMix
with probability `switch_prob`, else Mixup.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp


def _permute(rng: jax.Array, clips: jax.Array, targets: jax.Array):
  perm = jax.random.permutation(rng, clips.shape[0])
  return clips[perm], targets[perm]


def mixup(rng: jax.Array, clips: jax.Array, targets: jax.Array, alpha: float
          ) -> tuple[jax.Array, jax.Array]:
  """Mixup: lam * x + (1 - lam) * x[perm]; targets [B, K] mixed alike."""
  k_lam, k_perm = jax.random.split(rng)
  lam = jax.random.beta(k_lam, alpha, alpha)
  x = clips.astype(jnp.float32)
  x2, t2 = _permute(k_perm, x, targets)
  return lam * x + (1 - lam) * x2, lam * targets + (1 - lam) * t2


def cutmix(rng: jax.Array, clips: jax.Array, targets: jax.Array, alpha: float
           ) -> tuple[jax.Array, jax.Array]:
  """CutMix: a box of area (1 - lam) of every frame comes from x[perm]; targets mix by
  the area actually pasted (the box is clipped at the borders)."""
  k_lam, k_perm, k_y, k_x = jax.random.split(rng, 4)
  lam = jax.random.beta(k_lam, alpha, alpha)
  h, w = clips.shape[-3], clips.shape[-2]
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = (h * cut).astype(jnp.int32), (w * cut).astype(jnp.int32)
  cy = jax.random.randint(k_y, (), 0, h)
  cx = jax.random.randint(k_x, (), 0, w)
  y0, y1 = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  x0, x1 = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)            # [H, W]
  x = clips.astype(jnp.float32)
  x2, t2 = _permute(k_perm, x, targets)
  mixed = jnp.where(box[:, :, None], x2, x)
  kept = 1.0 - box.sum() / (h * w)
  return mixed, kept * targets + (1 - kept) * t2


def mix_batch(rng: jax.Array, clips: jax.Array, labels: jax.Array, num_classes: int, *,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, switch_prob: float = 0.5
              ) -> tuple[jax.Array, jax.Array]:
  """Mixed clips (float32) and soft targets [B, K] of int labels [B]."""
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    k_switch, k_mix = jax.random.split(rng)
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
    return jax.lax.cond(use_cutmix,
                        lambda: cutmix(k_mix, clips, targets, cutmix_alpha),
                        lambda: mixup(k_mix, clips, targets, mixup_alpha))
  if cutmix_alpha > 0:
    return cutmix(rng, clips, targets, cutmix_alpha)
  if mixup_alpha > 0:
    return mixup(rng, clips, targets, mixup_alpha)
  return clips, targets


def from_config(data_config, num_classes: int) -> Optional[Callable]:
  """`fn(rng, clips, labels) -> (clips, targets)` of the data config, or None when off."""
  mixup_alpha = float(data_config.get("mixup_alpha", 0.0))
  cutmix_alpha = float(data_config.get("cutmix_alpha", 0.0))
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return None
  switch_prob = float(data_config.get("mix_switch_prob", 0.5))

  def fn(rng, clips, labels):
    return mix_batch(rng, clips, labels, num_classes, mixup_alpha=mixup_alpha,
                     cutmix_alpha=cutmix_alpha, switch_prob=switch_prob)

  return fn
