"""Reading `.pth` files. The only place that imports torch (lazily).

A file that is not a torch checkpoint is refused before torch is imported, from its first
bytes and (for the zip format of `torch.save`) its central directory; what torch itself
cannot read is reported in one line too. Every error names the file.

TorchScript archives (OpenAI CLIP's released `ViT-B-16.pt`) are read with
`torch.jit.load`, which `torch.load(weights_only=True)` refuses: it runs the archive's
TorchScript (not arbitrary Python), so convert only files from a source you trust.
"""

from __future__ import annotations

import collections
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


# --------------------------------------------------------- checkpoints with OmegaConf configs
# TC-CLIP's training checkpoints pickle their OmegaConf config beside the weights
# (reference/tcclip.md 6.4), which `weights_only=True` refuses. They load through an
# unpickler that builds only tensors, plain containers and numbers, and turns omegaconf's
# classes into placeholders that become plain dicts, lists and values afterwards, so
# omegaconf need not be installed and nothing else in the file is constructed.
_PLAIN_GLOBALS = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float",
                              "str", "bool", "bytes", "complex", "slice", "object")
} | {("collections", "OrderedDict"), ("collections", "defaultdict"),
     ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
     ("torch._utils", "_rebuild_tensor"), ("torch", "Size"), ("torch", "device")}
_NUMPY_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                  ("numpy", "dtype")}


class OmegaConfPlaceholder:
  """Stands in for an omegaconf object while unpickling; keeps its pickled state."""

  def __init__(self, *args, **kwargs):
    del args, kwargs
    self.state: Any = None

  def __setstate__(self, state: Any) -> None:
    self.state = state


def _plain(obj: Any) -> Any:
  """Placeholders -> plain values: a DictConfig's `_content` as a dict, a ListConfig's as
  a list, a value node's `_val`; containers are walked."""
  if isinstance(obj, OmegaConfPlaceholder):
    state = obj.state if isinstance(obj.state, dict) else {}
    if "_content" in state:
      return _plain(state["_content"])
    return _plain(state.get("_val"))
  if isinstance(obj, dict):
    items = {k: _plain(v) for k, v in obj.items()}
    return items if type(obj) in (dict, collections.defaultdict) else type(obj)(items)
  if isinstance(obj, (list, tuple)):
    return type(obj)(_plain(v) for v in obj)
  return obj


def _plain_unpickler_module(path: str) -> Any:
  """A module-like object whose `Unpickler` refuses every global outside the lists above."""
  import _compat_pickle  # pylint: disable=g-import-not-at-top
  import pickle  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  class Unpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str) -> Any:
      # Protocol 2 pickles name Python 2's modules (`__builtin__.long`).
      if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
      module = _compat_pickle.IMPORT_MAPPING.get(module, module)
      if module == "omegaconf" or module.startswith("omegaconf.") or module == "typing":
        return OmegaConfPlaceholder
      if (module, name) in _PLAIN_GLOBALS or (module, name) in _NUMPY_GLOBALS or (
          module == "torch" and (name.endswith("Storage") or name in (
              "float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8",
              "bool"))):
        return super().find_class(module, name)
      raise CheckpointFileError(
          f"{path}: refusing to construct {module}.{name} (only tensors, plain containers "
          "and OmegaConf configs are read from a training checkpoint).")

  return types.SimpleNamespace(Unpickler=Unpickler, load=pickle.load, __name__="pickle")


def load_checkpoint_plain(path: str) -> dict[str, Any]:
  """A `torch.save` training checkpoint whose extras (an OmegaConf config) are read into
  plain containers; torch is needed, omegaconf is not. Raises CheckpointFileError."""
  check_checkpoint_file(path)
  import torch  # pylint: disable=g-import-not-at-top
  try:
    obj = torch.load(path, map_location="cpu", weights_only=False,
                     pickle_module=_plain_unpickler_module(path))
  except CheckpointFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise _load_error(path, e) from e
  if not isinstance(obj, dict):
    raise CheckpointFileError(f"{path}: expected a dict (state_dict or checkpoint), got "
                              f"{type(obj).__name__}.")
  return _plain(obj)


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
    if "GLOBAL omegaconf." in str(e):   # a TC-CLIP training checkpoint's config
      obj = load_checkpoint_plain(path)
    else:
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
