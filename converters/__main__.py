"""CLI: import a PyTorch checkpoint as vidjax variables.

    python -m converters --source tsm --config configs/tsn_r50.py[:VARIANT] \
        --checkpoint TSM_kinetics_RGB_resnet50_avg_segment5_e50.pth --output DIR \
        [--config.model.num_classes=N]

Writes `DIR/variables` (orbax) and `DIR/vidjax_meta.json`; `vidjax.checkpoint.
load_variables(DIR)` reads them back. On any mismatch it exits with the full list of
offending keys and writes nothing.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import converters
from vidjax import models
from converters.torch_io import load_torch_state_dict

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/NAME.py[:VARIANT]); config.model is used.",
    lock_config=True)
_SOURCE = flags.DEFINE_string(
    "source", None, f"Upstream code base of the checkpoint: {', '.join(converters.known_sources())}.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "PyTorch .pth file.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory.")
flags.mark_flags_as_required(["config", "source", "checkpoint", "output"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every file operation at INFO
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  state_dict = load_torch_state_dict(_CHECKPOINT.value)
  try:
    variables = converters.convert(_SOURCE.value, state_dict, config)
  except (converters.ConversionError, ValueError) as e:
    sys.exit(f"conversion failed, nothing written: {e}")
  from vidjax.checkpoint import save_variables  # pylint: disable=g-import-not-at-top
  meta = {
      "source": _SOURCE.value,
      "checkpoint": os.path.abspath(_CHECKPOINT.value),
      "config": flags.FLAGS["config"].config_filename,
      "model": json.loads(models.resolve_model_config(config.model).to_json_best_effort()),
  }
  save_variables(_OUTPUT.value, variables, meta=meta)
  print(f"wrote {_OUTPUT.value} ({len(state_dict)} checkpoint entries)")


if __name__ == "__main__":
  app.run(main)
