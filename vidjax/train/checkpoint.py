"""Orbax checkpoints: training state with data-iterator position, and bare variables.

Two on-disk layouts are read by `load_variables`:

* a training workdir: `WORKDIR/checkpoints/<step>/{state,data}` written by `Checkpointer`;
* a variables directory: `DIR/variables` written by `save_variables` (the converters).

Orbax writes each step into a temporary directory and renames it when complete, so a
killed run never leaves a half-written checkpoint that resume would pick up. A step that
was damaged afterwards (a truncated, emptied or deleted file) is reported in one line by
`Checkpointer.restore_latest`, moved to `WORKDIR/damaged_checkpoints/`, and the run
resumes from the newest intact step; `load_variables` refuses it in one line. A save
that fails (disk full, unwritable directory) leaves the previous steps as they were.
`BestCheckpoint` keeps the variables of the best evaluation under `WORKDIR/best/`.

What may be resumed or loaded: `check_workdir_config` refuses to resume a workdir made by
another config, and `merge_init_from` fits `config.init_from`'s variables to a model.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging as std_logging
import os
import re
import shutil
import sys
from typing import Any, Iterator, Optional

import flax
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from absl import logging

VARIABLES_ITEM = "variables"
META_FILE = "vidjax_meta.json"
CONFIG_FILE = "config.json"
DAMAGED_DIR = "damaged_checkpoints"
BEST_DIR = "best"
BEST_FILE = "best.json"


class CheckpointError(RuntimeError):
  """A checkpoint cannot be read or does not fit the run."""


class TrainingError(RuntimeError):
  """Training cannot go on (non-finite loss, a workdir of another config, ...)."""


class TrainingStopped(SystemExit):
  """Training stopped on a signal after saving a checkpoint; rerunning resumes it.

  A SystemExit, so that `python -m vidjax.main` exits with `code` (128 + the signal
  number: 143 for SIGTERM, 130 for SIGINT, as a shell reports a process the signal
  ended) and no traceback: schedulers and retry loops see an unfinished run, not a
  success (0) or bad input (2). `message` is the line printed for the user.
  """

  def __init__(self, message: str, signum: int, step: int, directory: str):
    super().__init__(128 + signum)
    self.message, self.signum, self.step, self.directory = message, signum, step, directory

  def __str__(self) -> str:
    return self.message


def _abspath(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path))


def describe_error(error: BaseException, limit: int = 300) -> str:
  """One line for an exception chain: the innermost message that says what failed.

  Orbax wraps TensorStore's reason ("OUT_OF_RANGE: Error reading ... local file F ...
  value of size 100") in generic errors ("Encountered error while reading array index");
  the reason, shortened to the file and what is wrong with it, is the line a person needs.
  """
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    chain.append(error)
    error = error.__cause__ or error.__context__
  for e in reversed(chain):
    text = str(e).strip()
    if text and not text.startswith("Encountered error while reading"):
      break
  else:
    e, text = chain[0], str(chain[0]).strip()
  if isinstance(e, OSError) and e.strerror:
    text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
  line = _tensorstore_reason(" ".join(text.split())) or " ".join(text.split())
  line = line or type(e).__name__
  return line if len(line) <= limit else line[:limit - 5] + " [...]"


def _tensorstore_reason(text: str) -> Optional[str]:
  """"FILE is truncated (N bytes)" and the like for TensorStore's read errors."""
  files = re.findall(r'local file "([^"]+)"', text)
  if not files:
    return None
  name = files[-1]
  code = text.split(":", 1)[0]
  size = re.search(r"is not valid for value of size (\d+)", text)
  if size:
    n = int(size.group(1))
    if os.path.isdir(name):  # the database directory: find the short file in it
      short = [os.path.join(r, f) for r, _, fs in os.walk(name) for f in fs
               if os.path.getsize(os.path.join(r, f)) == n]
      if len(short) == 1:
        name = short[0]
      else:
        return f"a file under {name} is truncated ({n} bytes)"
    return f"{name} is truncated ({n} bytes)"
  detail = text.rsplit(": ", 1)[-1][:120]
  if os.path.isdir(name):
    return f"a file under {name} is missing or damaged ({code}: {detail})"
  return f"{name} is damaged ({code}: {detail})"


