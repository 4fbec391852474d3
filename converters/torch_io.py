"""Reading `.pth` files. The only place that imports torch (lazily).

A file that is not a torch checkpoint is refused before torch is imported, from its first
bytes and (for the zip format of `torch.save`) its central directory; what torch itself
cannot read is reported in one line too. Every error names the file.

TorchScript archives (OpenAI CLIP's released `ViT-B-16.pt`) are read with
`torch.jit.load`, which `torch.load(weights_only=True)` refuses: it runs the archive's
TorchScript (not arbitrary Python), so convert only files from a source you trust.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from typing import Any


class CheckpointFileError(ValueError):
  """A `.pth` file that cannot be read as a state_dict; the message is one line."""


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a file entry first, or an empty archive
_PICKLE_PROTO = 0x80  # torch.save's legacy format and plain pickles (protocol >= 2)


def check_checkpoint_file(path: str) -> None:
  """Refuses, without importing torch, a path that cannot hold a torch checkpoint.

  Raises:
    CheckpointFileError: missing, a directory, empty, unreadable, neither a zip archive
      nor a pickle, a zip archive that is damaged (a truncated `torch.save` file loses its
      central directory) or holds no `data.pkl`.
  """
  if not os.path.lexists(path):
    raise CheckpointFileError(f"{path}: no such file.")
  if os.path.isdir(path):
    raise CheckpointFileError(f"{path} is a directory; expected a .pth file.")
  try:
    with open(path, "rb") as f:
      head = f.read(8)
  except OSError as e:
    raise CheckpointFileError(f"{path}: cannot be read: {e.strerror}.") from None
  if not head:
    raise CheckpointFileError(f"{path} is empty (0 bytes).")
  if head.startswith(_ZIP_MAGIC):
    try:
      with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
      raise CheckpointFileError(
          f"{path}: damaged or truncated zip archive ({e}); the torch.save format is a "
          "complete zip archive, so save or copy the file again.") from None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
      listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
      raise CheckpointFileError(f"{path}: a zip archive, but not one written by torch.save "
                                f"(no data.pkl inside; it holds {listed or 'nothing'}).")
    return
  if head[0] != _PICKLE_PROTO:
    raise CheckpointFileError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip "
                              f"archive nor a pickle; it starts with {head!r}).")


def _load_error(path: str, e: Exception) -> CheckpointFileError:
  """torch.load's exception (often a screenful) -> one line naming the file."""
  text = str(e)
  found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
  if found:
    # weights_only refuses objects: running their pickled constructors could run code.
    return CheckpointFileError(
        f"{path} holds a pickled {found.group(1)} object (a whole model?), not a state_dict; "
        "unpickling it could run code from the file, so it is not loaded. Save the weights "
        "with torch.save(model.state_dict(), PATH) and convert that file.")
  if isinstance(e, EOFError):
    return CheckpointFileError(f"{path}: the pickle ends early: the file is truncated.")
  reason = re.search(r"Unsupported operand \d+|failed finding central directory|"
                     r"invalid load key, [^.\n]*", text)
  first = reason.group(0) if reason else (
      next((l.strip() for l in text.splitlines() if l.strip()), "") or type(e).__name__)
  return CheckpointFileError(f"{path}: torch.load cannot read it ({first}); is it a "
                             "damaged file or not a PyTorch checkpoint?")


def is_torchscript(path: str) -> bool:
  """A zip archive written by `torch.jit.save` (it holds constants.pkl and code/)."""
  try:
    with zipfile.ZipFile(path) as archive:
      return any(n == "constants.pkl" or n.endswith("/constants.pkl")
                 for n in archive.namelist())
  except (zipfile.BadZipFile, OSError):
    return False


def _load_torchscript(path: str, torch: Any) -> dict[str, Any]:
  """A TorchScript archive -> its module's state_dict (its parameters and buffers)."""
  try:
    with warnings.catch_warnings():   # torch's note that TorchScript is deprecated
      warnings.simplefilter("ignore", DeprecationWarning)
      return dict(torch.jit.load(path, map_location="cpu").state_dict())
  except Exception as e:  # pylint: disable=broad-except
    first = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
    raise CheckpointFileError(f"{path}: a TorchScript archive that torch.jit.load cannot "
                              f"read ({first}).") from e


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """A `.pth` file -> its state_dict (tensors).

  Accepts a raw state_dict or a training checkpoint dict holding it under 'state_dict'
  (TSM, GC, TCPNet) or 'model'. Loads with `weights_only=True`: no code is executed; a
  TorchScript archive gives its module's state_dict (`torch.jit.load`).

  Raises:
    CheckpointFileError: with one line naming the file and the problem.
  """
  check_checkpoint_file(path)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading .pth checkpoints needs torch: pip install 'vidjax[torch]'") from e
  if is_torchscript(path):
    return _load_torchscript(path, torch)
  try:
    with warnings.catch_warnings():
      # Printed for plain pickles before they fail: noise above the one-line error.
      warnings.filterwarnings("ignore", message="Detected pickle protocol")
      obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ... on bad files.
    raise _load_error(path, e) from e
  if not isinstance(obj, dict):
    raise CheckpointFileError(f"{path}: expected a dict (state_dict or checkpoint), got "
                              f"{type(obj).__name__}.")
  for field in ("state_dict", "model"):
    if isinstance(obj.get(field), dict):
      return obj[field]
  if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
    return obj
  keys = sorted(map(str, obj))
  listed = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
  raise CheckpointFileError(f"{path}: no state_dict found; top-level keys: {listed or 'none'} "
                            "(expected tensors, or a dict under 'state_dict' or 'model').")
