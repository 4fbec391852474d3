"""Shared, strict machinery for importing PyTorch state_dicts into flax variables.

A conversion is three steps:

1. `clean_state_dict`: tensors -> numpy (float32 for half types), leading `module.`
   prefixes (DataParallel, possibly nested) stripped, `num_batches_tracked` dropped.
2. A source's `rename_key(key, model_config)` maps each torch key to our dotted path,
   `<flax module path>.<torch leaf>`, or None when no rule applies. Module names in vidjax
   contain no dots (`layer1_0`), so the last dot separates the torch leaf name.
3. `assign` turns the torch leaf into a flax variable by looking at what the model
   expects at that module path (from `jax.eval_shape` of its init):

   | torch leaf       | flax variable                  | layout                        |
   |------------------|--------------------------------|-------------------------------|
   | weight (conv)    | params/.../kernel              | OI[T]HW -> [T]HWIO; Conv1d OIK -> KIO |
   | weight (linear)  | params/.../kernel              | (out, in) -> (in, out)        |
   | weight (norm)    | params/.../scale               | as is                         |
   | bias             | params/.../bias                | as is                         |
   | running_mean     | batch_stats/.../mean           | as is                         |
   | running_var      | batch_stats/.../var            | as is                         |
   | anything else    | params/.../<leaf>              | as is                         |

   "conv" vs "norm" is decided by the target module holding `kernel` or `scale`, so
   sources never spell out layouts.

Strictness: every unused checkpoint key (no rule, or no such variable), every duplicate
target, every shape mismatch and every model variable left unfilled is collected, and a
single `ConversionError` lists them all. Nothing is returned (or written) on error.

torchvision ResNet names -> vidjax ResNet (vidjax/models/backbones/resnet.py), relative
to the trunk (`rename_torchvision_resnet`):

    conv1.weight                      -> conv1.weight     (params conv1/kernel)
    bn1.{weight,bias,running_*}       -> bn1.*            (bn1/scale, bias, mean, var)
    layer{s}.{i}.conv{k}.weight       -> layer{s}_{i}.conv{k}.weight
    layer{s}.{i}.bn{k}.*              -> layer{s}_{i}.bn{k}.*
    layer{s}.{i}.downsample.0.weight  -> layer{s}_{i}.downsample_conv.weight
    layer{s}.{i}.downsample.1.*       -> layer{s}_{i}.downsample_bn.*
    fc.*                              -> (the source decides: our head is `head/fc`)
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

RenameFn = Callable[[str], Optional[str]]


class ConversionError(ValueError):
  """A checkpoint does not fit the model; the message lists every offending key.

  The message's layout, which `problems` reads back (sources extend messages with more
  sections of the same layout):

      checkpoint does not fit the model:
        N <title>:
          <entry>
          ...
  """

  def problems(self) -> dict[str, list[str]]:
    """<title> -> its entries, e.g. {"unused checkpoint keys": ["fc.bias (7,): ...", ...]}."""
    found: dict[str, list[str]] = {}
    entries = None
    for line in str(self).splitlines():
      section = re.match(r"^  \d+ (.+):$", line)
      if section:
        entries = found.setdefault(section.group(1), [])
      elif entries is not None and line.startswith("    "):
        entries.append(line.strip())
      else:
        entries = None
    return found

  def summary(self) -> str:
    """One line: the count of each kind of problem and the first entries, then a hint."""
    problems = self.problems()
    if not problems:
      lines = str(self).splitlines()
      more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
      return lines[0].rstrip(":") + more if lines else "conversion failed"
    counts = ", ".join(f"{len(v)} {k}" for k, v in problems.items())
    firsts = "; ".join(f"first of the {k}: {v[0]}" for k, v in list(problems.items())[:2])
    if set(problems) <= {"shape mismatches"}:
      hint = "are the config's variant and --config.model.num_classes right?"
    else:
      hint = "is --source/--config right?"
    return f"{counts} ({firsts}); {hint}"


def to_numpy(value: Any) -> np.ndarray:
  """A torch tensor (without importing torch) or array-like -> numpy array."""
  if hasattr(value, "detach"):  # torch.Tensor
    value = value.detach().cpu()
    if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def strip_module_prefix(key: str) -> str:
  while key.startswith("module."):
    key = key[len("module."):]
  return key


def clean_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Numpy values, `module.` prefixes stripped, `num_batches_tracked` dropped."""
  cleaned: dict[str, np.ndarray] = {}
  collisions = []
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    new_key = strip_module_prefix(key)
    if new_key in cleaned:
      collisions.append(key)
    cleaned[new_key] = to_numpy(value)
  if collisions:
    raise ConversionError("keys that collide once 'module.' is stripped:\n  " +
                          "\n  ".join(collisions))
  return cleaned