class _DropLibraryErrors(std_logging.Filter):
  """Drops the errors orbax and TensorStore log for a failure that is raised anyway."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    library = ("/orbax/" in record.pathname or "/tensorstore/" in record.pathname
               or record.name == "asyncio")
    return not (library and record.levelno >= std_logging.ERROR)


@contextlib.contextmanager
def _quiet_failures(always_collect: bool = False) -> Iterator[None]:
  """Keeps a failing read to the one line the caller writes: orbax logs each failed array
  read, and its abandoned coroutines report themselves as unraisable exceptions.

  always_collect: also end abandoned coroutines when nothing was raised (orbax reads a
  damaged step's metadata without raising); else only after a failure, since a full
  collection is slow in a large process and every save comes here."""
  hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
  drop = _DropLibraryErrors()
  # Orbax logs through absl's logger; a filter on it (and on the root handlers, where
  # records of other loggers end) drops the records before any handler sees them.
  targets = [std_logging.getLogger("absl"), std_logging.getLogger("asyncio"),
             *std_logging.getLogger().handlers]
  for t in targets:
    t.addFilter(drop)
  failed = True
  try:
    yield
    failed = False
  finally:
    if failed or always_collect:
      gc.collect()  # the abandoned coroutines end now, while still quiet
    for t in targets:
      t.removeFilter(drop)
    sys.unraisablehook = hook


def find_damage(step_dir: str, items: tuple[str, ...] = ("state",)) -> Optional[str]:
  """What is visibly wrong with an orbax step directory (a missing item, an empty file,
  a data position that is not JSON), or None. Damage inside the array files shows only
  when they are read."""
  for item in items:
    if not os.path.isdir(os.path.join(step_dir, item)):
      return f"{item}/ is missing"
    if item != "data" and not os.path.isfile(os.path.join(step_dir, item, "_METADATA")):
      return f"{item}/_METADATA is missing"
  for root, _, files in os.walk(step_dir):
    for name in sorted(files):
      path = os.path.join(root, name)
      if os.path.getsize(path) == 0:  # orbax and grain write no empty files
        return f"{os.path.relpath(path, step_dir)} is empty"
      if "data" in items and root == os.path.join(step_dir, "data") and name.endswith(".json"):
        try:
          with open(path) as f:
            json.load(f)
        except ValueError:
          return f"data/{name} is not valid JSON (truncated?)"
  return None


def save_variables(directory: str, variables: dict, meta: Optional[dict] = None) -> None:
  """Writes `variables` (a pytree of arrays) as `directory/variables` in orbax format.

  `meta` (json-able) is stored beside it, for example the converter source and config.
  """
  directory = _abspath(directory)
  os.makedirs(directory, exist_ok=True)
  target = os.path.join(directory, VARIABLES_ITEM)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(target, jax.tree.map(jax.numpy.asarray, variables), force=True)
  if meta is not None and jax.process_index() == 0:
    write_json_atomic(os.path.join(directory, META_FILE), meta)


def write_json_atomic(path: str, value: Any) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _restore_tree(path: str, what: str) -> Any:
  """Restores a pytree onto this process's first device, whatever topology saved it.

  Raises CheckpointError naming `what` (e.g. "checkpoint step 6 in DIR") and the first
  thing found wrong, in one line.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  step_dir = os.path.dirname(path)
  damage = find_damage(step_dir, (os.path.basename(path),))
  if damage:
    raise CheckpointError(f"{what} cannot be read: {damage}.")
  try:
    with _quiet_failures(), ocp.StandardCheckpointer() as ckptr:
      # The item's own metadata: the Checkpointer's `metadata` looks for a step-level
      # _CHECKPOINT_METADATA inside the item directory, which a CheckpointManager writes
      # one level up, and warns on every healthy training checkpoint.
      metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(path))
      target = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
      return ckptr.restore(path, target)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{what} cannot be read: {describe_error(e)}") from e


