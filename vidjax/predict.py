r"""Class predictions for video files from a trained or converted checkpoint.

    python -m vidjax.predict --checkpoint /tmp/tsn_demo a.mp4 b.mp4
    python -m vidjax.predict --checkpoint CONVERTED_DIR --config configs/tsm_r50.py \
        --config.data.label_names=~/data/k400/label_names.txt clip.mp4
    python -m vidjax.predict --checkpoint /tmp/tsn_demo --window_seconds 4 \
        --stride_seconds 2 long.mp4 --json /tmp/predictions.json

`--checkpoint` is a training workdir (its latest checkpoint), one step directory of it, or
a converter's output directory (`vidjax.checkpoint.load_variables` reads all three).
Without `--config` the workdir's `config.json` (written by every training run) is the
config; `--config.a.b=value` overrides either (vidjax/run_config.py).

Each video is read as evaluation reads it: the config's test views (`data.test_clips`
temporal clips x the crops of `data.test_crop`, sampled and transformed by the data
pipeline's own code) fused by `eval.fusion`. The printed scores are probabilities:
the mean of the views' softmax (`mean_softmax`), the softmax of the mean logits
(`mean_logits`), or the highest softmax of any view (`max_softmax`, which does not sum
to 1). Class names: the file `data.label_names`, the demo data set's names, else
`class N`.

`--window_seconds S [--stride_seconds S2]` predicts each time window [k S2, k S2 + S)
of a long video instead (the last one ends with the video), sampling the test views
inside the window.

An unreadable video gets one `error:` line on stderr and the others are still
predicted; the exit status is then 2.

Zero-shot, with no training: a CLIP-family model (configs/clip_vitb16.py,
configs/tc_clip.py) scores the class names you type, made into its prompts, from
converted CLIP or TC-CLIP weights:

    python -m converters --source clip --config configs/clip_vitb16.py \
        --checkpoint ViT-B-16.pt --output ~/ckpt/clip_vitb16
    python -m vidjax.predict --checkpoint ~/ckpt/clip_vitb16 --config configs/clip_vitb16.py \
        --config.model.class_names="('juggling balls', 'playing violin')" a.mp4
    # or --config.model.label_file=names.txt (one class name a line)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from vidjax import config_checks
from vidjax.data import prepare

# The pipeline's pieces and the models import JAX; `main` imports this module's
# heavy parts only after the arguments parse, so a usage error is instant.

DEFAULT_TOP_K = 5
# Window mode decodes and runs this many model frames (windows x views x T) at a time.
_WINDOW_BATCH_FRAMES = 256


class PredictError(ValueError):
  """The checkpoint, config or arguments cannot give predictions; one line."""


# ---------------------------------------------------------------------------- the model
def clip_shape(config: Any) -> tuple[int, ...]:
  """One example's input as the eval step sees it: [V, T, S, S, 3] with V > 1 views,
  else [T, S, S, 3]."""
  d = config.data
  frame = (int(d.num_frames), int(d.image_size), int(d.image_size), 3)
  views = int(config.eval.num_views)
  return ((views,) if views > 1 else ()) + frame


def check_config(config: Any) -> None:
  """Raises ValueError (one line) for a test protocol or fusion that eval would refuse."""
  # pylint: disable=import-outside-toplevel
  from vidjax.data import pipeline, transforms
  from vidjax.train import metrics
  # pylint: enable=import-outside-toplevel
  if config.eval.fusion not in metrics.FUSIONS:
    raise PredictError(f"config.eval.fusion={config.eval.fusion!r} is not known; expected "
                       f"one of {', '.join(metrics.FUSIONS)}.")
  pipeline.test_views(config.data, int(config.eval.num_views))
  pipeline.make_sampler(config.data)
  transforms.from_config(config.data)


def load_model(checkpoint: str, config: Any) -> tuple[Any, dict]:
  """(module, variables) of `config.model` with the variables of `checkpoint`.

  Raises:
    PredictError: no checkpoint there, or one of another model (every missing,
      unexpected or mismatched variable is listed).
  """
  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp
  from vidjax import models
  from vidjax.train import checkpoint as ckpt_lib
  # pylint: enable=import-outside-toplevel
  model = models.build_model(config.model)
  d = config.data
  example = jnp.zeros((1, int(d.num_frames), int(d.image_size), int(d.image_size), 3), jnp.uint8)
  template = jax.eval_shape(lambda r: model.init(r, example, train=False), jax.random.key(0))
  try:
    loaded = ckpt_lib.load_variables(checkpoint)
    params, batch_stats = ckpt_lib.merge_init_from(
        template["params"], template.get("batch_stats", {}), loaded, r"$^", checkpoint)
  except ckpt_lib.CheckpointError as e:
    raise PredictError(str(e)) from e
  except ckpt_lib.TrainingError as e:
    problems = str(e).split("\n", 1)[-1].replace("\n", ";")
    raise PredictError(f"--checkpoint {checkpoint} does not fit config.model "
                       f"({config.model.name}): {problems}") from e
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return model, jax.device_put(variables)


def probabilities(model: Any, variables: dict, clips: Any, fusion: str) -> Any:
  """Class probabilities [B, K] float32 of uint8 clips [B, V, T, S, S, 3] (V views of each
  example, fused by `fusion` as the eval step does) or [B, T, S, S, 3] (one view).

  mean_softmax: the views' mean softmax; mean_logits: the softmax of their mean logits
  (eval's ranking); max_softmax: each class's highest softmax over the views.
  """
  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp
  from vidjax.train import metrics
  # pylint: enable=import-outside-toplevel
  views = clips.shape[1] if clips.ndim == 6 else 1
  flat = clips.reshape((-1,) + clips.shape[-4:])
  logits = model.apply(variables, flat, train=False).astype(jnp.float32)
  logits = logits.reshape((-1, views, logits.shape[-1]))
  if fusion == "mean_logits":
    return jax.nn.softmax(logits.mean(axis=1), axis=-1)
  return metrics.fuse_views(logits, fusion)


def class_names(config: Any) -> list[str]:
  """Names of the model's classes: a CLIP-family model's own (`model.class_names` or
  `model.label_file`, its prompts' names), `data.label_names` (one a line), the demo data
  set's, else `class N`."""
  # pylint: disable=import-outside-toplevel
  from vidjax.data import demo, sources
  from vidjax.models import resolve_model_config
  # pylint: enable=import-outside-toplevel
  if "class_names" in resolve_model_config(config.model):
    from vidjax.models.clip import recognizer  # pylint: disable=import-outside-toplevel
    try:
      return recognizer.class_names(resolve_model_config(config.model))
    except ValueError as e:
      raise PredictError(str(e)) from e
  k = int(config.model.num_classes)
  path = config.data.get("label_names", "")
  if path:
    try:
      names = sources.read_label_names(path)
    except OSError as e:
      raise PredictError(f"data.label_names: cannot read {path} ({e.strerror or e}).") from e
    if len(names) != k:
      raise PredictError(f"data.label_names: {path} names {len(names)} classes, the model "
                         f"has config.model.num_classes={k}.")
    return names
  if config.data.name == "demo" and k == len(demo.CLASS_NAMES):
    return list(demo.CLASS_NAMES)
  return [f"class {i}" for i in range(k)]


def top_k(probs: np.ndarray, k: int) -> list[int]:
  """The k highest classes, ties to the lower index (as eval's top-k)."""
  return [int(i) for i in np.argsort(-np.asarray(probs), kind="stable")[:k]]


def window_spans(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
  """[(start, end)] seconds of windows [k stride, k stride + window) until one reaches
  `duration`; the last ends at `duration` (a video shorter than a window: one window)."""
  spans, k = [], 0
  while True:
    start = k * stride
    spans.append((start, min(start + window, duration)))
    if start + window >= duration - 1e-9:
      return spans
    k += 1


# ---------------------------------------------------------------------------- predictor
@dataclasses.dataclass
class Predictor:
  """The model of a config and checkpoint, with the eval pipeline's test views."""

  config: Any
  model: Any
  variables: dict
  names: list[str]

  def __post_init__(self):
    # pylint: disable=import-outside-toplevel
    import jax
    from vidjax.data import pipeline, transforms
    from vidjax.train import xla_options
    # pylint: enable=import-outside-toplevel
    check_config(self.config)
    d = self.config.data
    self.clips, self.crops = pipeline.test_views(d, int(self.config.eval.num_views))
    self.reader, self.sampler = pipeline.make_reader(d), pipeline.make_sampler(d)
    self.transform = transforms.from_config(d)
    self.shape = clip_shape(self.config)
    self._fn = jax.jit(functools.partial(probabilities, self.model, fusion=self.config.eval.fusion),
                       compiler_options=xla_options.compiler_options(
                           self.config.eval.get("xla_options")))

  @classmethod
  def load(cls, checkpoint: str, config: Any) -> "Predictor":
    check_config(config)   # before the weights load
    names = class_names(config)
    model, variables = load_model(checkpoint, config)
    return cls(config, model, variables, names)

  def _views(self, path: str, frames: np.ndarray) -> np.ndarray:
    """[clips, T, H, W, 3] -> the example's input `self.shape`."""
    # pylint: disable-next=import-outside-toplevel
    from vidjax.data import pipeline
    views = pipeline.test_clip_views(self.transform, frames)
    views = views if len(self.shape) == 5 else views[0]
    if views.shape != self.shape:
      h, w = frames.shape[-3:-1]
      raise PredictError(
          f"{path}: frames of {h}x{w} give test views of {views.shape[-3]}x{views.shape[-2]}, "
          f"the model takes {self.shape[-3]}x{self.shape[-2]}: set --config.data.test_scale "
          f"(now {self.config.data.test_scale}) so that the crops fit.")
    return views

  def __call__(self, batch: np.ndarray) -> np.ndarray:
    """Probabilities [B, K] of a batch of inputs [B, *self.shape]."""
    return np.asarray(self._fn(self.variables, batch))

  def video(self, path: str) -> np.ndarray:
    """Probabilities [K] of one video file."""
    frames = self.reader({"video": path}, lambda n: self.sampler.test(n, self.clips))
    return self(self._views(path, frames)[None])[0]

  def windows(self, path: str, window: float, stride: float,
              progress: bool = False) -> list[tuple[float, float, np.ndarray]]:
    """[(start, end, probabilities [K])] of each time window of one video file."""
    # pylint: disable-next=import-outside-toplevel
    from vidjax.data import decode
    num_frames = decode.video_num_frames(path)
    rate = decode.video_frame_rate(path)
    spans = window_spans(num_frames / rate, window, stride)
    frames_per_window = int(np.prod(self.shape[:-3]))   # views x T
    per_batch = max(1, min(len(spans), _WINDOW_BATCH_FRAMES // frames_per_window))
    out = []
    chunks = range(0, len(spans), per_batch)
    for first in _progress(chunks, f"{os.path.basename(path)} windows", progress):
      chunk = spans[first:first + per_batch]

      def select(n: int, chunk=chunk) -> np.ndarray:   # [windows, clips, T]
        idx = []
        for start, end in chunk:
          f0 = min(round(start * rate), n - 1)
          f1 = max(f0 + 1, min(n, round(end * rate)))
          idx.append(f0 + self.sampler.test(f1 - f0, self.clips))
        return np.stack(idx)

      frames = self.reader({"video": path}, select)   # [windows, clips, T, H, W, 3]
      batch = np.stack([self._views(path, f) for f in frames])
      pad = per_batch - len(batch)   # one batch shape: one compile
      if pad:
        batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
      probs = self(batch)[:len(chunk)]
      out += [(s, e, p) for (s, e), p in zip(chunk, probs)]
    return out


def _progress(items: Iterable, desc: str, enabled: bool) -> Iterable:
  """tqdm on stderr when asked for and installed (it stays off where stderr is no
  terminal)."""
  if not enabled:
    return items
  try:
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  except ImportError:
    return items
  return tqdm(items, desc=desc, file=sys.stderr, disable=None, leave=False)


# ---------------------------------------------------------------------------- the CLI
def _ranked(probs: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
  return [{"label": i, "name": names[i], "probability": float(probs[i])}
          for i in top_k(probs, k)]


def _format_line(ranked: list[dict]) -> str:
  return " | ".join(f"{r['probability']:.4f} {r['name']}" for r in ranked)


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """Arguments, and the `--config.a.b=value` overrides as `a.b=value`."""
  from vidjax import run_config  # pylint: disable=import-outside-toplevel
  parser = run_config.checkpoint_parser(
      "python -m vidjax.predict", "Top classes of video files (see the module docstring).")
  parser.add_argument("--top_k", type=int, default=DEFAULT_TOP_K)
  parser.add_argument("--window_seconds", type=float, default=None,
                      help="predict each time window of this length")
  parser.add_argument("--stride_seconds", type=float, default=None,
                      help="start of one window to the next (default: --window_seconds)")
  parser.add_argument("--json", default=None, help="also write the results to this file")
  parser.add_argument("videos", nargs="+", metavar="VIDEO")
  return run_config.parse_command_line(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = _parse_args(sys.argv[1:] if argv is None else argv)
  if args.top_k < 1:
    config_checks.exit_with_error(f"--top_k={args.top_k}: expected at least 1.")
  if args.stride_seconds is not None and args.window_seconds is None:
    config_checks.exit_with_error("--stride_seconds needs --window_seconds.")
  window = args.window_seconds
  stride = args.stride_seconds if args.stride_seconds is not None else window
  if window is not None and (window <= 0 or stride <= 0):
    config_checks.exit_with_error(f"--window_seconds ({window}) and --stride_seconds ({stride}) must be > 0.")

  # pylint: disable=import-outside-toplevel
  from absl import logging
  from vidjax import models, run_config
  from vidjax.data import decode
  # pylint: enable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)   # orbax logs every file it restores at INFO
  try:
    spec = args.config or run_config.checkpoint_spec(args.checkpoint)
    config = run_config.load(spec, overrides)
    if "class_names" in models.resolve_model_config(config.model):
      # A CLIP-family model's classes are its prompts' names, however many are given.
      config.model.num_classes = 0
    print(f"loading {args.checkpoint} (config {spec})", file=sys.stderr, flush=True)
    predictor = Predictor.load(args.checkpoint, config)
  except ValueError as e:   # PredictError, ConfigError and the config checks
    config_checks.exit_with_error(str(e))
  k = min(args.top_k, len(predictor.names))

  results, failed = [], 0
  for path in _progress(args.videos, "videos", len(args.videos) > 1):
    try:
      if window is None:
        ranked = _ranked(predictor.video(path), predictor.names, k)
        print(path)
        for n, r in enumerate(ranked, 1):
          print(f"  {n}. {r['probability']:.4f}  {r['name']}")
        results.append({"video": path, "top_k": ranked})
      else:
        spans = predictor.windows(path, window, stride, progress=True)
        print(f"{path}: {len(spans)} windows of {window:g} s every {stride:g} s "
              f"({spans[-1][1]:.2f} s)")
        entries = []
        labels = [f"{start:.2f}-{end:.2f} s" for start, end, _ in spans]
        width = max(len(label) for label in labels)
        for label, (start, end, probs) in zip(labels, spans):
          ranked = _ranked(probs, predictor.names, k)
          print(f"  {label:>{width}}  {_format_line(ranked)}")
          entries.append({"start": start, "end": end, "top_k": ranked})
        results.append({"video": path, "windows": entries})
    except (decode.DecodeError, ValueError) as e:
      message = str(e) if path in str(e) else f"{path}: {e}"
      print(f"error: {message}", file=sys.stderr)
      results.append({"video": path, "error": message})
      failed += 1
    sys.stdout.flush()

  if args.json:
    prepare.write_atomic(os.path.expanduser(args.json), json.dumps({
        "checkpoint": os.path.abspath(os.path.expanduser(args.checkpoint)), "config": spec,
        "overrides": overrides, "fusion": config.eval.fusion,
        "views": int(config.eval.num_views), "window_seconds": window,
        "stride_seconds": stride, "results": results}, indent=2))
  if failed:
    print(f"error: {failed} of {len(args.videos)} videos could not be predicted.",
          file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
