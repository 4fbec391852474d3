"""Orbax checkpoints: training state with data-iterator position, and bare variables.

Two on-disk layouts are read by `load_variables`:

* a training workdir: `WORKDIR/checkpoints/<step>/{state,data}` written by `Checkpointer`;
* a variables directory: `DIR/variables` written by `save_variables` (the converters).

Orbax writes each step into a temporary directory and renames it when complete, so a
killed run never leaves a half-written checkpoint that resume would pick up.

What may be resumed or loaded: `check_workdir_config` refuses to resume a workdir made by
another config, and `merge_init_from` fits `config.init_from`'s variables to a model.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

import flax
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

VARIABLES_ITEM = "variables"
META_FILE = "vidjax_meta.json"
CONFIG_FILE = "config.json"


class CheckpointError(RuntimeError):
  """A checkpoint cannot be read or does not fit the run."""


class TrainingError(RuntimeError):
  """Training cannot go on (non-finite loss, a workdir of another config, ...)."""


def _abspath(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))


def save_variables(directory: str, variables: dict, meta: Optional[dict] = None) -> None:
  """Writes `variables` (a pytree of arrays) as `directory/variables` in orbax format.

  `meta` (json-able) is stored beside it, for example the converter source and config.
  """
  directory = _abspath(directory)
  os.makedirs(directory, exist_ok=True)
  target = os.path.join(directory, VARIABLES_ITEM)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(target, jax.tree.map(jax.numpy.asarray, variables), force=True)
  if meta is not None:
    with open(os.path.join(directory, META_FILE), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)


def _restore_tree(path: str) -> Any:
  """Restores a pytree onto this process's first device, whatever topology saved it."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(path).item_metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata)
    return ckptr.restore(path, target)


def load_variables(path: str) -> dict:
  """Returns `{"params": ..., "batch_stats": ...}` from a workdir or a variables dir.

  Args:
    path: a training workdir (the latest checkpoint is used), one step directory of
      it, or a directory written by `save_variables` / the converters.
  """
  path = _abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"load_variables: {path} is not a directory.")
  if os.path.isdir(os.path.join(path, VARIABLES_ITEM)):
    return dict(_restore_tree(os.path.join(path, VARIABLES_ITEM)))
  if os.path.isdir(os.path.join(path, "state")):
    state = _restore_tree(os.path.join(path, "state"))
    return _variables_from_state(state, path)
  ckpt_dir = os.path.join(path, "checkpoints")
  if os.path.isdir(ckpt_dir):
    steps = ocp.utils.checkpoint_steps(ckpt_dir)
    if steps:
      state = _restore_tree(os.path.join(ckpt_dir, str(max(steps)), "state"))
      return _variables_from_state(state, path)
  raise CheckpointError(
      f"load_variables: no checkpoint in {path}: expected '{VARIABLES_ITEM}/' (converter "
      "output), 'state/' (one step) or 'checkpoints/<step>/state' (a training workdir).")


def _variables_from_state(state: dict, path: str) -> dict:
  if "params" not in state:
    raise CheckpointError(f"load_variables: checkpoint in {path} has no 'params' "
                          f"(keys: {sorted(state)}).")
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  return variables


class Checkpointer:
  """Periodic training checkpoints of the train state and the grain iterator.

  Keeps the last `max_to_keep` steps under `workdir/checkpoints`. The config that made
  the run is stored in `workdir/config.json` so that a resume under another config is
  refused.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3, async_save: bool = False):
    self.directory = os.path.join(_abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any = None, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> Any:
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


# ---------------------------------------------------------------------------- resume identity
def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


def flat_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as json values under dotted keys ("optim.lr": 0.01), as `CONFIG_FILE`
  records it."""
  return _flatten(json.loads(config.to_json_best_effort()))


# Fields that define the checkpoint and the data order; resuming with others is refused,
# since the saved state or iterator position would mean something else. The schedule
# (optim.*), run length, intervals, eval and loader-speed settings may change on resume,
# and so may remat, which changes how the backward pass is computed, not its result.
_IDENTITY_FIELDS = ("model.", "data.", "seed", "batch_size")
_FREE_FIELDS = ("data.num_workers", "data.num_threads", "data.prefetch", "data.root",
                "data.train_list", "data.eval_list", "data.eval_examples",
                "data.decode_threads", "data.seek", "data.jpeg_backend",
                "model.backbone.remat")


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str,
                         has_checkpoint: bool) -> None:
  """Refuses to resume a checkpoint made by another config; records the config.

  Without a checkpoint there is nothing to resume, so a failed or stopped-early run never
  blocks its workdir.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  current = json.loads(config.to_json_best_effort())
  if has_checkpoint and os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    old, new = _flatten(previous), _flatten(current)
    diffs = sorted(k for k in set(old) | set(new)
                   if k.startswith(_IDENTITY_FIELDS) and not k.startswith(_FREE_FIELDS)
                   and old.get(k) != new.get(k))
    if diffs:
      lines = "\n".join(f"  {k}: workdir has {old.get(k)!r}, config has {new.get(k)!r}"
                        for k in diffs)
      raise TrainingError(
          f"Refusing to resume: workdir {workdir} was made by another config "
          f"({path}); these fields differ:\n{lines}\nUse a new --workdir, or the "
          "config of that run.")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- init_from
def merge_init_from(params: Any, batch_stats: Any, loaded: dict, drop_regex: str,
                    source: str) -> tuple[Any, Any]:
  """Takes every variable from `loaded`; tensors whose path matches `drop_regex` and
  whose shape differs (the classifier of another class count) keep their init.

  Raises an error listing every missing, unexpected or mismatched variable otherwise.
  """
  ours = {"params": params, "batch_stats": batch_stats}
  flat_ours = flax.traverse_util.flatten_dict(ours, sep="/")
  flat_loaded = flax.traverse_util.flatten_dict(
      {k: loaded.get(k, {}) for k in ("params", "batch_stats")}, sep="/")
  problems, dropped, merged = [], [], {}
  for key, value in flat_ours.items():
    if key not in flat_loaded:
      problems.append(f"missing in checkpoint: {key} {tuple(value.shape)}")
      continue
    new = flat_loaded[key]
    if tuple(new.shape) != tuple(value.shape):
      if re.search(drop_regex, key):
        dropped.append(key)
        merged[key] = value
        continue
      problems.append(f"shape mismatch: {key}: model {tuple(value.shape)}, "
                      f"checkpoint {tuple(new.shape)}")
      continue
    # Host numpy, so the caller can place it on any mesh (multi-host included).
    merged[key] = np.asarray(new, value.dtype)
  problems += [f"unexpected in checkpoint: {k}" for k in flat_loaded if k not in flat_ours]
  if problems:
    raise TrainingError(f"init_from={source}: the checkpoint does not fit the model:\n  "
                        + "\n  ".join(problems))
  if dropped:
    logging.info("init_from: kept the initialisation of %s (class count differs).", dropped)
  tree = flax.traverse_util.unflatten_dict(merged, sep="/")
  return tree.get("params", {}), tree.get("batch_stats", {})
