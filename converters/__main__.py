"""CLI: import a PyTorch checkpoint as vidjax variables.

    python -m converters --source tsm --config configs/tsn_r50.py[:VARIANT] \
        --checkpoint TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth --output DIR \
        [--config.model.num_classes=N]

Writes `DIR/variables` (orbax) and `DIR/vidjax_meta.json`; `vidjax.checkpoint.
load_variables(DIR)` reads them back. Every failure (a missing, damaged or foreign file, a
checkpoint that does not fit the model, an unwritable output) prints one first line
`error: ...` naming the file and the problem, exits with status 2 and leaves nothing at
`--output`. A mismatch's full list of offending keys follows that line when it is short,
or with --verbosity=1.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from absl import app, flags, logging

import converters
from converters.torch_io import CheckpointFileError, load_torch_state_dict
from vidjax import config_checks, run_config

_CONFIG = flags.DEFINE_string(
    "config", None, "Config file (configs/NAME.py[:VARIANT]); config.model is used. "
    "Fields: --config.FIELD=VALUE.")
_SOURCE = flags.DEFINE_string(
    "source", None, f"Upstream code base of the checkpoint: {', '.join(converters.known_sources())}.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "PyTorch .pth file.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory.")
_CLIP_CHECKPOINT = flags.DEFINE_string(
    "clip_checkpoint", None, "--source tc_clip: OpenAI CLIP's checkpoint (ViT-B-16.pt), whose "
    "token embedding embeds the class names (TC-CLIP's checkpoints lack it).")
flags.mark_flags_as_required(["config", "source", "checkpoint", "output"])

# A mismatch listing longer than this goes to --verbosity=1 only: a checkpoint of another
# architecture lists hundreds of keys, which would push the diagnosis off the screen.
_MAX_DETAIL_LINES = 20


# --checkpoint -> its state_dict, read by `_parse_flags` before the config loads.
_STATE_DICTS: dict[str, Any] = {}
# The --config.FIELD=VALUE overrides, taken out of argv before absl parses the rest.
_OVERRIDES: list[str] = []


def _check_argv(argv: list[str]) -> None:
  """Checks the command line's files before absl loads the config (and with it JAX), and
  reads the checkpoint then: it needs only torch, and a wrong file is the usual mistake."""
  if config_checks.asks_for_help(argv):
    return
  config_checks.check_config_file(config_checks.flag_value(argv, "config"))
  source = config_checks.flag_value(argv, "source")
  if source is not None and source not in converters.known_sources():
    raise config_checks.InputError(f"--source {source!r} is not known; known sources: "
                                   f"{', '.join(converters.known_sources())}.")
  output = config_checks.flag_value(argv, "output")
  if output is not None:
    config_checks.check_writable_dir(output, "--output")
  for flag in ("checkpoint", "clip_checkpoint"):
    checkpoint = config_checks.flag_value(argv, flag)
    if checkpoint is not None:
      _STATE_DICTS[checkpoint] = load_torch_state_dict(checkpoint)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    _check_argv(argv)
    _OVERRIDES[:], rest = run_config.split_overrides(argv)
  except (config_checks.InputError, CheckpointFileError, run_config.ConfigError) as e:
    config_checks.exit_with_error(str(e))
  try:
    return flags.FLAGS(rest)
  except flags.Error as e:
    config_checks.exit_with_error(str(e))


def _model_name(config_arg: str) -> str:
  """'configs/tsm_r50.py:smoke' -> 'tsm_r50:smoke', as errors name the target."""
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return f"{name}:{variant}" if variant else name


def _save(output: str, variables: dict, meta: dict) -> None:
  """Writes the variables; on failure removes what this run created, so nothing is left."""
  from vidjax.checkpoint import save_variables  # pylint: disable=g-import-not-at-top
  created = not os.path.lexists(output)
  try:
    save_variables(output, variables, meta=meta)
  except BaseException as e:
    if created:
      shutil.rmtree(output, ignore_errors=True)
    if isinstance(e, OSError):
      logging.vlog(1, "Traceback:", exc_info=True)
      config_checks.exit_with_error(f"{output}: cannot write the converted variables: {e}")
    raise


def _with_clip_token_embedding(state_dict: dict, clip_checkpoint: str) -> dict:
  """TC-CLIP's state_dict plus CLIP's `token_embedding.weight` from `clip_checkpoint`."""
  if _SOURCE.value != "tc_clip":
    config_checks.exit_with_error(f"--clip_checkpoint is for --source tc_clip, not "
                                  f"--source {_SOURCE.value}.")
  clip = _STATE_DICTS.get(clip_checkpoint) or load_torch_state_dict(clip_checkpoint)
  key = "token_embedding.weight"
  found = [k for k in clip if k.removeprefix("module.") == key]
  if not found:
    config_checks.exit_with_error(f"{clip_checkpoint}: no {key!r} in it; expected OpenAI "
                                  "CLIP's checkpoint (ViT-B-16.pt).")
  return {**state_dict, key: clip[found[0]]}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every file operation at INFO
    logging.set_verbosity(logging.WARNING)
  verbose = flags.FLAGS.verbosity >= 1
  try:
    config = run_config.load(_CONFIG.value, _OVERRIDES)
  except run_config.ConfigError as e:
    config_checks.exit_with_error(str(e))
  checkpoint = _CHECKPOINT.value
  try:
    state_dict = _STATE_DICTS.get(checkpoint) or load_torch_state_dict(checkpoint)
    if _CLIP_CHECKPOINT.value:
      state_dict = _with_clip_token_embedding(state_dict, _CLIP_CHECKPOINT.value)
    variables = converters.convert(_SOURCE.value, state_dict, config)
  except CheckpointFileError as e:
    config_checks.exit_with_error(str(e))
  except converters.ConversionError as e:
    target = f"{_SOURCE.value}/{_model_name(_CONFIG.value)}"
    details = str(e)
    if not verbose and details.count("\n") + 1 > _MAX_DETAIL_LINES:
      details = (f"({details.count(chr(10)) + 1} lines list every offending key: rerun with "
                 "--verbosity=1 to see them.)")
    config_checks.exit_with_error(f"{checkpoint} does not fit {target}: {e.summary()}",
                                  f"{details}\nNothing was written.")
  except ValueError as e:  # a model the source does not provide
    config_checks.exit_with_error(f"{checkpoint}: {e}")
  from vidjax import models  # pylint: disable=g-import-not-at-top
  meta = {
      "source": _SOURCE.value,
      "checkpoint": os.path.abspath(checkpoint),
      "config": _CONFIG.value,
      "model": json.loads(models.resolve_model_config(config.model).to_json_best_effort()),
  }
  _save(_OUTPUT.value, variables, meta)
  print(f"wrote {_OUTPUT.value} ({len(state_dict)} checkpoint entries)")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
