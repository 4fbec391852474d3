"""Reading `.pth` files. The only place that imports torch (lazily)."""

from __future__ import annotations

from typing import Any


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """A `.pth` file -> its state_dict (tensors).

  Accepts a raw state_dict or a training checkpoint dict holding it under 'state_dict'
  (TSM, GC, TCPNet) or 'model'. Loads with `weights_only=True`: no code is executed.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading .pth checkpoints needs torch: pip install 'vidjax[torch]'") from e
  obj = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: expected a dict (state_dict or checkpoint), got {type(obj).__name__}")
  for field in ("state_dict", "model"):
    if isinstance(obj.get(field), dict):
      return obj[field]
  if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
    return obj
  raise ValueError(f"{path}: no state_dict found; top-level keys: {sorted(map(str, obj))} "
                   "(expected tensors, or a dict under 'state_dict' or 'model')")
