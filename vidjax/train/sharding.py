"""The device mesh and how arrays are placed on it, as configuration.

Mesh axes (`config.mesh`, pairs of name and size, -1 = the remaining devices):

* `data`: the batch is split over it; parameters are replicated along it.
* `fsdp`: the batch is split over it too, and large parameters and their optimiser
  state are sharded over it (fully sharded data parallelism): XLA gathers a tensor where
  it is used and reduce-scatters its gradient.
* `model`: for tensor-parallel rules; the batch is replicated along it.

Partition rules (`config.partition_rules`) place every leaf of the train state
(parameters, BatchNorm statistics, optimiser state). Each rule is `(regex, spec)`; the
regex is searched in the leaf's path, e.g. `params/backbone/layer1_0/conv1/kernel` or
`opt_state/0/trace/backbone/layer1_0/conv1/kernel`, and the first match wins. A spec is

* `"replicate"`: a full copy on every device;
* `"fsdp"`: tensors of at least `config.fsdp_min_size` elements are split over `fsdp`
  along their largest dimension that the axis size divides (the last one on ties);
  smaller ones are replicated (a no-op when the mesh has no `fsdp` axis);
* a tuple with one entry per dimension: an axis name, a tuple of names, or None, as in
  `jax.sharding.PartitionSpec`; e.g. `(None, None, None, "model")` splits a conv
  kernel's output channels over `model`.

Leaves no rule matches are replicated. Global batches are assembled from each process's
local rows with `jax.make_array_from_process_local_data`, so the same code runs on one
CPU and on a multi-host pod.
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
MODEL_AXIS = "model"
MESH_AXES = (DATA_AXIS, FSDP_AXIS, MODEL_AXIS)
# Axes the batch is split over, in this order (rows of a device = one contiguous block).
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

DEFAULT_RULES = ((r"(^|/)batch_stats/", "replicate"), (r".*", "fsdp"))


def make_mesh(mesh_axes: Sequence[tuple[str, int]] = ((DATA_AXIS, -1),),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default: all, every process's) with named axes.

  Args:
    mesh_axes: pairs (axis name, size) with names from `data`, `fsdp`, `model`; one
      size may be -1 (the rest), e.g. `(("data", -1),)` or `(("data", 2), ("fsdp", -1))`.
  """
  devices = list(jax.devices() if devices is None else devices)
  names = [name for name, _ in mesh_axes]
  sizes = [int(size) for _, size in mesh_axes]
  unknown = [n for n in names if n not in MESH_AXES]
  if unknown or len(set(names)) != len(names):
    raise ValueError(f"config.mesh axes must be distinct names from {MESH_AXES}, got {names}.")
  if not any(n in BATCH_AXES for n in names):
    raise ValueError(f"config.mesh must have a '{DATA_AXIS}' or '{FSDP_AXIS}' axis to split "
                     f"the batch over, got axes {names}.")
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh: sizes must be positive, at most one -1; got "
                     f"{list(mesh_axes)}.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"config.mesh {list(mesh_axes)} does not divide {len(devices)} devices.")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"config.mesh {list(mesh_axes)} needs {int(np.prod(sizes))} devices, "
                     f"{len(devices)} are available.")
  # Auto axes: XLA propagates shardings from the inputs; Explicit (make_mesh's default
  # in recent JAX) would need sharding annotations inside every model.
  return jax.make_mesh(tuple(sizes), tuple(names), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.shape)


def num_batch_shards(mesh: Mesh) -> int:
  """How many pieces the batch is cut into (one per device along data x fsdp)."""
  return int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over data x fsdp, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def splits_frames(global_batch_size: int, num_frames: int, mesh: Mesh) -> bool:
  """Whether an inference batch is split over the devices by frame instead of by clip.

  It is when the devices of the batch axes do not divide the clips but do divide each
  clip's frames, on one process: e.g. one clip on a 2-core CPU run as 2 devices. Each
  device then runs its share of every clip's frames and XLA exchanges what crosses frames
  (temporal modules, the consensus), which beats one device whose operations use every
  core (figures: scripts/README.md).
  Training always splits clips: its BatchNorm recipes are per clip.
  """
  n = num_batch_shards(mesh)
  return (global_batch_size % n != 0 and num_frames > 0 and num_frames % n == 0
          and jax.process_count() == 1)


