"""A run's config from any of the places one is kept, with `a.b.c=value` overrides.

    config = run_config.load("configs/tsn_r50.py:demo", ["eval.num_views=3"])
    config = run_config.load("/tmp/tsn_demo")               # the workdir's config.json
    config = run_config.load("/tmp/tsn_demo/config.json")

A spec is a config file `path/to/NAME.py[:VARIANT]` (its `get_config(VARIANT)`, as
absl's `config_flags` calls it), the `config.json` that every training run writes into its
workdir (vidjax/train/checkpoint.py), or that workdir itself. JSON has no tuples, so the
lists of a `config.json` become tuples again: the configs hold tuples only (tests check
every config file), and the model and data code expect them.

An override takes the type of the field it sets (`data.num_frames=16` an int,
`model.pixel_mean=(0, 0, 0)` a tuple); a value of another type or an unknown field is one
`ConfigError` line naming the field. Command lines pass them as `--config.a.b.c=value`
(`split_overrides`), as vidjax.main does.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
from typing import Any, Sequence

import ml_collections

CONFIG_FILE = "config.json"   # what vidjax/train/checkpoint.py writes into a workdir


class ConfigError(ValueError):
  """A config spec or an override that cannot be applied; the message is one line."""


# ---------------------------------------------------------------------------- loading
def _tuples(value: Any, section: bool = True) -> Any:
  """JSON values back to config values: lists become tuples, objects ConfigDicts, but
  objects inside lists stay dicts (a ConfigDict holds a tuple of dicts as it is given)."""
  if isinstance(value, dict):
    items = {k: _tuples(v, section) for k, v in value.items()}
    return ml_collections.ConfigDict(items) if section else items
  if isinstance(value, list):
    return tuple(_tuples(v, section=False) for v in value)
  return value


def _from_json(path: str) -> ml_collections.ConfigDict:
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read config {path}: {e}") from e
  if not isinstance(data, dict):
    raise ConfigError(f"config {path} holds a JSON {type(data).__name__}, not an object.")
  return _tuples(data)


def _from_python(path: str, variant: str) -> ml_collections.ConfigDict:
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path} does not exist (expected configs/NAME.py[:VARIANT], "
                      f"a workdir or its {CONFIG_FILE}).")
  name = "_vidjax_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
  except ValueError as e:   # the variant grammar's errors are written for the user
    raise ConfigError(str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{path}: get_config({variant!r}) failed: {type(e).__name__}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config returned a {type(config).__name__}, not a "
                      "ConfigDict.")
  return config


def config_path(spec: str) -> str:
  """The file a spec names: `NAME.py` of `NAME.py:VARIANT`, `DIR/config.json` of a DIR."""
  spec = os.path.expanduser(spec)
  if os.path.isdir(spec):
    return os.path.join(spec, CONFIG_FILE)
  if spec.endswith(".json"):
    return spec
  return spec.partition(":")[0]


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of `spec` with `overrides` applied, locked (no new fields) as main's is.

  Args:
    spec: `path/to/NAME.py[:VARIANT]`, a workdir's `config.json`, or the workdir.
    overrides: `a.b.c=value` strings, applied in order.

  Raises:
    ConfigError: a missing or unreadable spec, an unknown field, a value of the wrong type.
  """
  path = config_path(spec)
  if os.path.isdir(os.path.expanduser(spec)):
    if not os.path.isfile(path):
      raise ConfigError(f"{spec} has no {CONFIG_FILE} (training runs write one into their "
                        "workdir): pass a config file, configs/NAME.py[:VARIANT].")
    config = _from_json(path)
  elif path.endswith(".json"):
    if not os.path.isfile(path):
      raise ConfigError(f"config {path} does not exist.")
    config = _from_json(path)
  else:
    config = _from_python(path, os.path.expanduser(spec).partition(":")[2])
  for override in overrides:
    apply_override(config, override)
  config.lock()
  return config


# ---------------------------------------------------------------------------- overrides
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


_NOT_A_LITERAL = object()


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return _NOT_A_LITERAL


