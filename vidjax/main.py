"""Entry point: `python -m vidjax.main --config configs/NAME.py[:VARIANT] --workdir DIR`.

Config fields are overridden as `--config.optim.lr=0.01`; `--mode eval` evaluates the
workdir's latest checkpoint (or `config.init_from`) without training.
"""

from __future__ import annotations

import importlib.util
import sys

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

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
  # Imported once the flags parse: a typo in a config field is reported without waiting
  # for TensorFlow (clu's summary writer) and the data pipeline to load. (The configs
  # import JAX already: they start from the model registry's defaults.)
  # pylint: disable=import-outside-toplevel
  import jax
  from vidjax.data import pipeline
  from vidjax.train import checkpoint as ckpt_lib
  from vidjax.train import sharding, trainer
  # pylint: enable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  workdir = _WORKDIR.value
  if _MODE.value == "train" and not workdir:
    raise app.UsageError("--workdir is required to train.")
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


def _config_fields(config_arg: str, dotted: str) -> str:
  """The fields that exist where `dotted` (e.g. "optim.lrr") points, for the error."""
  path, _, variant = config_arg.partition(":")
  try:
    spec = importlib.util.spec_from_file_location("_vidjax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    node = module.get_config(variant)
    parents = dotted.split(".")[:-1]
    for name in parents:
      node = node[name]
    where = "config." + ".".join(parents) if parents else "config"
    return f"{where} has the fields: {', '.join(sorted(node.keys()))}"
  except Exception:  # pylint: disable=broad-except
    return ""  # The original error is clearer than a second one about the config file.


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with config errors as one clear line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError, flags.Error) as e:
    message = str(e).replace("\\n", " ").replace("\\'", "'").strip("'\"")
    if "Did you mean" in message:
      message = message[message.index("Did you mean"):]
    if "Traceback" in message:  # an error inside the config file: its first and last line
      lines = [l for l in message.splitlines() if l.strip()]
      message = f"{lines[0]} {lines[-1]}"
    overrides = [a[len("--config."):].split("=")[0] for a in argv if a.startswith("--config.")]
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_arg is None and "--config" in argv[:-1]:
      config_arg = argv[argv.index("--config") + 1]
    bad = [o for o in overrides if o.split(".")[-1] in message]
    hint = _config_fields(config_arg, bad[0]) if bad and config_arg else ""
    if bad:
      message = f"unknown config field config.{bad[0]}: {message}"
    print(f"error: {message}" + (f"\n{hint}" if hint else ""), file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