def clip_sharding(mesh: Mesh, ndim: int, by_frame: bool = False) -> NamedSharding:
  """Clips [B, T, H, W, C] or [B, V, T, H, W, C]: B over the batch axes, or T when
  `by_frame` (see `splits_frames`)."""
  if not by_frame:
    return batch_sharding(mesh)
  spec = [None] * ndim
  spec[ndim - 4] = batch_axes(mesh)  # T is 4th from the end in both layouts
  return NamedSharding(mesh, P(*spec))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh,
                 by_frame: bool = False) -> dict[str, jax.Array]:
  """Per-process numpy rows -> global arrays, split over the batch axes.

  Each process passes its own rows (`batch_size / process_count` of them); process p's
  rows become rows `p * b .. (p + 1) * b - 1` of the global batch. With `by_frame`
  (one process, see `splits_frames`), "clip" ([B, T, H, W, C] or [B, V, T, H, W, C]) is
  split by frame and the rest ("label", "mask": [B]) is replicated.
  """
  def placement(key: str, value: np.ndarray) -> NamedSharding:
    if not by_frame:
      return batch_sharding(mesh)
    return clip_sharding(mesh, value.ndim, True) if key == "clip" else replicated(mesh)
  arrays = {k: np.asarray(v) for k, v in local_batch.items()}
  return {k: jax.make_array_from_process_local_data(placement(k, v), v)
          for k, v in arrays.items()}


def check_batch_divides(global_batch_size: int, mesh: Mesh, num_frames: int = 0,
                        field: str = "batch size") -> None:
  """Raises unless the batch splits over the devices and processes; with `num_frames`
  (inference), a batch whose frames split instead (`splits_frames`) passes too.

  Args:
    field: what the error calls the batch size, e.g. "config.eval.batch_size".
  """
  n = num_batch_shards(mesh)
  if num_frames and splits_frames(global_batch_size, num_frames, mesh):
    return
  if global_batch_size % n or global_batch_size % jax.process_count():
    frames = (f", or (on one process) its clips' {num_frames} frames a multiple of the "
              f"{n} devices" if num_frames else "")
    raise ValueError(
        f"{field}={global_batch_size} must be a multiple of the {n} devices of the "
        f"{' x '.join(batch_axes(mesh))} mesh axes and of the {jax.process_count()} "
        f"processes{frames}.")


