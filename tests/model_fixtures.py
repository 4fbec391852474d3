"""Tiny saved models for the CLI tests: random variables (no init compile), saved as a
converter would save them, with the config.json a training run writes beside them."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax import checkpoint, models
from vidjax.data import demo
from vidjax.train import checkpoint as ckpt_lib


def host_variables(module, *args, seed: int = 0, **kwargs) -> dict:
  """Variables of `module.init(key, *args, **kwargs)`'s shapes, filled on the host: He-scaled
  kernels, scales and variances in [0.5, 1.5], other leaves N(0, 0.1). Compiling a real
  init spends tens of seconds in XLA on the random initialisers; the trace is enough."""
  abstract = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)
  rs = np.random.RandomState(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", None)   # sown collections end in sequence indices
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rs.randn(*leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return rs.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return np.asarray(rs.randn(*leaf.shape) * 0.1, np.float32)

  return jax.tree_util.tree_map_with_path(fill, dict(abstract))


def random_variables(config: ml_collections.ConfigDict, seed: int = 0,
                     calibrate: bool = True) -> dict:
  """Variables of `config.model` (`host_variables`), then BatchNorm statistics calibrated
  on demo clips, so that the logits are O(1) and depend on the input (with random
  statistics a ResNet's output is nearly the same for every clip).
  """
  model = models.build_model(config.model)
  d = config.data
  clips = jnp.zeros((1, d.num_frames, d.image_size, d.image_size, 3), jnp.uint8)
  variables = host_variables(model, clips, seed=seed, train=False)
  if not calibrate or "batch_stats" not in variables:
    return variables
  # One train-mode pass with momentum 0 sets the running statistics to the batch's.
  calib_config = config.copy_and_resolve_references()
  with calib_config.unlocked():
    calib_config.model.backbone.bn_momentum = 0.0
  calib = models.build_model(calib_config.model)
  batch = np.stack([demo.make_clip(i, seed=seed, split="calibration", num_frames=d.num_frames,
                                   image_size=d.image_size)[0] for i in range(12)])
  _, updates = jax.jit(lambda v, c: calib.apply(v, c, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": jax.random.key(0)}))(
                                                    variables, batch)
  variables["batch_stats"] = jax.tree.map(np.asarray, updates["batch_stats"])
  return variables


def save_model(directory: str, config: ml_collections.ConfigDict, seed: int = 0,
               calibrate: bool = True) -> dict:
  """Writes `random_variables` of `config.model` to `directory/variables` and the config as
  `directory/config.json` (with the training run's writer)."""
  variables = random_variables(config, seed, calibrate)
  checkpoint.save_variables(directory, variables)
  ckpt_lib.check_workdir_config(config, directory, has_checkpoint=False)
  return variables
