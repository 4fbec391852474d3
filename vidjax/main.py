"""Entry point: `python -m vidjax.main --config configs/NAME.py[:VARIANT] --workdir DIR`.

Config fields are overridden as `--config.optim.lr=0.01`; `--mode eval` evaluates the
workdir's latest checkpoint (or `config.init_from`) without training.
"""

from __future__ import annotations

import sys

import logging as std_logging

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from vidjax.data import pipeline
from vidjax.train import checkpoint as ckpt_lib
from vidjax.train import trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/tsn_r50.py:demo.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (and evaluate), or "
                          "only evaluate a checkpoint.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "--mode eval: a checkpoint to evaluate "
                                  "instead of the workdir's latest.")
flags.mark_flags_as_required(["config"])


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of orbax and grain (a dozen lines per checkpoint); keeps warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "/orbax/" in record.pathname or "/grain/" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  workdir = _WORKDIR.value
  if _MODE.value == "train" and not workdir:
    raise app.UsageError("--workdir is required to train.")
  logging.info("JAX %s on %d %s device(s), process %d of %d.", jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_index(),
               jax.process_count())
  try:
    if _MODE.value == "train":
      results = trainer.run(config, workdir)
    else:
      results = trainer.evaluate_only(config, workdir, _CHECKPOINT.value)
  except (pipeline.DataNotFoundError, trainer.TrainingError, ckpt_lib.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("final: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


if __name__ == "__main__":
  app.run(main)