def load_variables(path: str) -> dict:
  """Returns `{"params": ..., "batch_stats": ...}` from a workdir or a variables dir.

  Args:
    path: a training workdir (the latest checkpoint is used), one step directory of
      it, or a directory written by `save_variables` / the converters.
  """
  path = _abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"load_variables: {path} is not a directory.")
  if os.path.isfile(os.path.join(path, BEST_FILE)):  # WORKDIR/best: follow its pointer
    best = read_best(path)
    path = os.path.join(path, str(best["step"]))
  if os.path.isdir(os.path.join(path, VARIABLES_ITEM)):
    return dict(_restore_tree(os.path.join(path, VARIABLES_ITEM), f"checkpoint {path}"))
  if os.path.isdir(os.path.join(path, "state")):
    state = _restore_tree(os.path.join(path, "state"), _step_name(path))
    return _variables_from_state(state, path)
  ckpt_dir = os.path.join(path, "checkpoints")
  if os.path.isdir(ckpt_dir):
    steps = ocp.utils.checkpoint_steps(ckpt_dir)
    if steps:
      step_dir = os.path.join(ckpt_dir, str(max(steps)))
      older = sorted(s for s in steps if s < max(steps))
      try:
        state = _restore_tree(os.path.join(step_dir, "state"), _step_name(step_dir))
      except CheckpointError as e:
        hint = (f" An older step may be intact: {ckpt_dir}/{older[-1]} (training resumes "
                "from the newest intact step by itself)." if older else "")
        raise CheckpointError(f"{str(e).rstrip('.')}.{hint}") from e
      return _variables_from_state(state, path)
  raise CheckpointError(
      f"load_variables: no checkpoint in {path}: expected '{VARIABLES_ITEM}/' (converter "
      "output), 'state/' (one step) or 'checkpoints/<step>/state' (a training workdir).")


