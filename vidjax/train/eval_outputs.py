"""Per-video evaluation outputs: the scores file, a per-class accuracy table and a
confusion matrix.

Every evaluation (the periodic ones, the end-of-training one, `--mode eval`) writes into
`config.eval.output_dir`, or `WORKDIR/eval` when that is empty (`--mode eval` with
neither writes nothing, and says so in the log). Process 0 writes, from the eval step's
replicated outputs, which hold the rows of every process:

  `{tag}_scores.npz`     the per-video scores (below), MMAction2's `test.py --out` role;
  `{tag}_per_class.csv`  `class,name,count,correct,top1`, one row per class (`top1` is
                         empty for a class without eval videos);
  `{tag}_confusion.png`  the confusion matrix, rows (true class) normalised to 1; needs
                         matplotlib (`pip install vidjax[plots]`), else skipped with a log
                         line.

`tag` is `step_{N}` during training; for `--mode eval` it is `eval_step_{N}` for a
training workdir's checkpoint (or one of its step directories) and `eval_{DIR}` for
another variables directory DIR, plus `_{V}views` when `config.eval.num_views = V > 1`.

The scores file (`np.load(path)`, no pickle) holds, for the N eval videos that could be
read, in the order of the eval list:

  `files`          str [N]     each video as in the list (relative to `data.root`), a
                               frame folder, `eval/{class}/{index:06d}` for the demo data
                               set, `{tfds_name}/{split}[{index}]` for TFDS;
  `index`          int64 [N]   the video's position in the eval list;
  `labels`         int32 [N];
  `scores`         float32 [N, K]  `config.eval.fusion` over the views (softmax
                               probabilities for the softmax fusions, also for one view);
  `skipped_files`  str [M]     the videos that could not be read (not in the rows);
  `class_names`    str [K]     only when the data set names its classes;
  `fusion` (str), `num_views`, `step` (int; -1 when unknown): how the scores were made.

Only numpy here (matplotlib on demand), so the scripts that read scores files
(scripts/fuse_scores.py) start without JAX.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any, Optional, Sequence

from absl import logging
import numpy as np

from vidjax.data import prepare

SCORES_SUFFIX = "_scores.npz"
_REQUIRED = ("files", "labels", "scores")


class ScoresFileError(ValueError):
  """A scores file that cannot be used; the message names the file."""


# ---------------------------------------------------------------------------- names
def output_dir(config: Any, workdir: Optional[str]) -> Optional[str]:
  """Where evaluation outputs go: `config.eval.output_dir`, else `workdir/eval`, else None."""
  configured = config.eval.get("output_dir", "") or ""
  if configured:
    return os.path.abspath(os.path.expanduser(configured))
  if workdir:
    return os.path.join(os.path.abspath(os.path.expanduser(workdir)), "eval")
  return None


def _checkpoint_steps(directory: str) -> list[int]:
  # Orbax renames a step's temporary directory to the bare step number when it completes.
  if not os.path.isdir(directory):
    return []
  return [int(n) for n in os.listdir(directory) if n.isdigit()]


def checkpoint_tag(source: str, num_views: int = 1) -> str:
  """The file-name tag of a `--mode eval` of checkpoint `source` (see the module doc)."""
  path = os.path.abspath(os.path.expanduser(source))
  steps = _checkpoint_steps(os.path.join(path, "checkpoints"))
  name = os.path.basename(path.rstrip(os.sep))
  if steps:
    tag = f"eval_step_{max(steps)}"
  elif os.path.isdir(os.path.join(path, "state")) and name.isdigit():
    tag = f"eval_step_{int(name)}"
  else:
    tag = "eval_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "checkpoint")
  return tag + (f"_{num_views}views" if num_views > 1 else "")


def step_of_tag(tag: str) -> int:
  match = re.search(r"(?:^|_)step_(\d+)", tag)
  return int(match.group(1)) if match else -1


# ---------------------------------------------------------------------------- atomic files
def save_scores(path: str, *, files: Sequence[str], labels: np.ndarray, scores: np.ndarray,
                index: Optional[np.ndarray] = None, skipped_files: Sequence[str] = (),
                class_names: Optional[Sequence[str]] = None, fusion: str = "",
                num_views: int = 1, step: int = -1) -> None:
  """Writes a scores file (fields in the module doc) atomically."""
  scores = np.asarray(scores, np.float32)
  n = len(files)
  if scores.ndim != 2 or scores.shape[0] != n or len(labels) != n:
    raise ValueError(f"{path}: {n} files, {len(labels)} labels and scores of shape "
                     f"{scores.shape}; expected [N, K] scores for N = {n}.")
  fields = dict(files=np.asarray(list(files), np.str_), labels=np.asarray(labels, np.int32),
                scores=scores,
                index=np.arange(n, dtype=np.int64) if index is None else
                np.asarray(index, np.int64),
                skipped_files=np.asarray(list(skipped_files), np.str_),
                fusion=np.str_(fusion), num_views=np.int64(num_views), step=np.int64(step))
  if class_names is not None:
    if len(class_names) != scores.shape[1]:
      raise ValueError(f"{path}: {len(class_names)} class names for {scores.shape[1]} "
                       "classes.")
    fields["class_names"] = np.asarray(list(class_names), np.str_)
  # np.savez adds ".npz" to a file name without it; a file object keeps the temp name.
  buffer = io.BytesIO()
  np.savez(buffer, **fields)
  prepare.write_atomic(path, buffer.getvalue())


def load_scores(path: str) -> dict[str, np.ndarray]:
  """A scores file's arrays; ScoresFileError (naming the file) for anything else."""
  if not os.path.isfile(path):
    raise ScoresFileError(f"{path}: no such scores file.")
  try:
    with np.load(path, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
  except Exception as e:  # pylint: disable=broad-except  (zip, pickle, format errors)
    raise ScoresFileError(f"{path}: not a scores .npz file ({type(e).__name__}: {e}).") from e
  missing = [k for k in _REQUIRED if k not in data]
  if missing:
    raise ScoresFileError(f"{path}: not a scores file: no {', '.join(missing)} (has "
                          f"{', '.join(sorted(data))}).")
  scores, labels = data["scores"], data["labels"]
  if scores.ndim != 2 or labels.shape != (scores.shape[0],) or len(data["files"]) != len(labels):
    raise ScoresFileError(f"{path}: expected scores [N, K], labels [N] and files [N]; got "
                          f"{scores.shape}, {labels.shape} and {data['files'].shape}.")
  return data


# ---------------------------------------------------------------------------- accuracy
def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """bool [N]: the label is among the k highest of `scores` [N, K].

  The rule of vidjax/train/metrics.py: ties rank the lower class index first, and a
  non-finite label score is never correct.
  """
  k = min(k, scores.shape[-1])
  label_score = np.take_along_axis(scores, labels[:, None].astype(np.int64), axis=-1)
  classes = np.arange(scores.shape[-1])[None, :]
  ahead = (scores > label_score) | ((scores == label_score) & (classes < labels[:, None]))
  return (ahead.sum(axis=-1) < k) & np.isfinite(label_score[:, 0])


def per_class(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(count, correct) int64 [K]: eval videos of each class, and how many are top-1 right."""
  num_classes = scores.shape[-1]
  hit = topk_correct(scores, labels, 1)
  count = np.bincount(labels, minlength=num_classes)[:num_classes]
  correct = np.bincount(labels, weights=hit.astype(np.float64), minlength=num_classes)[:num_classes]
  return count.astype(np.int64), correct.astype(np.int64)


def accuracies(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """top1, top5 and mean_class_accuracy (over classes with eval videos) of [N, K] scores."""
  count, correct = per_class(scores, labels)
  seen = count > 0
  return {"top1": float(topk_correct(scores, labels, 1).mean()),
          "top5": float(topk_correct(scores, labels, 5).mean()),
          "mean_class_accuracy": float((correct[seen] / count[seen]).mean()) if seen.any()
                                 else 0.0}


def class_labels(class_names: Optional[Sequence[str]], num_classes: int) -> list[str]:
  """The class names, or the class numbers as strings when the data set has none."""
  return list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]


def write_per_class_csv(path: str, count: np.ndarray, correct: np.ndarray,
                        class_names: Optional[Sequence[str]] = None) -> None:
  """`class,name,count,correct,top1` rows (top1 empty for a class without videos)."""
  names = class_labels(class_names, len(count))

  def write(f):
    w = csv.writer(f)
    w.writerow(["class", "name", "count", "correct", "top1"])
    for k, (n, c) in enumerate(zip(count, correct)):
      w.writerow([k, names[k], int(n), int(c), f"{c / n:.6f}" if n else ""])

  buffer = io.StringIO(newline="")
  write(buffer)
  prepare.write_atomic(path, buffer.getvalue())


# ---------------------------------------------------------------------------- confusion
def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [K, K]: row = true class, column = predicted class."""
  flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion(path: str, matrix: np.ndarray, class_names: Optional[Sequence[str]] = None,
                   title: str = "") -> bool:
  """Writes the row-normalised confusion matrix as a PNG; False (and one log line) when
  matplotlib is not installed."""
  try:
    # The object API, not pyplot: no global backend is chosen for the caller.
    # pylint: disable=g-import-not-at-top
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    # pylint: enable=g-import-not-at-top
  except ImportError:
    logging.info("matplotlib is not installed: no confusion-matrix PNG "
                 "(pip install vidjax[plots]).")
    return False
  k = matrix.shape[0]
  rows = matrix.sum(axis=1, keepdims=True)
  normalised = matrix / np.maximum(rows, 1)
  side = float(np.clip(1.5 + 0.4 * k, 5.0, 24.0))
  fig = Figure(figsize=(side + 1.5, side))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title)
  if k <= 60:  # beyond that the names overlap; the CSV names every class
    names = class_labels(class_names, k)
    ax.set_xticks(range(k), names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
  if k <= 20:
    for i in range(k):
      for j in range(k):
        if matrix[i, j]:
          ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                  color="white" if normalised[i, j] > 0.5 else "black")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  prepare.write_atomic(path, buffer.getvalue())
  return True


# ---------------------------------------------------------------------------- evaluation
def gather_rows(outputs: Sequence[dict[str, np.ndarray]], num_examples: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The eval step's per-batch outputs as rows in list order.

  Args:
    outputs: host copies of `steps.eval_step`'s outputs, "scores" [B, K], "label" [B],
      "mask" [B], "index" [B] (-1 for padding).
    num_examples: the eval list's length.

  Returns:
    index [N], labels [N], scores [N, K] of the readable videos, and the list positions of
    the unreadable ones.
  """
  index = np.concatenate([o["index"] for o in outputs]).astype(np.int64)
  mask = np.concatenate([o["mask"] for o in outputs]).astype(bool)
  labels = np.concatenate([o["label"] for o in outputs])
  scores = np.concatenate([o["scores"] for o in outputs]).astype(np.float32)
  real = (index >= 0) & (index < num_examples)
  good = real & mask
  order = np.argsort(index[good], kind="stable")
  skipped = np.unique(index[real & ~mask])
  return index[good][order], labels[good][order], scores[good][order], skipped


def write_all(directory: str, tag: str, outputs: Sequence[dict[str, np.ndarray]],
              files: Sequence[str], class_names: Optional[Sequence[str]], *,
              fusion: str, num_views: int) -> dict[str, str]:
  """Writes `{tag}_scores.npz`, `{tag}_per_class.csv` and `{tag}_confusion.png` into
  `directory` from an evaluation's outputs; logs a short per-class summary.

  Returns the paths written, by kind ("scores", "per_class", "confusion").
  """
  index, labels, scores, skipped = gather_rows(outputs, len(files))
  if labels.ndim != 1:
    logging.info("Multi-label eval: no per-video scores file or per-class table.")
    return {}
  files = list(files)
  if class_names is not None and len(class_names) != scores.shape[1]:
    # e.g. a Kinetics CSV of an eval split that lacks some classes, without a names file
    logging.warning("%d class names for %d classes: the outputs number the classes "
                    "instead (set data.label_names).", len(class_names), scores.shape[1])
    class_names = None
  paths = {"scores": os.path.join(directory, tag + SCORES_SUFFIX),
           "per_class": os.path.join(directory, f"{tag}_per_class.csv"),
           "confusion": os.path.join(directory, f"{tag}_confusion.png")}
  save_scores(paths["scores"], files=[files[i] for i in index], labels=labels, scores=scores,
              index=index, skipped_files=[files[i] for i in skipped], class_names=class_names,
              fusion=fusion, num_views=num_views, step=step_of_tag(tag))
  count, correct = per_class(scores, labels)
  write_per_class_csv(paths["per_class"], count, correct, class_names)
  names = class_labels(class_names, scores.shape[1])
  seen = np.flatnonzero(count > 0)
  accuracy = correct[seen] / np.maximum(count[seen], 1)
  lowest = seen[np.argsort(accuracy, kind="stable")[:3]]
  lowest_text = ", ".join(f"{names[k]} {correct[k] / count[k]:.3f}" for k in lowest)
  logging.info("Per-class top-1 (%d classes with videos): mean %.4f, lowest %s. %d videos "
               "scored, %d unreadable left out: %s", len(seen),
               accuracy.mean() if len(seen) else 0.0, lowest_text or "none", len(labels),
               len(skipped), os.path.join(directory, tag + "_*"))
  matrix = confusion_matrix(labels, scores.argmax(axis=-1), scores.shape[1])
  if not plot_confusion(paths["confusion"], matrix, class_names,
                        title=f"{tag}: top-1 {topk_correct(scores, labels, 1).mean():.3f}"):
    del paths["confusion"]
  return paths
