"""Annotation lists as grain random-access sources of records (what to read, which label).

Formats (`data.format`):

  "videos"     MMAction2 / TSM video lists, one `path label` line per video, paths
               relative to `data.root`; `data.multi_label`: `path l1 l2 ...`.
  "frames"     frame-folder lists, `dir num_frames label` (TSM's and MMAction2's rawframe
               lists); the files are `dir/data.filename_tmpl.format(i + data.start_index)`.
  "kinetics_csv"  the Kinetics annotation CSV (`label,youtube_id,time_start,time_end,
               split[,is_cc]`), files `root/data.csv_path_tmpl`; class names index the
               label-name file, or the sorted names in the CSV when there is none.
  "tfds"       a TFDS-prepared data set, read with `tfds.data_source` (array_record).
  "demo"       the embedded generated data set (`data.name = "demo"`).

A record is a dict: `{"video": path}` or `{"frame_dir": path, "num_frames": n}` (or, for
TFDS, `{"video": bytes}` / `{"clip": uint8 [N, H, W, 3]}`), plus `"label"` (int32, or a
float32 multi-hot [K] for multi-label lists). `decode.read_clip` turns a record and a
sampler into frames. Sources hold only lists of strings, so they pickle cheaply into
grain worker processes.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Optional, Sequence

import numpy as np

FORMATS = ("videos", "frames", "kinetics_csv", "tfds")


class AnnotationError(ValueError):
  """A malformed annotation list: the message names the file, line and what was expected."""


def expand(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path)) if path else ""


def read_label_names(path: str) -> list[str]:
  """Class names, one per line (line i names label i); blank lines are ignored."""
  with open(expand(path)) as f:
    return [line.strip() for line in f if line.strip()]


def _lines(list_file: str) -> list[tuple[int, list[str]]]:
  with open(list_file) as f:
    return [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]


def _labels(tokens: Sequence[str], list_file: str, n: int) -> list[int]:
  try:
    return [int(t) for t in tokens]
  except ValueError as e:
    raise AnnotationError(f"{list_file}:{n}: labels must be integers, got {list(tokens)}.") from e


def parse_video_list(list_file: str, root: str = "", multi_label: bool = False
                     ) -> list[tuple[str, list[int]]]:
  """[(absolute path, labels)] of a `path label` (or `path l1 l2 ...`) list."""
  out = []
  for n, tokens in _lines(list_file):
    if len(tokens) < 2:
      raise AnnotationError(f"{list_file}:{n}: expected `path label`, got {' '.join(tokens)!r}.")
    if multi_label:
      path, labels = tokens[0], _labels(tokens[1:], list_file, n)
    else:
      # Paths may contain spaces; the label is the last field.
      path, labels = " ".join(tokens[:-1]), _labels(tokens[-1:], list_file, n)
    out.append((os.path.join(root, path), labels))
  return out


def parse_frame_list(list_file: str, root: str = "", multi_label: bool = False
                     ) -> list[tuple[str, int, list[int]]]:
  """[(absolute dir, num_frames, labels)] of a `dir num_frames label...` list."""
  out = []
  for n, tokens in _lines(list_file):
    if len(tokens) < 3 or (not multi_label and len(tokens) != 3):
      raise AnnotationError(f"{list_file}:{n}: expected `dir num_frames label`, got "
                            f"{' '.join(tokens)!r}.")
    try:
      num_frames = int(tokens[1])
    except ValueError as e:
      raise AnnotationError(f"{list_file}:{n}: num_frames must be an integer, got "
                            f"{tokens[1]!r}.") from e
    out.append((os.path.join(root, tokens[0]), num_frames, _labels(tokens[2:], list_file, n)))
  return out


def parse_kinetics_csv(csv_file: str, root: str = "",
                       label_names: Optional[Sequence[str]] = None,
                       path_tmpl: str = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
                       ) -> tuple[list[tuple[str, list[int]]], list[str]]:
  """[(absolute path, [label])] and the class names of a Kinetics annotation CSV.

  `path_tmpl` gets the row's fields (`label`, `youtube_id`, `time_start`, `time_end` as
  ints, `split`); e.g. "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4" for
  class folders.
  """
  with open(csv_file, newline="") as f:
    rows = list(csv.DictReader(f))
  need = {"label", "youtube_id", "time_start", "time_end"}
  if rows and not need <= set(rows[0]):
    raise AnnotationError(f"{csv_file}: expected the columns {sorted(need)}, got "
                          f"{sorted(rows[0])}.")
  names = list(label_names) if label_names else sorted({r["label"] for r in rows})
  index = {name: i for i, name in enumerate(names)}
  out = []
  for n, r in enumerate(rows, 2):
    if r["label"] not in index:
      raise AnnotationError(f"{csv_file}:{n}: class {r['label']!r} is not in the label names.")
    fields = dict(r, time_start=int(float(r["time_start"])), time_end=int(float(r["time_end"])))
    out.append((os.path.join(root, path_tmpl.format(**fields)), [index[r["label"]]]))
  return out, names


def _label_value(labels: list[int], multi_label: bool, num_classes: int) -> np.ndarray:
  if not multi_label:
    return np.int32(labels[0])
  hot = np.zeros((num_classes,), np.float32)
  hot[labels] = 1.0
  return hot


class ListSource:
  """Records of a video list, frame-folder list or Kinetics CSV (grain random access)."""

  def __init__(self, *, list_file: str, fmt: str = "videos", root: str = "",
               multi_label: bool = False, num_classes: int = 0,
               label_names: Optional[Sequence[str]] = None,
               csv_path_tmpl: str = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"):
    if fmt not in ("videos", "frames", "kinetics_csv"):
      raise ValueError(f"data.format must be one of {FORMATS}, got {fmt!r}.")
    list_file, root = expand(list_file), expand(root)
    self.list_file, self.fmt, self.multi_label = list_file, fmt, multi_label
    self.label_names = list(label_names) if label_names else None
    self._frames: Optional[np.ndarray] = None
    if fmt == "videos":
      entries = parse_video_list(list_file, root, multi_label)
      self._paths = [p for p, _ in entries]
      labels = [l for _, l in entries]
    elif fmt == "frames":
      entries3 = parse_frame_list(list_file, root, multi_label)
      self._paths = [p for p, _, _ in entries3]
      self._frames = np.array([n for _, n, _ in entries3], np.int64)
      labels = [l for _, _, l in entries3]
    else:
      entries, self.label_names = parse_kinetics_csv(list_file, root, self.label_names,
                                                     csv_path_tmpl)
      self._paths = [p for p, _ in entries]
      labels = [l for _, l in entries]
    if self.label_names and num_classes and len(self.label_names) != num_classes:
      raise AnnotationError(f"{len(self.label_names)} label names, but data.num_classes="
                            f"{num_classes}.")
    top = max((max(l) for l in labels), default=-1)
    if num_classes and top >= num_classes:
      raise AnnotationError(f"{list_file}: label {top} is out of range for "
                            f"data.num_classes={num_classes}.")
    if min((min(l) for l in labels), default=0) < 0:
      raise AnnotationError(f"{list_file}: negative labels.")
    self.num_classes = num_classes or top + 1
    self._labels = labels

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    label = _label_value(self._labels[index], self.multi_label, self.num_classes)
    if self._frames is not None:
      return {"frame_dir": self._paths[index], "num_frames": int(self._frames[index]),
              "label": label}
    return {"video": self._paths[index], "label": label}

  def __repr__(self) -> str:
    return f"ListSource({self.list_file!r}, format={self.fmt!r}, {len(self)} entries)"


class TfdsSource:
  """A TFDS-prepared video data set, read through `tfds.data_source` (array_record).

  The video feature may be decoded frames (`tfds.features.Video`, uint8 [N, H, W, 3])
  or the encoded file's bytes (a `tf.string` tensor); the label an integer class.
  """

  def __init__(self, *, name: str, split: str, data_dir: str = "", video_key: str = "video",
               label_key: str = "label"):
    self.name, self.split, self.data_dir = name, split, expand(data_dir) or None
    self.video_key, self.label_key = video_key, label_key
    self._source = None
    self._len = len(self._open())   # fails here, in the main process, when missing

  def _open(self):
    if self._source is None:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      self._source = tfds.data_source(self.name, split=self.split, data_dir=self.data_dir,
                                      try_gcs=False, download=False)
    return self._source

  def __getstate__(self) -> dict:
    # Each grain worker opens its own reader.
    return dict(self.__dict__, _source=None)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self._open()[int(index)]
    video = example[self.video_key]
    record = {"label": np.int32(example[self.label_key])}
    if isinstance(video, (bytes, np.bytes_)):
      record["video"] = bytes(video)
    else:
      record["clip"] = np.asarray(video, np.uint8)
    return record

  def __repr__(self) -> str:
    return f"TfdsSource({self.name!r}, split={self.split!r}, {len(self)} examples)"
