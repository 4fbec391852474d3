"""Entry point: `python -m vidjax.main --config configs/NAME.py[:VARIANT] --workdir DIR`.

Config fields are overridden as `--config.optim.lr=0.01`; `--mode eval` evaluates the
workdir's latest checkpoint (or `config.init_from`) without training, with the config the
workdir recorded when `--config` is not given. `--config` also takes a workdir or its
config.json (vidjax/run_config.py).
"""

from __future__ import annotations

import sys

import logging as std_logging

from absl import app, flags, logging

from vidjax import config_checks, run_config

_CONFIG = flags.DEFINE_string(
    "config", None, "Config file, e.g. configs/tsn_r50.py:demo, or a workdir (its "
    "config.json); --mode eval: the workdir's by default. Fields: --config.FIELD=VALUE.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (and evaluate), or "
                          "only evaluate a checkpoint.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "--mode eval: a checkpoint to evaluate "
                                  "instead of the workdir's latest.")
# The --config.FIELD=VALUE overrides, taken out of argv before absl parses the rest.
_OVERRIDES: list[str] = []


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of orbax and grain (a dozen lines per checkpoint); keeps warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "/orbax/" in record.pathname or "/grain/" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = _WORKDIR.value
  try:
    if _MODE.value == "train" and not workdir:  # a --flagfile escapes _parse_flags' look
      raise config_checks.InputError("--workdir is required to train.")
    spec = _CONFIG.value or (workdir if _MODE.value == "eval" else None)
    if not spec:
      raise config_checks.InputError("--config is required: configs/NAME.py[:VARIANT] (with "
                                     "--mode eval, a --workdir that has config.json).")
    config = run_config.load(spec, _OVERRIDES)
    config_checks.check_config(config)
  except (config_checks.InputError, run_config.ConfigError) as e:
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
  logging.info("%s %s: JAX %s on %d %s device(s), process %d of %d.", _MODE.value, spec,
               jax.__version__, jax.device_count(), jax.default_backend(),
               jax.process_index(), jax.process_count())
  cores = sharding.host_cores()
  if jax.default_backend() == "cpu" and jax.device_count() == 1 and cores > 1:
    logging.info("This CPU has %d cores: --config.cpu_devices=-1 runs one device per core, "
                 "usually faster (scripts/README.md).", cores)
  try:
    if _MODE.value == "train":
      results = trainer.run(config, workdir)
    else:
      results = trainer.evaluate_only(config, workdir, _CHECKPOINT.value)
  except KeyboardInterrupt:
    # Once training runs, Ctrl-C stops at a step boundary with a checkpoint
    # (vidjax/train/preemption.py); before that there is nothing to save.
    print("stopped by SIGINT before training began: nothing to save.", file=sys.stderr)
    sys.exit(130)
  except (pipeline.DataNotFoundError, trainer.TrainingError, ckpt_lib.CheckpointError,
          ValueError) as e:
    # These carry messages written for the user (config validation, data, checkpoints);
    # a traceback would bury them, so it goes to the log at --verbosity=1 only.
    logging.vlog(1, "Traceback:", exc_info=True)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print("final: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing of all but the config overrides, after the checks of the raw
  arguments (config path, workdir) that need nothing loaded; every problem is one
  `error:` line and exit status 2."""
  try:
    config_checks.check_main_argv(argv)
    _OVERRIDES[:], rest = run_config.split_overrides(argv)
  except (config_checks.InputError, run_config.ConfigError) as e:
    config_checks.exit_with_error(str(e))
  try:
    return flags.FLAGS(rest)
  except flags.Error as e:
    config_checks.exit_with_error(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