def rename_by_rules(rules, key: str) -> Optional[str]:
  """`key` rewritten by the first `(pattern, replacement)` rule whose pattern it contains
  (`re.search`); None when no rule matches."""
  for pattern, replacement in rules:
    if re.search(pattern, key):
      return re.sub(pattern, replacement, key, count=1)
  return None


def strip_infix(key: str, infix: str) -> str:
  """Removes wrapper levels: strip_infix('a.net.b.net.c', 'net') -> 'a.b.c'."""
  return re.sub(rf"\.{re.escape(infix)}(?=\.)", "", key)


def rename_torchvision_resnet(key: str) -> str:
  """A key relative to a torchvision ResNet (e.g. 'layer1.0.downsample.0.weight') ->
  our path ('layer1_0.downsample_conv.weight'). Keys of hook modules inside a block
  (e.g. 'layer1.0.eft1.conv.weight') keep their tail."""
  key = re.sub(r"^layer(\d+)\.(\d+)\.", r"layer\1_\2.", key)
  key = re.sub(r"^(layer\d+_\d+)\.downsample\.0\.", r"\1.downsample_conv.", key)
  key = re.sub(r"^(layer\d+_\d+)\.downsample\.1\.", r"\1.downsample_bn.", key)
  return key


def torch_to_flax_layout(array: np.ndarray) -> np.ndarray:
  """Linear (O, I) -> (I, O); ConvNd (O, I, *k) -> (*k, I, O)."""
  if array.ndim == 2:
    return array.T
  if array.ndim >= 3:
    return np.transpose(array, tuple(range(2, array.ndim)) + (1, 0))
  return array


def _target(path: str, expected: Mapping[tuple, Any]) -> tuple[tuple, bool]:
  """Our dotted path -> (flax variable key, needs layout transform)."""
  *module, leaf = path.split(".")
  module = tuple(module)
  if leaf == "weight":
    if ("params",) + module + ("kernel",) in expected:
      return ("params",) + module + ("kernel",), True
    return ("params",) + module + ("scale",), False
  if leaf == "running_mean":
    return ("batch_stats",) + module + ("mean",), False
  if leaf == "running_var":
    return ("batch_stats",) + module + ("var",), False
  return ("params",) + module + (leaf,), False


def abstract_variables(module, *example_args, **example_kwargs) -> dict:
  """Shapes and dtypes of `module.init` without computing anything.

  `example_args` may be ShapeDtypeStructs; keyword arguments are static (e.g. train).
  """
  init = functools.partial(module.init, **example_kwargs)
  return jax.eval_shape(init, jax.random.key(0), *example_args)


def assign(state_dict: Mapping[str, Any],
           abstract: Mapping[str, Any],
           rename: RenameFn) -> dict:
  """Strictly maps a state_dict onto the variables described by `abstract`.

  Args:
    state_dict: torch key -> tensor / array (raw: cleaned here).
    abstract: `{"params": ..., "batch_stats": ...}` of ShapeDtypeStructs (eval_shape).
    rename: cleaned torch key -> our dotted path, or None for "no rule".
  Returns:
    variables with the same tree structure as `abstract`, as jax arrays.
  Raises:
    ConversionError listing every unused key, duplicate, shape mismatch and missing
    variable.
  """
  cleaned = clean_state_dict(state_dict)
  expected = traverse_util.flatten_dict(dict(abstract))
  filled: dict[tuple, np.ndarray] = {}
  source_of: dict[tuple, str] = {}
  seen: set[tuple] = set()  # targets hit, filled or not (a mismatch is not also "missing")
  unused, duplicates, mismatched = [], [], []
  for key in sorted(cleaned):
    value = cleaned[key]
    path = rename(key)
    if path is None:
      unused.append(f"{key} {tuple(value.shape)}: no rename rule")
      continue
    target, transform = _target(path, expected)
    if target not in expected:
      unused.append(f"{key} {tuple(value.shape)} -> {'/'.join(target)}: not a model variable")
      continue
    if target in seen:
      duplicates.append(f"{key} and {source_of[target]} -> {'/'.join(target)}")
      continue
    seen.add(target)
    source_of[target] = key
    array = torch_to_flax_layout(value) if transform else value
    want = expected[target]
    if tuple(array.shape) != tuple(want.shape):
      mismatched.append(f"{key} {tuple(value.shape)} -> {'/'.join(target)}: got "
                        f"{tuple(array.shape)} after layout, model expects {tuple(want.shape)}")
      continue
    filled[target] = array.astype(want.dtype)
  missing = ["/".join(k) + f" {tuple(v.shape)}" for k, v in expected.items()
             if k not in seen]
  problems = []
  for title, items in (("unused checkpoint keys", unused), ("duplicate targets", duplicates),
                       ("shape mismatches", mismatched), ("missing model variables", missing)):
    if items:
      problems.append(f"{len(items)} {title}:\n    " + "\n    ".join(items))
  if problems:
    raise ConversionError("checkpoint does not fit the model:\n  " + "\n  ".join(problems))
  return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in filled.items()})
