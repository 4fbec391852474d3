"""Mixup and CutMix on device: pixels and targets mixed consistently.

Clip i is the constant 10 * i and has label i (K = B), so a target row gives exactly the
weights of the source clips, and the mixed pixels must match them. One jitted function
with both on (the beta sampler is slow to compile) covers both kinds.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vidjax.train import mix

B = 6


def test_mixup_and_cutmix_pixels_and_targets_agree():
  clips = jnp.broadcast_to((jnp.arange(B) * 10.0)[:, None, None, None, None],
                           (B, 2, 16, 20, 3)).astype(jnp.uint8)
  labels = jnp.arange(B)
  fn = jax.jit(mix.from_config({"mixup_alpha": 0.8, "cutmix_alpha": 1.0,
                                "mix_switch_prob": 0.5}, B))
  values = 10.0 * np.arange(B)
  kinds = set()
  for seed in range(10):
    out, targets = map(np.asarray, fn(jax.random.key(seed), clips, labels))
    assert out.dtype == np.float32 and targets.shape == (B, B)
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    assert np.count_nonzero(targets > 1e-6, axis=1).max() <= 2   # pairs
    is_cutmix = max(len(np.unique(out[i])) for i in range(B)) == 2
    for i in range(B):
      np.testing.assert_array_equal(out[i, 0], out[i, 1])   # same geometry in every frame
      if is_cutmix:
        np.testing.assert_allclose(out[i].mean(), targets[i] @ values, atol=1e-3)
      else:
        np.testing.assert_allclose(out[i], targets[i] @ values, atol=1e-3)
    if np.any((targets > 1e-3) & (targets < 1 - 1e-3)):
      kinds.add("cutmix" if is_cutmix else "mixup")
  assert kinds == {"cutmix", "mixup"}
  assert mix.from_config({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, B) is None