# ---------------------------------------------------------------------------- rules
def path_name(path: Sequence[Any]) -> str:
  """A pytree key path as 'a/b/0/c' (dict keys, attribute names, sequence indices)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _fsdp_spec(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> P:
  n = mesh.shape.get(FSDP_AXIS, 1)
  if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  # The largest dimension the axis divides; the last one on ties (output channels).
  candidates = [(d, i) for i, d in enumerate(shape) if d % n == 0]
  if not candidates:
    return P()
  _, axis = max(candidates)
  spec = [None] * len(shape)
  spec[axis] = FSDP_AXIS
  return P(*spec)


def _explicit_spec(name: str, shape: tuple[int, ...], spec: Sequence[Any], mesh: Mesh) -> P:
  spec = tuple(spec)
  if len(spec) > len(shape):
    raise ValueError(f"partition rule {spec} has {len(spec)} entries but {name} has shape "
                     f"{shape}.")
  for dim, entry in zip(shape, spec):
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    for a in axes:
      if a not in mesh.shape:
        raise ValueError(f"partition rule {spec} for {name} names axis {a!r}; the mesh has "
                         f"{tuple(mesh.shape)}.")
    size = int(np.prod([mesh.shape[a] for a in axes]))
    if dim % size:
      raise ValueError(f"partition rule {spec} for {name}: dimension {dim} of shape {shape} "
                       f"is not divisible by the {size} devices of {axes}.")
  return P(*[None if e is None else e if isinstance(e, str) else tuple(e) for e in spec])


def leaf_spec(name: str, shape: tuple[int, ...], mesh: Mesh,
              rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
              fsdp_min_size: int = 2 ** 14) -> P:
  """The PartitionSpec of one state leaf by the first rule whose regex is in `name`."""
  if not shape:
    return P()
  for regex, spec in rules:
    if re.search(regex, name):
      if spec == "replicate":
        return P()
      if spec == "fsdp":
        return _fsdp_spec(shape, mesh, fsdp_min_size)
      if isinstance(spec, str):
        raise ValueError(f"partition rule ({regex!r}, {spec!r}): spec must be 'replicate', "
                         "'fsdp' or a tuple of mesh axis names / None per dimension.")
      return _explicit_spec(name, shape, spec, mesh)
  return P()


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
                   fsdp_min_size: int = 2 ** 14, prefix: str = "") -> Any:
  """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) by `rules`.

  `prefix` is prepended to the leaf paths, e.g. "params/" when `tree` is a params dict,
  so the same rules apply as to the train state.
  """
  def one(path, leaf):
    name = prefix + path_name(path)
    return NamedSharding(mesh, leaf_spec(name, tuple(np.shape(leaf)), mesh, rules,
                                         fsdp_min_size))
  return jax.tree_util.tree_map_with_path(one, tree)


def rules_from_config(config: Any) -> tuple[tuple[str, Any], ...]:
  """`config.partition_rules` as a tuple of (regex, spec); the defaults when absent."""
  rules = config.get("partition_rules", None)
  return DEFAULT_RULES if rules is None else tuple((r, s) for r, s in rules)


def put(tree: Any, shardings: Any) -> Any:
  """Host values (identical on every process) -> global arrays with `shardings`.

  Works on multi-host meshes too: each process fills only its addressable shards.
  """
  def one(x, s):
    if isinstance(x, jax.Array):  # already global (e.g. kept initialisation): reshard
      return jax.device_put(x, s)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])
  return jax.tree.map(one, tree, shardings)


def tree_replicate(tree: Any, mesh: Mesh) -> Any:
  return put(tree, jax.tree.map(lambda _: replicated(mesh), tree))


def describe(shardings: Any, tree: Any) -> str:
  """One line per sharded leaf: path, shape, spec (replicated leaves are counted)."""
  lines, replicated_count = [], 0
  for (path, s), leaf in zip(jax.tree_util.tree_leaves_with_path(shardings),
                             jax.tree.leaves(tree)):
    if all(e is None for e in s.spec):
      replicated_count += 1
      continue
    lines.append(f"  {path_name(path)} {tuple(np.shape(leaf))} {tuple(s.spec)}")
  lines.append(f"  ({replicated_count} leaves replicated)")
  return "\n".join(lines)


# ---------------------------------------------------------------------------- hosts
def host_cores() -> int:
  """The CPU cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def set_cpu_devices(n: int) -> int:
  """Splits the CPU backend into `n` devices (0: JAX's default, one for the host; -1: one
  per core this process may run on).

  With one device per core, the batch is split over the cores as over any mesh, and
  each core runs its own copy of the step, which beats one device whose operations use
  every core (figures: scripts/README.md). Must run before anything touches a device.

  Returns:
    The number of CPU devices set, 0 when JAX's default is kept.
  """
  if n < -1:
    raise ValueError(f"config.cpu_devices must be -1 (one per core), 0 (JAX's default) or "
                     f"a number of devices, got {n}.")
  if n == -1:
    n = host_cores()
  if n:
    jax.config.update("jax_num_cpu_devices", int(n))
  return int(n)


def initialize_distributed(cfg: Any) -> bool:
  """Starts JAX's distributed runtime from `config.distributed` or the environment.

  Must run before anything touches a device. With `coordinator_address` set, the
  processes are given explicitly (num_processes, process_id); with `auto` (or the
  JAX_COORDINATOR_ADDRESS environment variable), `jax.distributed.initialize()` detects
  them (SLURM, Open MPI, Cloud TPU, Kubernetes ...). Otherwise nothing happens: one
  process. On CPU, cross-process collectives use `cpu_collectives` (gloo).

  Returns:
    Whether the distributed runtime was started.
  """
  if cfg is None:
    return False
  address = cfg.get("coordinator_address", "")
  auto = cfg.get("auto", False) or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
  if not address and not auto:
    return False
  if cfg.get("cpu_collectives", ""):
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
  if address:
    if cfg.get("num_processes", 0) < 1 or cfg.get("process_id", -1) < 0:
      raise ValueError(
          f"config.distributed.coordinator_address={address!r} also needs num_processes "
          f"(got {cfg.get('num_processes')}) and this process's process_id (got "
          f"{cfg.get('process_id')}).")
    jax.distributed.initialize(address, int(cfg.num_processes), int(cfg.process_id))
  else:
    jax.distributed.initialize()
  return True