def parse_value(field: str, current: Any, text: str) -> Any:
  """`text` as a value of `current`'s type; ConfigError naming `field` otherwise."""

  def bad(expected: str) -> ConfigError:
    return ConfigError(f"config.{field}: expected {expected}, got {text!r} (the field "
                       f"holds {current!r}).")

  if isinstance(current, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise bad("a bool (true or false)")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise bad("an int") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise bad("a float") from None
  if isinstance(current, str):
    return text
  value = _literal(text)
  if isinstance(current, (tuple, list)):
    if not text.strip():
      return ()
    if isinstance(value, (tuple, list)):
      return _tuples(list(value))
    if value is _NOT_A_LITERAL:
      raise bad("a tuple, e.g. (1, 2) or ('a', 'b')")
    return (value,)
  if current is None:   # a field without a type yet: a Python literal, else the text
    return text if value is _NOT_A_LITERAL else _tuples(value)
  raise bad(f"a {type(current).__name__}")


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Sets `a.b.c=value` in `config` (see `parse_value`)."""
  field, sep, text = override.partition("=")
  field = field.strip()
  if not sep or not field:
    raise ConfigError(f"override {override!r}: expected FIELD=VALUE, e.g. data.num_frames=16.")
  parts = field.split(".")
  node, where = config, "config"
  for depth, name in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict):
      raise ConfigError(f"unknown config field config.{field}: {where} is a value, not a "
                        "section.")
    if name not in node:
      raise ConfigError(f"unknown config field config.{field}; {where} has the fields: "
                        f"{', '.join(sorted(node.keys()))}.")
    if depth < len(parts) - 1:
      node, where = node[name], f"{where}.{name}"
  leaf = parts[-1]
  current = node[leaf]
  if isinstance(current, ml_collections.ConfigDict):
    raise ConfigError(f"config.{field} is a section, not a value: set one of its fields "
                      f"({', '.join(sorted(current.keys()))}).")
  value = parse_value(field, current, text)
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.{field}={text!r}: {e}") from e


# ---------------------------------------------------------------------------- command lines
def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(`a.b=value` overrides, the other arguments) of a command line's `--config.a.b=value`
  and `--config.a.b value` arguments."""
  overrides, rest, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      field, sep, value = arg[len("--config."):].partition("=")
      if not sep:
        if i + 1 >= len(argv):
          raise ConfigError(f"{arg} needs a value: {arg}=VALUE.")
        i += 1
        value = argv[i]
      overrides.append(f"{field}={value}")
    else:
      rest.append(arg)
    i += 1
  return overrides, rest


def checkpoint_spec(checkpoint: str) -> str:
  """The config of a checkpoint given without a config: its workdir (whose config.json
  the training run wrote); a step directory WORKDIR/checkpoints/STEP takes WORKDIR's.

  Raises:
    ConfigError: there is none (a converter's output, for one: it names its config file
      in vidjax_meta.json, which the message repeats).
  """
  path = os.path.abspath(os.path.expanduser(checkpoint))
  if not os.path.isdir(path):
    raise ConfigError(f"--checkpoint {checkpoint} is not a directory.")
  for where in (path, os.path.dirname(os.path.dirname(path))):
    if os.path.isfile(os.path.join(where, CONFIG_FILE)):
      return where
  hint = ""
  meta = os.path.join(path, "vidjax_meta.json")
  if os.path.isfile(meta):
    try:
      with open(meta) as f:
        hint = f" (the converter used {json.load(f).get('config')})"
    except (OSError, ValueError):
      pass
  raise ConfigError(f"--checkpoint {checkpoint} has no {CONFIG_FILE} (training workdirs "
                    f"have one): pass --config configs/NAME.py[:VARIANT]{hint}.")


def checkpoint_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """The arguments of the commands that read a checkpoint (vidjax.predict, vidjax.export):
  `--checkpoint` and `--config`."""
  parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=description)
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir, one of its step directories, or converter output")
  parser.add_argument("--config", default=None,
                      help="configs/NAME.py[:VARIANT], a config.json or a workdir; default: "
                           "the checkpoint's workdir config.json")
  return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]
                       ) -> tuple[argparse.Namespace, list[str]]:
  """`parser`'s arguments and the `--config.a.b=value` overrides (as `a.b=value`); a bad
  override is one `error:` line and exit status 2."""
  from vidjax import config_checks  # pylint: disable=import-outside-toplevel
  try:
    overrides, rest = split_overrides(argv)
  except ConfigError as e:
    config_checks.exit_with_error(str(e))
  return parser.parse_args(rest), overrides
