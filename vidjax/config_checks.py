"""Checks of the command line and the config that run before the slow start-up.

Each failure is an `InputError` whose message is one line naming the flag, file, field
or value and what was expected; the CLIs (vidjax.main, converters) print it as
`error: ...` and exit with status 2. The argv checks run before the config file is loaded
(which imports JAX through the model registry), so a mistyped path or an unusable
directory is reported at once; vidjax/run_config.py loads the config and its overrides.
Nothing here imports JAX at module level.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import NoReturn, Optional, Sequence

import ml_collections

_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs")


class InputError(ValueError):
  """Bad input on the command line or in the config; the message is one line."""


def exit_with_error(message: str, details: str = "") -> NoReturn:
  """Prints `error: message` (then `details`, if any) to stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  if details:
    print(details, file=sys.stderr)
  sys.exit(2)


def flag_value(argv: Sequence[str], name: str) -> Optional[str]:
  """The value of `--name` in `argv` (as `--name=V` or `--name V`; the last one wins, as in
  absl), or None when it is not given."""
  value = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def asks_for_help(argv: Sequence[str]) -> bool:
  """absl's help flags: then the other arguments are not checked."""
  return any(a.split("=")[0] in ("-h", "-?", "--help", "--helpshort", "--helpfull",
                                 "--helpxml") for a in argv[1:])


# ----------------------------------------------------------------- argv, before absl
def _near_configs(path: str) -> list[str]:
  """Config files whose names are close to `path`'s, spelled as the user would type them."""
  folder = os.path.dirname(path)
  candidates = []
  for where in (folder or ".", _CONFIGS_DIR):
    if os.path.isdir(where):
      candidates += [os.path.join(where, n) for n in sorted(os.listdir(where))
                     if n.endswith(".py") and not n.startswith("_")]
  by_name: dict[str, str] = {}
  for c in candidates:
    by_name.setdefault(os.path.basename(c), os.path.relpath(c))
  close = difflib.get_close_matches(os.path.basename(path), list(by_name), n=3, cutoff=0.6)
  return [by_name[n] for n in close]


def check_config_file(config_arg: Optional[str]) -> None:
  """`--config PATH[:VARIANT]`: PATH is a file (absl reads it relative to the cwd).

  Raises:
    InputError naming the path, with the closest config files when there are any.
  """
  if config_arg is None:
    return  # the CLI says the flag is missing
  path = os.path.expanduser(config_arg.split(":", 1)[0])
  if os.path.isfile(path):
    return
  if os.path.isdir(path):
    if os.path.isfile(os.path.join(path, "config.json")):
      return   # a workdir: its recorded config (vidjax/run_config.py)
    raise InputError(f"--config {path} is a directory without config.json; expected a "
                     "config file such as configs/tsn_r50.py[:VARIANT] or a workdir.")
  near = _near_configs(path)
  if near:
    hint = f"did you mean {' or '.join(near)}?"
  else:
    names = sorted(n for n in os.listdir(_CONFIGS_DIR) if n.endswith(".py")) if os.path.isdir(
        _CONFIGS_DIR) else []
    hint = f"the configs in {os.path.relpath(_CONFIGS_DIR)}/ are {', '.join(names)}."
  raise InputError(f"--config {path}: no such file (relative paths start at "
                   f"{os.getcwd()}); {hint}")


def check_writable_dir(path: str, flag: str) -> None:
  """`path` is a writable directory, or one that can be created, without creating it.

  Remote paths (`gs://...`) are left to the file system that opens them.

  Raises:
    InputError naming the flag, the path and the component in the way.
  """
  if "://" in path:
    return
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.lexists(full):
    if not os.path.isdir(full):
      raise InputError(f"{flag} {path} exists and is not a directory.")
    if not os.access(full, os.W_OK | os.X_OK):
      raise InputError(f"{flag} {path} is not writable.")
    return
  parent = os.path.dirname(full)
  while not os.path.lexists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise InputError(f"{flag} {path} cannot be created: {parent} is a file, not a directory.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise InputError(f"{flag} {path} cannot be created: {parent} is not writable.")


def check_main_argv(argv: Sequence[str]) -> None:
  """What `python -m vidjax.main` can check in its arguments before loading anything."""
  if asks_for_help(argv):
    return
  check_config_file(flag_value(argv, "config"))
  mode = flag_value(argv, "mode") or "train"
  workdir = flag_value(argv, "workdir")
  if mode == "train":
    if not workdir:
      raise InputError("--workdir is required to train (checkpoints and metrics go there).")
    check_writable_dir(workdir, "--workdir")


# ------------------------------------------------------- the config, before training
def check_config(config: ml_collections.ConfigDict) -> None:
  """Values that can be checked without building anything (more live in the trainer).

  Raises:
    InputError naming the field, its value and the valid values.
  """
  # pylint: disable-next=import-outside-toplevel
  from vidjax.train.metrics import FUSIONS
  fusion = config.get("eval", {}).get("fusion")
  # Checked with one view too, where it is unused: a typo would surface only once the
  # config is reused with several views.
  if fusion is not None and fusion not in FUSIONS:
    raise InputError(f"config.eval.fusion={fusion!r} is not known; expected one of "
                     f"{', '.join(FUSIONS)}.")
