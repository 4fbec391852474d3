"""The device mesh and how arrays are placed on it.

The batch is split over the `data` axis; parameters and optimiser state are replicated.
Global batches are assembled from each process's local rows with
`jax.make_array_from_process_local_data`, so the same code runs on one CPU and on a
multi-host pod.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(mesh_axes: Sequence[tuple[str, int]] = ((DATA_AXIS, -1),),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default: all) with named axes; one size may be -1 (the rest).

  Args:
    mesh_axes: pairs (axis name, size), e.g. `(("data", -1),)`.
  """
  devices = list(jax.devices() if devices is None else devices)
  names = [name for name, _ in mesh_axes]
  sizes = [int(size) for _, size in mesh_axes]
  if DATA_AXIS not in names:
    raise ValueError(f"config.mesh must have a '{DATA_AXIS}' axis, got axes {names}.")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may have size -1, got {list(mesh_axes)}.")
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


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process numpy rows -> global arrays sharded over the data axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def check_batch_divides(global_batch_size: int, mesh: Mesh) -> None:
  n = mesh.shape[DATA_AXIS]
  if global_batch_size % n or global_batch_size % jax.process_count():
    raise ValueError(
        f"batch size {global_batch_size} must be divisible by the {n} devices of the "
        f"'{DATA_AXIS}' mesh axis and by the {jax.process_count()} processes.")


def tree_replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
