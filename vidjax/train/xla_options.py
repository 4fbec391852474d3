"""XLA compiler options for the jitted train and eval steps, per backend.

`config.xla_options.<backend>` maps XLA debug options to values; only the running
backend's (`jax.default_backend()`) apply, so one config serves CPU, GPU and TPU. Values
are given as XLA_FLAGS would take them; list-valued enum options
(`xla_cpu_experimental_ynn_fusion_type="dot,eltwise"`) are spelled out to the enum names
that jit's `compiler_options` expects (`LIBRARY_FUSION_TYPE_DOT,...`).

`cost_analysis` and `flops_per_clip` read XLA's cost estimates of a program.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

# Options whose values are comma-separated lists of an enum, and the enum's name prefix.
_ENUM_LIST_PREFIX = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_",
    "xla_cpu_experimental_xnn_fusion_type": "LIBRARY_FUSION_TYPE_",
    "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_",
}


def compiler_options(xla_options: Any, backend: Optional[str] = None) -> Optional[dict]:
  """The options of `xla_options[backend]` (default: the running backend) for
  `jax.jit(..., compiler_options=...)`; None when there are none."""
  backend = backend or jax.default_backend()
  options = (xla_options or {}).get(backend)
  if not options:
    return None
  out = {}
  for name, value in dict(options).items():
    prefix = _ENUM_LIST_PREFIX.get(name)
    if prefix and isinstance(value, str):
      items = [v.strip() for v in value.split(",") if v.strip()]
      value = ",".join(v if v.startswith(prefix) else prefix + v.upper() for v in items)
    out[name] = value
  return out


def cost_analysis(program: Any) -> dict:
  """XLA's cost estimates of a lowered or compiled program ("flops", "bytes accessed",
  ...; per device for a sharded one); {} where the backend gives none."""
  try:
    cost = program.cost_analysis()
  except (NotImplementedError, RuntimeError):
    return {}
  if isinstance(cost, (list, tuple)):  # one entry per device in some JAX versions
    cost = cost[0] if cost else {}
  return dict(cost or {})


def flops_per_clip(model: Any, variables: Any, clip_shape: tuple[int, ...]) -> Optional[float]:
  """FLOPs of the model's eval forward on one clip [1, T, H, W, 3]; None where XLA gives
  no count. `variables` may be abstract (jax.ShapeDtypeStruct): nothing runs.

  The count is that of the lowered program, which needs no compile; the compiled one
  (scripts/benchmark.py) may differ slightly after XLA's rewrites.
  """
  clip = jax.ShapeDtypeStruct(clip_shape, jnp.uint8)
  lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, clip)
  flops = cost_analysis(lowered).get("flops")
  return None if flops is None else float(flops) / clip_shape[0]
