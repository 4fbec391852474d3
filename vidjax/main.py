"""Entry point: `python -m vidjax.main --config configs/NAME.py[:VARIANT] --workdir DIR`.

Config fields are overridden as `--config.optim.lr=0.01`; `--mode eval` evaluates the
workdir's latest checkpoint (or `config.init_from`) without training.
"""

from __future__ import annotations

import sys

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from vidjax import config_checks

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
  config = _CONFIG.value
  workdir = _WORKDIR.value
  try:
    if _MODE.value == "train" and not workdir:  # a --flagfile escapes _parse_flags' look
      raise config_checks.InputError("--workdir is required to train.")
    config_checks.check_config(config)
  except config_checks.InputError as e:
    config_checks.exit_with_error(str(e))
  # Imported once the flags and the config are checked: a typo is reported without
  # waiting for TensorFlow (clu's summary writer) and the data pipeline to load. (The
  # configs import JAX already: they start from the model registry's defaults.)
  # pylint: disable=import-outside-toplevel
  import jax
  from vidjax.data import pipeline
  from vidjax.train import checkpoint as ckpt_lib
  from vidjax.train import sharding, trainer
  # pylint: enable=import-outside-toplevel
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  # Before the first device access below: several hosts join here.
  sharding.set_cpu_devices(config.get("cpu_devices", 0))
  sharding.initialize_distributed(config.get("distributed"))
  logging.info("JAX %s on %d %s device(s), process %d of %d.", jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_index(),
               jax.process_count())
  cores = sharding.host_cores()
  if jax.default_backend() == "cpu" and jax.device_count() == 1 and cores > 1:
    logging.info("This CPU has %d cores: --config.cpu_devices=-1 runs one device per core, "
                 "usually faster (scripts/README.md).", cores)
  try:
    if _MODE.value == "train":
      results = trainer.run(config, workdir)
    else:
      results = trainer.evaluate_only(config, workdir, _CHECKPOINT.value)
  except (pipeline.DataNotFoundError, trainer.TrainingError, ckpt_lib.CheckpointError,
          ValueError) as e:
    # These carry messages written for the user (config validation, data, checkpoints);
    # a traceback would bury them, so it goes to the log at --verbosity=1 only.
    logging.vlog(1, "Traceback:", exc_info=True)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("final: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, after the checks of the raw arguments (config path, workdir) that
  need nothing loaded; every problem is one `error:` line and exit status 2."""
  try:
    config_checks.check_main_argv(argv)
  except config_checks.InputError as e:
    config_checks.exit_with_error(str(e))
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
    config_checks.exit_with_error(*config_checks.describe_flag_error(argv, e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