def _step_name(step_dir: str) -> str:
  """"checkpoint step 6 in /w/checkpoints" for a step directory of a workdir."""
  parent, name = os.path.split(step_dir.rstrip("/"))
  return f"checkpoint step {name} in {parent}" if name.isdigit() else f"checkpoint {step_dir}"


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
    self.workdir = _abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    try:
      # A damaged step's metadata: reported when it is restored (only an existing
      # directory can hold one).
      with _quiet_failures(always_collect=os.path.isdir(self.directory)):
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data"))
    except OSError as e:
      raise CheckpointError(f"Cannot create the checkpoint directory {self.directory}: "
                            f"{describe_error(e)}. Use a --workdir that can be written.") from e

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iter: Any = None, force: bool = False) -> bool:
    """Saves `step`; on failure (disk full, no permission) the earlier steps stay intact
    and a CheckpointError names the path."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    previous = self.latest_step()
    try:
      with _quiet_failures():  # orbax logs the failure with its traceback; one line here
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, previous, e) from e

  def _save_error(self, step: int, previous: Optional[int], e: Exception) -> CheckpointError:
    kept = (f"the previous checkpoint (step {previous}) is intact" if previous is not None
            else "no earlier checkpoint exists")
    advice = ("Free some space or use a --workdir on another disk, then rerun to resume"
              if getattr(e, "errno", None) == errno.ENOSPC else "Rerun to resume once it "
              "can be written")
    return CheckpointError(f"Could not save checkpoint step {step} in {self.directory}: "
                           f"{describe_error(e)}; {kept}. {advice}.")

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> Any:
    """The state of `step` (and the data position into `data_iter`); CheckpointError in
    one line when the step cannot be read."""
    what = f"checkpoint step {step} in {self.directory}"
    items = ("state",) if data_iter is None else ("state", "data")
    damage = find_damage(os.path.join(self.directory, str(step)), items)
    if damage:
      raise CheckpointError(f"{what} cannot be read: {damage}")
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      with _quiet_failures():
        restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # pylint: disable=broad-except
      if _is_user_error(e):  # e.g. resumed with another data.num_workers: not damage
        raise
      raise CheckpointError(f"{what} cannot be read: {describe_error(e)}") from e
    return restored["state"]

  def restore_latest(self, abstract_state: Any,
                     data_iter: Any = None) -> tuple[Optional[int], Any]:
    """(step, state) of the newest step that reads back, or (None, None) without steps.

    A newer step that cannot be read is reported in one line and moved to
    `WORKDIR/damaged_checkpoints/<step>` (kept for inspection, and out of the way of the
    steps this run will save again). Raises CheckpointError when no step reads back.
    """
    steps = self.all_steps()
    problems = []
    for step in reversed(steps):
      try:
        state = self.restore(step, abstract_state, data_iter)
      except CheckpointError as e:
        problems.append((step, str(e)))
        continue
      for bad, message in problems:
        moved = self._move_damaged(bad)
        logging.warning("%s; moved it to %s and resumed from step %d.", message.rstrip("."),
                        moved, step)
      return step, state
    if not problems:
      return None, None
    reasons = "; ".join(m.split(" cannot be read: ", 1)[-1].rstrip(".") + f" (step {s})"
                        for s, m in problems)
    raise CheckpointError(
        f"No intact checkpoint in {self.directory}: {reasons}. Nothing was deleted; start "
        f"fresh with a new --workdir (or move {self.directory} away).")

  def _move_damaged(self, step: int) -> str:
    target = os.path.join(self.workdir, DAMAGED_DIR, str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      suffix = 1
      while os.path.exists(target):  # the same step damaged in an earlier resume
        target = os.path.join(self.workdir, DAMAGED_DIR, f"{step}.{suffix}")
        suffix += 1
      shutil.move(os.path.join(self.directory, str(step)), target)
    _sync("vidjax_move_damaged_checkpoint")
    with _quiet_failures(always_collect=True):
      self._manager.reload()
    return target

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _is_user_error(error: BaseException) -> bool:
  # Imported here: the data pipeline is not needed to read variables (converters).
  from vidjax.data import pipeline  # pylint: disable=import-outside-toplevel
  while error is not None:
    if isinstance(error, pipeline.DataError):
      return True
    error = error.__cause__ or error.__context__
  return False


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


# ---------------------------------------------------------------------------- best checkpoint
def best_mode(metric: str, mode: str) -> str:
  """"max" or "min" for `config.best_metric_mode` ("auto": min for a loss)."""
  if mode not in ("auto", "max", "min"):
    raise ValueError(f"config.best_metric_mode={mode!r}; expected auto, max or min.")
  if mode == "auto":
    return "min" if metric.rsplit("/", 1)[-1].endswith("loss") else "max"
  return mode


def read_best(directory: str) -> dict[str, Any]:
  """`WORKDIR/best/best.json`: {"step", "metric", "value", "mode"}."""
  path = os.path.join(directory, BEST_FILE)
  try:
    with open(path) as f:
      best = json.load(f)
    int(best["step"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{path} cannot be read: {describe_error(e)}") from e
  return best


class BestCheckpoint:
  """Keeps the variables of the evaluation with the best `metric` in `WORKDIR/best`.

  Layout: `best/<step>/variables` (orbax, as `save_variables` writes) and `best/best.json`
  naming the step, metric and value; `load_variables(WORKDIR/best)` follows it. The json
  is replaced atomically after the new step is complete, and only then is the previous
  step removed, so a kill at any point leaves a best.json that names a whole checkpoint.
  """

  def __init__(self, workdir: str, metric: str, mode: str = "auto"):
    self.directory = os.path.join(_abspath(workdir), BEST_DIR)
    self.metric, self.mode = metric, best_mode(metric, mode)
    self.best: Optional[dict[str, Any]] = None
    if os.path.isfile(os.path.join(self.directory, BEST_FILE)):
      best = read_best(self.directory)
      if best.get("metric") == metric and best.get("mode") == self.mode:
        self.best = best  # a resumed run only replaces it with a better one

  def is_better(self, value: float) -> bool:
    if not np.isfinite(value):
      return False
    if self.best is None:
      return True
    old = float(self.best["value"])
    return value > old if self.mode == "max" else value < old

  def update(self, step: int, results: dict[str, float], variables: dict) -> bool:
    """Saves `variables` when `results[metric]` beats the best so far; returns whether."""
    if self.metric not in results:
      raise TrainingError(f"config.best_metric={self.metric!r} is not among the eval "
                          f"metrics: {', '.join(sorted(results))}.")
    value = float(results[self.metric])
    if not self.is_better(value):
      return False
    step_dir = os.path.join(self.directory, str(step))
    if os.path.isdir(step_dir) and jax.process_index() == 0:
      shutil.rmtree(step_dir)  # left by a run killed before its best.json named it
    _sync("vidjax_best_clear")
    try:
      save_variables(step_dir, variables)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"Could not save the best checkpoint (step {step}) to "
                            f"{step_dir}: {describe_error(e)}.") from e
    previous = self.best
    self.best = {"step": int(step), "metric": self.metric, "value": value, "mode": self.mode}
    if jax.process_index() == 0:
      write_json_atomic(os.path.join(self.directory, BEST_FILE), self.best)
      for name in os.listdir(self.directory):
        if name.isdigit() and int(name) != step:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    _sync("vidjax_best_done")
    logging.info("Best %s so far: %.4f at step %d (was %s); saved in %s.", self.metric, value,
                 step, "none" if previous is None else f"{float(previous['value']):.4f}",
                 step_dir)
    return True


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
    write_json_atomic(path, current)


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
