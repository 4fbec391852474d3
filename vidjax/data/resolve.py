"""Resolves a config's `data` section into the data a run reads, before anything slow.

`python -m vidjax.main --config configs/tsm_r50.py --workdir W --config.data.root=DIR`
trains on DIR when it holds:

  - annotation lists: `data.train_list` / `data.eval_list` (relative paths are taken
    under `data.root`, then the working directory), or, when those are not there, the
    one `*train*` and the one `*val*` / `*test*` list file in DIR (.txt or .csv);
  - else class folders per split: `DIR/train/<class>/<video>` and `DIR/val/<class>/<video>`
    (or `validation`, `test`); lists are written to `WORKDIR/data/`, with the class
    names (sorted folder names) in `label_names.txt`. Folders of images are frame folders.

The class count is the data's: the label-name file's length when there is one (a
`label_names.txt` beside the lists is used), else the largest label + 1 over both
lists; `data.num_classes` and `model.num_classes` are set from it. A data override is
never ignored: on the demo variants any of `data.root`, the lists, `data.format`,
`data.label_names` or `data.tfds_name` switches to that data, with a resize and crop
that stack videos of any size (`data.flip` stays as given: off on the demo variants); the
audio demo variants switch to audio feature lists (`data.format=audio_features`). Both
splits' files are looked up before training. With `data.sources` (vidjax/data/mixture.py),
every training source is read and checked here too, and its shares against the batch size.
"""

from __future__ import annotations

import glob
import os
from typing import Optional

from absl import logging
import ml_collections
import numpy as np

from vidjax.data import demo, demo_audio, mixture, prepare, sources

TRAIN_DIRS = ("train", "training")
EVAL_DIRS = ("val", "validation", "test", "eval")
_LIST_FIELDS = ("train_list", "eval_list")
_CHECKED_FILES = 256   # files looked up per split at start (evenly spaced over the list)
# The demo data set's formats and the real data's format each switches to: frames, or
# audio features (vidjax/data/demo_audio.py).
_DEMO_FORMATS = {"demo": "videos", "audio_demo": "audio_features"}


def find_list(root: str, value: str) -> str:
  """A list path: absolute / `~` as given; relative under `root`, else the cwd."""
  path = os.path.expanduser(value)
  if not path or os.path.isabs(path):
    return path
  under_root = os.path.join(os.path.expanduser(root), path)
  return under_root if os.path.exists(under_root) or not os.path.exists(path) else path


def _class_dirs(split_dir: str) -> list[str]:
  return sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))
                and not d.startswith("."))


def _entries(split_dir: str, names: list[str], root: str) -> tuple[list[str], str]:
  """The list lines of a split's class folders (paths relative to `root`) and their
  format: videos, else frame folders."""
  for fmt in ("videos", "frames"):
    lines, _, skipped = prepare.build_list(split_dir, names, frames=fmt == "frames",
                                           relative_to=root)
    if skipped:
      logging.warning("%s: left out %d names a list line cannot hold (first: %r).",
                      split_dir, len(skipped), skipped[0])
    if lines:
      return lines, fmt
  return [], "videos"


def _first_dir(root: str, names: tuple[str, ...]) -> Optional[str]:
  return next((os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))),
              None)


