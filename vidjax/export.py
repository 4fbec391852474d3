r"""Exports a model's inference function with its weights, to serve without vidjax.

    python -m vidjax.export --checkpoint /tmp/tsn_demo --output /tmp/tsn_demo_export
    python -m vidjax.export --checkpoint CONVERTED_DIR --config configs/tsm_r50.py \
        --config.data.label_names=labels.txt --output OUT [--batch_size 8] [--platforms cpu]

`--checkpoint` and `--config` (with `--config.a.b=value` overrides) are read as
`python -m vidjax.predict` reads them. OUT holds:

  model.jax_exported  `jax.export` serialization: StableHLO with the weights as constants.
                      fn = jax.export.deserialize(open(path, "rb").read()); fn.call(clips)
  saved_model/        TensorFlow SavedModel (jax2tf; the weights are its variables):
                      tf.saved_model.load(path).signatures["serving_default"](clips=clips)
                      -> {"probabilities": ...}
  export.json         the input and output (shape, dtype, meaning), class names, and the
                      test protocol that makes the input from a video.

The function is the one `vidjax.predict` runs. Input: uint8 clips in 0..255, RGB,
[B, V, T, S, S, 3] where the config evaluates V = eval.num_views > 1 views of each video
(data.test_clips temporal clips x the crops of data.test_crop, crop-major: view
c * clips + k is crop c of clip k), else [B, T, S, S, 3]; pixel normalisation is inside.
Output: float32 class probabilities [B, K], the views fused by eval.fusion
(vidjax/predict.py says how). The batch B is symbolic (any size) unless `--batch_size N`
fixes it. `--platforms` (default cpu,cuda) are the backends the artefacts run on.

OUT is written as OUT.tmp, both artefacts are loaded back and checked against the model
run here on random clips (`--no-verify` skips it), and OUT.tmp is then renamed to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from vidjax import config_checks, predict, run_config

JAX_FILE = "model.jax_exported"
SAVED_MODEL_DIR = "saved_model"
META_FILE = "export.json"
# Agreement required of the reloaded artefacts with the model run in this process.
VERIFY_ATOL = 1e-5
# The data fields that turn a video into the input (predict's test views).
_PROTOCOL_FIELDS = ("sampler", "num_frames", "frame_interval", "out_of_bound",
                    "test_sampling", "test_scale", "test_crop", "image_size")


class ExportError(RuntimeError):
  """An artefact could not be written or does not reproduce the model; one line."""


class _Steps:
  """Progress lines on stderr: step i of n, the elapsed time of the previous one."""

  def __init__(self, total: int):
    self.total, self.done, self.t0 = total, 0, time.time()

  def __call__(self, what: str) -> None:
    self.done += 1
    print(f"[{self.done}/{self.total}] {what} ({time.time() - self.t0:.0f} s elapsed)",
          file=sys.stderr, flush=True)


def inference_function(config: Any, model: Any, variables: dict) -> Any:
  """clips [B, *predict.clip_shape(config)] uint8 -> probabilities [B, K] float32, with
  `variables` closed over (they become the exported program's constants)."""
  fusion = config.eval.fusion
  return lambda clips: predict.probabilities(model, variables, clips, fusion)


def _input_spec(config: Any, batch_size: int) -> Any:
  import jax  # pylint: disable=import-outside-toplevel
  batch = batch_size if batch_size > 0 else jax.export.symbolic_shape("b")[0]
  return jax.ShapeDtypeStruct((batch,) + predict.clip_shape(config), np.uint8)


def export_jax(fn: Any, spec: Any, platforms: Sequence[str]) -> Any:
  """The `jax.export.Exported` of `fn` on inputs `spec`."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(spec)


def save_tf(config: Any, model: Any, variables: dict, batch_size: int,
            platforms: Sequence[str], directory: str) -> None:
  """A SavedModel whose `serving_default(clips)` returns {"probabilities": [B, K]}.

  The weights are tf.Variables (the SavedModel's variables/), not constants of the graph,
  which protobuf would limit to 2 GB.
  """
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from jax.experimental import jax2tf
  # pylint: enable=import-outside-toplevel
  fusion = config.eval.fusion
  converted = jax2tf.convert(
      lambda w, clips: predict.probabilities(model, w, clips, fusion),
      polymorphic_shapes=[None, "(b, ...)" if batch_size <= 0 else None],
      with_gradient=False, native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.weights = tf.nest.map_structure(
      lambda a: tf.Variable(np.asarray(a), trainable=False), variables)
  shape = (batch_size if batch_size > 0 else None,) + predict.clip_shape(config)

  @tf.function(input_signature=[tf.TensorSpec(shape, tf.uint8, name="clips")], autograph=False)
  def serve(clips):
    return {"probabilities": converted(module.weights, clips)}

  module.serve = serve
  tf.saved_model.save(module, directory, signatures={"serving_default": serve})


def describe(config: Any, names: list[str], batch_size: int, platforms: Sequence[str],
             checkpoint: str, spec: str, overrides: Sequence[str]) -> dict:
  """The contents of export.json."""
  import jax  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from vidjax.data import pipeline  # pylint: disable=import-outside-toplevel
  batch = batch_size if batch_size > 0 else "b"
  shape = [batch] + list(predict.clip_shape(config))
  views = int(config.eval.num_views)
  clips, crops = pipeline.test_views(config.data, views)
  layout = ("[batch, views, frames, height, width, RGB]" if views > 1 else
            "[batch, frames, height, width, RGB]")
  return {
      "model": config.model.name,
      "checkpoint": os.path.abspath(os.path.expanduser(checkpoint)),
      "config": spec,
      "overrides": list(overrides),
      "input": {"name": "clips", "shape": shape, "dtype": "uint8", "layout": layout,
                "values": "RGB 0..255 (the model normalises)",
                "batch": "any size (symbolic)" if batch_size <= 0 else "fixed"},
      "output": {"name": "probabilities", "shape": [batch, len(names)], "dtype": "float32",
                 "fusion": config.eval.fusion},
      "class_names": names,
      "test_protocol": {**{f: config.data[f] for f in _PROTOCOL_FIELDS},
                        "temporal_clips": clips, "crops": crops, "views": views,
                        "view_order": "crop-major: view c * temporal_clips + k is crop c "
                                      "of temporal clip k"},
      "jax_exported": {"file": JAX_FILE, "platforms": list(platforms),
                       "jax_version": jax.__version__},
      "saved_model": {"dir": SAVED_MODEL_DIR, "signature": "serving_default",
                      "input": "clips", "output": "probabilities",
                      "tensorflow_version": tf.__version__},
  }


def verify(directory: str, fn: Any, config: Any, batch_size: int,
           platforms: Sequence[str]) -> list[str]:
  """Loads both artefacts from `directory` and compares them with `fn` on random clips;
  returns what was checked. Raises ExportError beyond VERIFY_ATOL."""
  # pylint: disable=import-outside-toplevel
  import jax
  import tensorflow as tf
  # pylint: enable=import-outside-toplevel
  batch = batch_size if batch_size > 0 else 2   # 2: a symbolic batch is not fixed at 1
  clips = np.random.RandomState(0).randint(0, 256, (batch,) + predict.clip_shape(config),
                                           dtype=np.uint8)
  expected = np.asarray(jax.jit(fn)(clips))
  checked = []
  if jax.export.default_export_platform() in platforms:
    with open(os.path.join(directory, JAX_FILE), "rb") as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    got = np.asarray(exported.call(clips))
    _compare(got, expected, JAX_FILE)
    checked.append(JAX_FILE)
  if "cpu" in platforms:   # where TensorFlow runs the program (tensorflow-cpu)
    loaded = tf.saved_model.load(os.path.join(directory, SAVED_MODEL_DIR))
    got = loaded.signatures["serving_default"](clips=tf.constant(clips))["probabilities"]
    _compare(got.numpy(), expected, SAVED_MODEL_DIR)
    checked.append(SAVED_MODEL_DIR)
  return checked


def _compare(got: np.ndarray, expected: np.ndarray, what: str) -> None:
  diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
  if not diff <= VERIFY_ATOL:
    raise ExportError(f"the reloaded {what} does not reproduce the model: output "
                      f"{got.shape}, max difference {diff:.3g} (allowed {VERIFY_ATOL}).")


def _replace_dir(tmp: str, out: str) -> None:
  """Renames `tmp` to `out`, replacing an existing `out` only once `tmp` is complete."""
  if os.path.exists(out):
    old = f"{out}.old{os.getpid()}"
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old)
  else:
    os.rename(tmp, out)


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = run_config.checkpoint_parser(
      "python -m vidjax.export", "Exports the inference function (see the module docstring).")
  parser.add_argument("--output", required=True, help="output directory")
  parser.add_argument("--batch_size", type=int, default=0,
                      help="fixed batch size; 0 (default): any batch size (symbolic)")
  parser.add_argument("--platforms", default="cpu,cuda",
                      help="comma-separated backends the artefacts run on (cpu, cuda, rocm, tpu)")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
  parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                      help="reload the artefacts and compare them with the model")
  return run_config.parse_command_line(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = _parse_args(sys.argv[1:] if argv is None else argv)
  out = os.path.abspath(os.path.expanduser(args.output))
  tmp = out + ".tmp"
  platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
  known = ("cpu", "cuda", "rocm", "tpu")
  if not platforms or set(platforms) - set(known):
    config_checks.exit_with_error(f"--platforms={args.platforms!r}: expected a comma-separated subset of "
          f"{', '.join(known)}.")
  if args.batch_size < 0:
    config_checks.exit_with_error(f"--batch_size={args.batch_size}: expected 0 (any) or a batch size.")
  if os.path.exists(out) and not args.overwrite:
    config_checks.exit_with_error(f"--output {args.output} exists: remove it, pass --overwrite or choose another.")

  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)   # orbax logs every file it restores at INFO
  steps = _Steps(5 if args.verify else 4)
  try:
    spec = args.config or run_config.checkpoint_spec(args.checkpoint)
    config = run_config.load(spec, overrides)
    predict.check_config(config)
    names = predict.class_names(config)
    steps(f"loading {args.checkpoint} (config {spec})")
    model, variables = predict.load_model(args.checkpoint, config)
  except ValueError as e:   # PredictError, ConfigError and the config checks
    config_checks.exit_with_error(str(e))

  fn = inference_function(config, model, variables)
  if os.path.exists(tmp):   # left by an interrupted export
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    steps(f"jax.export for {', '.join(platforms)} -> {JAX_FILE}")
    exported = export_jax(fn, _input_spec(config, args.batch_size), platforms)
    with open(os.path.join(tmp, JAX_FILE), "wb") as f:
      f.write(exported.serialize())
    steps(f"jax2tf -> {SAVED_MODEL_DIR}/")
    save_tf(config, model, variables, args.batch_size, platforms,
            os.path.join(tmp, SAVED_MODEL_DIR))
    meta = describe(config, names, args.batch_size, platforms, args.checkpoint, spec, overrides)
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=2)
    if args.verify:
      steps("reloading both artefacts to compare them with the model")
      checked = verify(tmp, fn, config, args.batch_size, platforms)
      print(f"  verified {' and '.join(checked) or 'nothing (no platform runs here)'}: "
            f"within {VERIFY_ATOL} of the model", file=sys.stderr)
    _replace_dir(tmp, out)
  except (ExportError, ValueError) as e:
    shutil.rmtree(tmp, ignore_errors=True)
    config_checks.exit_with_error(str(e))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  steps(f"wrote {out}: input {meta['input']['shape']} uint8 -> probabilities "
        f"{meta['output']['shape']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
