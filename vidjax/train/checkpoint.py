"""Orbax checkpoints: training state with data-iterator position, and bare variables.

Two on-disk layouts are read by `load_variables`:

* a training workdir: `WORKDIR/checkpoints/<step>/{state,data}` written by `Checkpointer`;
* a variables directory: `DIR/variables` written by `save_variables` (the converters).

Orbax writes each step into a temporary directory and renames it when complete, so a
killed run never leaves a half-written checkpoint that resume would pick up.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp

VARIABLES_ITEM = "variables"
META_FILE = "vidjax_meta.json"


class CheckpointError(RuntimeError):
  """A checkpoint cannot be read or does not fit the run."""


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