def _from_class_folders(d: ml_collections.ConfigDict, root: str, lists_dir: str) -> bool:
  """Writes lists for `root/train/<class>/...` and `root/val/<class>/...`; False if
  `root` is not laid out so."""
  train_dir, eval_dir = _first_dir(root, TRAIN_DIRS), _first_dir(root, EVAL_DIRS)
  if train_dir is None or eval_dir is None or not _class_dirs(train_dir):
    return False
  names = _class_dirs(train_dir)
  if d.label_names:
    names = sources.read_label_names(find_list(root, d.label_names))
  unknown = sorted(set(_class_dirs(eval_dir)) - set(names))
  if unknown:
    raise sources.AnnotationError(
        f"{eval_dir}: class folders {unknown} are not among the training classes "
        f"({train_dir}).")
  os.makedirs(lists_dir, exist_ok=True)
  kinds = set()
  for field, split_dir in (("train_list", train_dir), ("eval_list", eval_dir)):
    lines, kind = _entries(split_dir, names, root)
    if not lines:
      raise sources.AnnotationError(
          f"{split_dir}: no videos ({', '.join(prepare.VIDEO_EXTENSIONS)}) or frame folders "
          "under its class folders.")
    kinds.add(kind)
    path = os.path.join(lists_dir, f"{field}.txt")
    prepare.write_atomic(path, "\n".join(lines) + "\n")
    d[field] = path
  labels_path = os.path.join(lists_dir, "label_names.txt")
  prepare.write_atomic(labels_path, "\n".join(names) + "\n")
  d.label_names = labels_path
  d.format = kinds.pop()
  return True


def _from_list_files(d: ml_collections.ConfigDict, root: str) -> bool:
  """The one `*train*` and one `*val*`/`*test*` list in `root`; False if not exactly so."""
  files = [f for f in sorted(glob.glob(os.path.join(root, "*")))
           if os.path.isfile(f) and f.lower().endswith((".txt", ".csv"))
           and "label" not in os.path.basename(f).lower()]
  train = [f for f in files if "train" in os.path.basename(f).lower()]
  evals = [f for f in files if any(k in os.path.basename(f).lower() for k in ("val", "test"))]
  if len(train) != 1 or len(evals) != 1:
    return False
  d.train_list, d.eval_list = train[0], evals[0]
  return True


def _switch_from_demo(config: ml_collections.ConfigDict) -> list[str]:
  """The demo data set's fields a user set, which switch a demo variant to real data."""
  d = config.data
  given = [f for f in ("root", "train_list", "eval_list", "label_names", "tfds_name")
           if d.get(f)]
  if d.format not in _DEMO_FORMATS:
    given.append("format")
  if not given:
    return []
  d.name = os.path.basename(os.path.normpath(os.path.expanduser(d.root))) if d.root else "custom"
  if d.format in _DEMO_FORMATS:
    d.format = "tfds" if d.tfds_name else _DEMO_FORMATS[d.format]
  if d.format == "audio_features":
    return given   # feature rows: no resize or crop
  # The demo clips are generated at the model's size; real videos of any size need the
  # recipe's resize and crop (short side 8/7 of the crop, as 256 is to 224).
  short = int(round(d.image_size * 8 / 7))
  if not d.train_resize:
    d.train_resize = short
  if d.train_crop == "none":
    d.train_crop = "multi_scale"
  if not d.test_scale:
    d.test_scale = short
  # data.flip keeps the variant's value (off: it swaps the demo's left/right classes),
  # so a --config.data.flip given with the data is never overwritten.
  return given


def _num_classes(d: ml_collections.ConfigDict, root: str) -> tuple[int, Optional[list[str]]]:
  """The data's class count and names: the label-name file, else max label + 1."""
  if not d.label_names:
    beside = os.path.join(os.path.dirname(find_list(root, d.train_list)), "label_names.txt")
    if os.path.exists(beside):
      d.label_names = beside
  if d.label_names:
    path = find_list(root, d.label_names)
    if not os.path.exists(path):
      raise sources.AnnotationError(f"data.label_names: {path} does not exist.")
    names = sources.read_label_names(path)
    d.label_names = path
    return len(names), names
  if d.format == "kinetics_csv":
    _, names = sources.parse_kinetics_csv(d.train_list, root, None, d.csv_path_tmpl)
    return len(names), names
  top = -1
  for field in _LIST_FIELDS:
    parse = (sources.parse_frame_list if d.format in ("frames", "audio_features")
             else sources.parse_video_list)
    for entry in parse(d[field], root, d.multi_label):
      top = max(top, max(entry[-1], default=-1))
  return top + 1, None


