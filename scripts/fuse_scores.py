"""Fuses the per-video scores of several evaluations and reports their accuracy.

    python scripts/fuse_scores.py RGB_scores.npz FLOW_scores.npz [--weights 1 1.5] \
        [--softmax] [--output fused_scores.npz]

The inputs are scores files of vidjax evaluations (`WORKDIR/eval/*_scores.npz`, see
vidjax/train/eval_outputs.py): e.g. two models, two view protocols or two modalities over
the same eval list, or an RGB and an audio model over the same videos. They must cover
the same videos with the same labels and the same number of classes (rows are matched by
file name, in the first file's order; when the names differ, by the name without its
extension, so a video's `a/b.mp4` and its audio features' `a/b.npy` are one video);
otherwise a one-line error names the file that differs. The fused scores are
`sum_i weight_i * scores_i` (weights default to 1); `--softmax` first turns each file's
scores into probabilities (for scores that are logits, e.g. `eval.fusion=mean_logits`).

Prints each input's and the fusion's top-1, top-5 and mean class accuracy (the last line:
`fused: top1=... top5=... mean_class_accuracy=...`); `--output` writes the fused scores
as a scores file of the same format. The role of MMAction2's
tools/analysis_tools/report_accuracy.py.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax.train import eval_outputs  # pylint: disable=g-import-not-at-top,wrong-import-position


def softmax(scores: np.ndarray) -> np.ndarray:
  """Row-wise softmax of [N, K] scores, in float64."""
  z = scores.astype(np.float64) - scores.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def _example(names: list[str]) -> str:
  return f" (e.g. {names[0]!r})" if names else ""


def video_id(name: str) -> str:
  """A row's video when the files name different modalities of it: the name without its
  extension (`a/b.mp4`, frames `a/b`, audio features `a/b.npy` -> `a/b`)."""
  return os.path.splitext(name)[0]


def align(first: dict, first_path: str, other: dict, path: str) -> np.ndarray:
  """Rows of `other` in the order of `first`'s files (matched by name, else by
  `video_id`); ValueError naming `path` when the two files do not cover the same videos
  with the same labels and classes."""
  k0, k = first["scores"].shape[1], other["scores"].shape[1]
  if k != k0:
    raise ValueError(f"{path} has scores of {k} classes, {first_path} of {k0}.")
  names0 = first.get("class_names")
  names = other.get("class_names")
  if names0 is not None and names is not None and names.tolist() != names0.tolist():
    raise ValueError(f"{path} names its classes differently from {first_path}.")
  files0, files = first["files"].tolist(), other["files"].tolist()
  if files == files0:
    order = np.arange(len(files))
  else:
    if set(files) != set(files0):   # other file kinds of the same videos (RGB, audio)
      files0, files = [video_id(f) for f in files0], [video_id(f) for f in files]
    position = {f: i for i, f in enumerate(files)}
    missing = [f for f in files0 if f not in position]
    extra = sorted(set(files) - set(files0))
    if missing or extra or len(position) != len(files) or len(files) != len(files0):
      raise ValueError(
          f"{path} covers other videos than {first_path}: {len(missing)} of its "
          f"{len(files0)} missing{_example(missing)}, {len(extra)} extra{_example(extra)}"
          f"{'' if len(position) == len(files) else ', repeated file names'}.")
    order = np.array([position[f] for f in files0], np.int64)
  differ = np.flatnonzero(other["labels"][order] != first["labels"])
  if differ.size:
    i = int(differ[0])
    raise ValueError(f"{path} labels {differ.size} videos differently from {first_path} "
                     f"(e.g. {files0[i]!r}: {int(other['labels'][order][i])} vs "
                     f"{int(first['labels'][i])}).")
  return order


def fuse(paths: list[str], weights: list[float] | None = None,
         apply_softmax: bool = False) -> tuple[dict, list[dict]]:
  """(the first file's fields with the fused scores, each input's fields aligned to it)."""
  if weights is None:
    weights = [1.0] * len(paths)
  if len(weights) != len(paths):
    raise ValueError(f"--weights has {len(weights)} values for {len(paths)} score files.")
  files = [eval_outputs.load_scores(p) for p in paths]
  first = files[0]
  fused = np.zeros(first["scores"].shape, np.float64)
  aligned = []
  for path, data, w in zip(paths, files, weights):
    order = align(first, paths[0], data, path)
    scores = data["scores"][order]
    scores = softmax(scores) if apply_softmax else scores.astype(np.float64)
    aligned.append(dict(data, scores=scores, files=first["files"], labels=first["labels"]))
    fused += w * scores
  return dict(first, scores=fused), aligned


def _line(metrics: dict[str, float]) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("scores", nargs="+", help="scores files (*_scores.npz)")
  parser.add_argument("--weights", type=float, nargs="+", default=None,
                      help="one weight per file (default: 1 each)")
  parser.add_argument("--softmax", action="store_true",
                      help="softmax each file's scores before the weighted sum")
  parser.add_argument("--output", default="", help="write the fused scores file here")
  args = parser.parse_args(argv)
  try:
    fused, inputs = fuse(args.scores, args.weights, args.softmax)
  except ValueError as e:   # includes eval_outputs.ScoresFileError
    print(f"error: {e}", file=sys.stderr)
    return 2
  labels = fused["labels"]
  print(f"{len(inputs)} score files, {len(labels)} videos, {fused['scores'].shape[1]} "
        f"classes, weights {' '.join(f'{w:g}' for w in args.weights or [1] * len(inputs))}"
        f"{', softmax first' if args.softmax else ''}")
  for path, data in zip(args.scores, inputs):
    print(f"{path}: {_line(eval_outputs.accuracies(data['scores'], labels))}")
  if args.output:
    names = fused.get("class_names")
    eval_outputs.save_scores(
        args.output, files=fused["files"].tolist(), labels=labels, scores=fused["scores"],
        index=fused.get("index"), skipped_files=fused.get("skipped_files", np.array([])).tolist(),
        class_names=None if names is None else names.tolist(),
        fusion="weighted sum of " + ", ".join(os.path.basename(p) for p in args.scores),
        num_views=int(fused.get("num_views", 1)))
    print(f"wrote {args.output}")
  print(f"fused: {_line(eval_outputs.accuracies(fused['scores'], labels))}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