def _check_files(source: sources.ListSource, split: str, d: ml_collections.ConfigDict) -> int:
  """Looks up evenly spaced files of `split`; refuses when none exists."""
  n = len(source)
  if n == 0:
    raise sources.AnnotationError(f"{source.list_file}: the {split} list is empty.")
  picks = np.unique(np.linspace(0, n - 1, min(n, _CHECKED_FILES)).astype(int))
  paths = [source[int(i)].get("video") or source[int(i)].get("frame_dir")
           or source[int(i)].get("audio_features") for i in picks]
  missing = [p for p in paths if not os.path.exists(p)]
  if len(missing) == len(paths):
    raise sources.AnnotationError(
        f"{source.list_file}: none of the {len(paths)} {split} files looked up exists "
        f"(first: {missing[0]}); is data.root ({d.root}) right?")
  if missing:
    logging.warning("%d of %d %s files looked up in %s are missing (first: %s); they will "
                    "be skipped.", len(missing), len(paths), split, source.list_file,
                    missing[0])
  return n


def resolve(config: ml_collections.ConfigDict, lists_dir: str) -> str:
  """Resolves `config.data` in place (lists, format, class count; `config.model.
  num_classes` follows); returns a one-line description of the data for the log.

  `lists_dir`: where lists made from class folders are written (the workdir's `data/`).
  """
  d = config.data
  if d.name == "demo":
    sounds = d.format == "audio_demo"
    switched = _switch_from_demo(config)
    if not switched:
      count = demo_audio.NUM_CLASSES if sounds else demo.NUM_CLASSES
      if d.get("num_classes") and d.num_classes != count:
        raise ValueError(f"config.data.num_classes={d.num_classes}: the demo data set has "
                         f"{count} classes (set data.root to train on your data).")
      return (f"{'audio ' if sounds else ''}demo data set (generated): {d.train_examples} "
              f"train and {d.eval_examples} eval {'sounds' if sounds else 'clips'}, "
              f"{count} classes")
    logging.info("data.%s given: the demo variant reads that data instead of the demo "
                 "data set.", ", data.".join(switched))
  if d.format == "tfds":
    return f"TFDS data set {d.tfds_name!r} ({d.train_split} / {d.eval_split})"
  root = os.path.expanduser(d.root)
  for field in _LIST_FIELDS:
    if d[field]:
      d[field] = find_list(root, d[field])
  lists_found = all(d[f] and os.path.exists(d[f]) for f in _LIST_FIELDS)
  if not lists_found and root and os.path.isdir(root):
    lists_found = _from_list_files(d, root) or _from_class_folders(d, root, lists_dir)
  if not lists_found:
    return ""   # the pipeline's missing-data message says what is missing and how to fix it
  if os.path.abspath(d.train_list) == os.path.abspath(d.eval_list):
    logging.warning("data.eval_list is the training list (%s): eval accuracy is on the "
                    "training videos.", d.train_list)
  count, names = _num_classes(d, root)
  if count != d.num_classes or count != config.model.num_classes:
    logging.warning("The data has %d classes: data.num_classes and model.num_classes are "
                    "set to it (were %d and %d).", count, d.num_classes,
                    config.model.num_classes)
  d.num_classes = config.model.num_classes = count
  counts = {}
  for split, field in zip(("train", "eval"), _LIST_FIELDS):
    source = sources.ListSource(list_file=d[field], fmt=d.format, root=d.root,
                                multi_label=d.multi_label, num_classes=count,
                                label_names=names, csv_path_tmpl=d.csv_path_tmpl)
    counts[split] = _check_files(source, split, d)
  shown = "" if not names else " (" + ", ".join(names[:5]) + (", ..." if count > 5 else "") + ")"
  described = (f"{d.format} under {root or '.'}: {counts['train']} train ({d.train_list}) and "
               f"{counts['eval']} eval ({d.eval_list}), {count} classes{shown}")
  if d.get("sources"):   # every training source is read and checked now, not mid-setup
    described += "; " + mixture.check(config)
  return described
