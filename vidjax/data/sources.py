"""Annotation lists as grain random-access sources of records (what to read, which label).

Formats (`data.format`):

  "videos"     MMAction2 / TSM video lists, one `path label` line per video, paths
               relative to `data.root` (they may contain spaces: the label is the last
               field); `data.multi_label`: `path l1 l2 ...` (the path is the first field,
               so it cannot contain spaces).
  "frames"     frame-folder lists, `dir num_frames label` (TSM's and MMAction2's rawframe
               lists; the last two fields are num_frames and the label, so `dir` may
               contain spaces); multi-label: `dir num_frames l1 l2 ...` (`dir` is the
               first field); the files are `dir/data.filename_tmpl.format(i +
               data.start_index)`.
  "audio_features"  MMAction2's audio feature lists (AudioFeatureDataset), one
               `path num_frames label` line per `.npy` feature file
               (scripts/extract_audio_features.py), num_frames being its video's frame
               count; parsed as frame lists.
  "kinetics_csv"  the Kinetics annotation CSV (`label,youtube_id,time_start,time_end,
               split[,is_cc]`), files `root/data.csv_path_tmpl`; class names index the
               label-name file, or the sorted names in the CSV when there is none.
  "tfds"       a TFDS-prepared data set, read with `tfds.data_source` (array_record).
  "demo"       the embedded generated data set (`data.name = "demo"`).

Lists are UTF-8 text, one entry per line; blank lines are skipped. Labels are integers
0 <= label < data.num_classes. A malformed list raises AnnotationError (a ValueError)
`path:LINE: what is wrong; what was expected` when the source is made, before training.

A record is a dict: `{"video": path}` or `{"frame_dir": path, "num_frames": n}` (or, for
TFDS, `{"video": bytes}` / `{"clip": uint8 [N, H, W, 3]}`; for audio features,
`{"audio_features": path, "num_frames": n}`), plus `"label"` (int32, or a
float32 multi-hot [K] for multi-label lists). `decode.read_clip` turns a record and a
sampler into frames. Sources hold only lists of strings, so they pickle cheaply into
grain worker processes.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from typing import Any, Optional, Sequence

import numpy as np

FORMATS = ("videos", "frames", "kinetics_csv", "tfds", "audio_features")


class AnnotationError(ValueError):
  """A malformed annotation list: the message names the file, line and what was expected."""


def expand(path: str) -> str:
  return os.path.abspath(os.path.expanduser(path)) if path else ""


_UINT = re.compile(r"[0-9]+")        # ASCII only: int() would also take "١" and "1_0"
_NEGATIVE = re.compile(r"-[0-9]+")
_MAX_INT = 2**31 - 1                 # labels and frame counts become int32 downstream


def read_lines(path: str, what: str = "annotation list") -> list[str]:
  """The lines of a UTF-8 text file, line i + 1 at index i (blank ones included).

  Lines end at a newline (a carriage return before it and a UTF-8 BOM at the start are
  dropped), the numbering that editors and `grep -n` use; bytes that are not UTF-8, a NUL
  or a carriage return inside a line raise an AnnotationError `path:LINE: ...`.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise AnnotationError(f"{path}: cannot read the {what}: {e.strerror or e}.") from e
  if data.startswith(codecs.BOM_UTF8):
    data = data[len(codecs.BOM_UTF8):]
  raw = data.split(b"\n")
  if raw[-1] == b"":  # the piece after the final newline is not a line
    raw.pop()
  lines = []
  for n, line in enumerate(raw, 1):
    if line.endswith(b"\r"):
      line = line[:-1]
    try:
      text = line.decode("utf-8")
    except UnicodeDecodeError as e:
      raise AnnotationError(
          f"{path}:{n}: bytes {line[e.start:e.end]!r} at byte {e.start + 1} of the line are "
          f"not UTF-8; expected a UTF-8 text {what}.") from None
    if "\r" in text or "\0" in text:
      char = "a carriage return (\\r)" if "\r" in text else "a NUL byte"
      raise AnnotationError(f"{path}:{n}: {char} inside the line; expected a text {what} "
                            "with lines ending in \\n or \\r\\n.")
    lines.append(text)
  return lines


def listable(path: str) -> bool:
  """True when `path` reads back from a list line as the same string.

  It must be UTF-8 (a non-UTF-8 file name arrives with surrogate escapes), hold no line
  break and no leading or trailing whitespace (the readers strip fields), and not start
  with a byte-order mark.
  """
  try:
    path.encode("utf-8")
  except UnicodeEncodeError:
    return False
  return (path == path.strip() and "\n" not in path and "\r" not in path
          and "\0" not in path and not path.startswith("\ufeff"))


def _entries(path: str, what: str, expected: str) -> list[tuple[int, str]]:
  """(line number, text) of the non-blank lines; an empty file is an error."""
  out = [(n, text) for n, text in enumerate(read_lines(path, what), 1) if text.strip()]
  if not out:
    raise AnnotationError(f"{path}:1: empty {what}; expected one {expected} line per entry.")
  return out


def read_label_names(path: str, num_classes: int = 0) -> list[str]:
  """Class names, one per line: label i is the i-th non-blank line (names are stripped).
  Two more layouts, by extension, as the CLIP video repositories ship them: `.csv` with an
  `id,name` header (TC-CLIP's and ViFi-CLIP's `labels/*.csv`) and `.json` mapping each
  id to its text (FROSTER's LLM descriptions, `{"0": "Name: description", ...}`); ids
  must be 0..N-1, each once.

  A repeated name, an empty file or (with `num_classes` > 0) another count than
  `num_classes` raise an AnnotationError naming the file.
  """
  path = expand(path)
  ext = os.path.splitext(path)[1].lower()
  if ext in (".csv", ".json"):
    entries = _labels_by_id(path, ext)
  else:
    entries = [(f"{path}:{n}", f"line {n}", text.strip()) for n, text in
               _entries(path, "label-name file", "`class name`")]
  names, seen = [], {}
  for where, ref, name in entries:
    if name in seen:
      raise AnnotationError(f"{where}: class name {name!r} repeats {seen[name]}; "
                            "expected each class once (line i names label i).")
    seen[name] = ref
    names.append(name)
  if num_classes and len(names) != num_classes:
    raise AnnotationError(f"{path}: {len(names)} class names, but data.num_classes="
                          f"{num_classes}; expected one name per class (line i names label i).")
  return names


def _labels_by_id(path: str, ext: str) -> list[tuple[str, str, str]]:
  """(where, "line N" or "id N", name) in id order of an `id,name` CSV or an {id: text}
  JSON file."""
  text = "\n".join(read_lines(path, "label-name file"))
  by_id: dict[int, tuple[str, str, str]] = {}
  if ext == ".csv":
    rows = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), 1) if r]
    header = [h.strip().lower() for h in rows[0][1]] if rows else []
    if "id" not in header or "name" not in header:
      raise AnnotationError(f"{path}:1: expected an `id,name` header line, got "
                            f"{','.join(rows[0][1]) if rows else 'an empty file'!r}.")
    i, j = header.index("id"), header.index("name")
    for n, row in rows[1:]:
      if len(row) != len(header):
        raise AnnotationError(f"{path}:{n}: {len(row)} fields; expected {len(header)} "
                              f"({','.join(header)}).")
      key, name = _label(row[i].strip(), f"{path}:{n}", 0), row[j].strip()
      if key in by_id or not name:
        raise AnnotationError(f"{path}:{n}: id {key} repeats or has no name; expected "
                              "each id 0..N-1 once with its class name.")
      by_id[key] = (f"{path}:{n}", f"line {n}", name)
  else:
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise AnnotationError(f"{path}:{e.lineno}: not JSON ({e.msg}); expected "
                            '{"0": "class text", "1": ...}.') from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip()
                                             for v in data.values()):
      raise AnnotationError(f'{path}: expected an object {{"0": "class text", ...}} mapping '
                            "each id to a non-empty string.")
    for k, v in data.items():
      key = _label(k.strip(), f"{path}: id {k!r}", 0)
      if key in by_id:
        raise AnnotationError(f"{path}: id {k!r} repeats id {key}; expected each id "
                              "0..N-1 once.")
      by_id[key] = (f"{path}: id {key}", f"id {key}", v.strip())
  if sorted(by_id) != list(range(len(by_id))) or not by_id:
    missing = sorted(set(range(max(by_id, default=-1) + 1)) - set(by_id))
    raise AnnotationError(f"{path}: ids must be 0..N-1, each once; "
                          + (f"missing {missing[:5]}." if missing else "none found."))
  return [by_id[k] for k in range(len(by_id))]


def _label(token: str, where: str, num_classes: int) -> int:
  """An integer label 0 <= label < num_classes (any size when num_classes is 0)."""
  allowed = f"0..{num_classes - 1}" if num_classes else "an integer >= 0"
  if _NEGATIVE.fullmatch(token):
    raise AnnotationError(f"{where}: label {token} is negative; expected {allowed}.")
  if not _UINT.fullmatch(token):
    raise AnnotationError(f"{where}: labels must be integers, got {token!r}; expected "
                          f"{allowed}.")
  label = int(token)
  if num_classes and label >= num_classes:
    raise AnnotationError(f"{where}: label {label} is out of range for data.num_classes="
                          f"{num_classes}; expected {allowed}.")
  if label > _MAX_INT:
    raise AnnotationError(f"{where}: label {label} is too large; expected {allowed}.")
  return label


def _num_frames(token: str, where: str) -> int:
  if not _UINT.fullmatch(token) or not 0 < int(token) <= _MAX_INT:
    raise AnnotationError(f"{where}: num_frames must be a positive integer, got {token!r}.")
  return int(token)


def parse_video_list(list_file: str, root: str = "", multi_label: bool = False,
                     num_classes: int = 0) -> list[tuple[str, list[int]]]:
  """[(root/path, labels)] of a `path label` (or multi-label `path l1 l2 ...`) list.

  Single-label paths may contain spaces (the label is the last field); multi-label paths
  are the first field, so they cannot. `num_classes` > 0 bounds the labels.
  """
  expected = "`path l1 l2 ...`" if multi_label else "`path label`"
  out = []
  for n, text in _entries(list_file, "annotation list", expected):
    where = f"{list_file}:{n}"
    fields = text.split() if multi_label else text.rsplit(None, 1)
    if len(fields) < 2:
      raise AnnotationError(f"{where}: expected {expected}, got {text.strip()!r}.")
    labels = [_label(t, where, num_classes) for t in fields[1:]]
    out.append((os.path.join(root, fields[0].strip()), labels))
  return out


def parse_frame_list(list_file: str, root: str = "", multi_label: bool = False,
                     num_classes: int = 0) -> list[tuple[str, int, list[int]]]:
  """[(root/dir, num_frames, labels)] of a `dir num_frames label` list.

  Single-label lines: the last two fields are num_frames and the label, so directory
  names may contain spaces. Multi-label lines (`dir num_frames l1 l2 ...`): the first
  field is the directory and the second num_frames, so directory names cannot.
  """
  expected = "`dir num_frames l1 l2 ...`" if multi_label else "`dir num_frames label`"
  out = []
  for n, text in _entries(list_file, "frame list", expected):
    where = f"{list_file}:{n}"
    fields = text.split() if multi_label else text.rsplit(None, 2)
    if len(fields) < 3:
      raise AnnotationError(f"{where}: expected {expected}, got {text.strip()!r}.")
    num_frames = _num_frames(fields[1], where)
    labels = [_label(t, where, num_classes) for t in fields[2:]]
    out.append((os.path.join(root, fields[0].strip()), num_frames, labels))
  return out


_CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def parse_kinetics_csv(csv_file: str, root: str = "",
                       label_names: Optional[Sequence[str]] = None,
                       path_tmpl: str = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
                       num_classes: int = 0
                       ) -> tuple[list[tuple[str, list[int]]], list[str]]:
  """[(root/path, [label])] and the class names of a Kinetics annotation CSV.

  `path_tmpl` gets the row's fields (`label`, `youtube_id`, `time_start`, `time_end` as
  ints, `split`); e.g. "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4" for
  class folders. Labels index `label_names`, or this CSV's sorted class names when there
  are none.
  """
  lines = read_lines(csv_file, "Kinetics CSV")
  reader = csv.reader(line + "\n" for line in lines)
  rows = []   # (line number where the row starts, fields); quoted fields span lines
  try:
    start = 1
    for fields in reader:
      if any(f.strip() for f in fields):
        rows.append((start, fields))
      start = reader.line_num + 1
  except csv.Error as e:
    n = min(max(reader.line_num, 1), max(len(lines), 1))
    raise AnnotationError(f"{csv_file}:{n}: {e}; expected comma-separated fields.") from None
  if not rows:
    raise AnnotationError(f"{csv_file}:1: empty Kinetics CSV; expected a header "
                          f"({','.join(_CSV_COLUMNS)},...) and one row per video.")
  header_line, header = rows[0]
  header = [h.strip() for h in header]
  missing = [c for c in _CSV_COLUMNS if c not in header]
  if missing:
    raise AnnotationError(f"{csv_file}:{header_line}: expected a header with the columns "
                          f"{','.join(_CSV_COLUMNS)}, got {','.join(header)!r}.")
  if len(rows) == 1:
    raise AnnotationError(f"{csv_file}:{header_line}: no rows after the header; expected "
                          "one row per video.")
  records = []
  for n, fields in rows[1:]:
    where = f"{csv_file}:{n}"
    if len(fields) != len(header):
      raise AnnotationError(f"{where}: expected {len(header)} fields ({','.join(header)}), "
                            f"got {len(fields)}.")
    row = dict(zip(header, fields))
    row["label"] = row["label"].strip()
    for key in ("time_start", "time_end"):
      try:
        row[key] = int(float(row[key]))
      except (ValueError, OverflowError):
        raise AnnotationError(f"{where}: {key} must be a number of seconds, got "
                              f"{row[key]!r}.") from None
    records.append((where, row))
  names = list(label_names) if label_names else sorted({r["label"] for _, r in records})
  if num_classes and len(names) != num_classes:
    origin = "" if label_names else " (the sorted classes of this CSV; data.label_names sets them)"
    raise AnnotationError(f"{csv_file}: {len(names)} label names, but data.num_classes="
                          f"{num_classes}{origin}.")
  index = {name: i for i, name in enumerate(names)}
  out = []
  for where, row in records:
    if row["label"] not in index:
      raise AnnotationError(f"{where}: class {row['label']!r} is not in the label names; "
                            "expected one of the data.label_names file's lines.")
    try:
      path = path_tmpl.format(**row)
    except (KeyError, IndexError, ValueError) as e:
      raise AnnotationError(f"{where}: data.csv_path_tmpl {path_tmpl!r} cannot be filled "
                            f"from this row ({type(e).__name__}: {e}); its fields are "
                            f"{sorted(row)}.") from None
    out.append((os.path.join(root, path), [index[row["label"]]]))
  return out, names


def _label_value(labels: list[int], multi_label: bool, num_classes: int) -> np.ndarray:
  if not multi_label:
    return np.int32(labels[0])
  hot = np.zeros((num_classes,), np.float32)
  hot[labels] = 1.0
  return hot


class ListSource:
  """Records of a video list, frame-folder list, audio feature list or Kinetics CSV (grain
  random access).

  The whole list is read and checked here, so a bad line (or a label outside
  `num_classes`) fails before training starts.
  """

  def __init__(self, *, list_file: str, fmt: str = "videos", root: str = "",
               multi_label: bool = False, num_classes: int = 0,
               label_names: Optional[Sequence[str]] = None,
               csv_path_tmpl: str = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"):
    if fmt not in ("videos", "frames", "kinetics_csv", "audio_features"):
      raise ValueError(f"data.format must be one of {FORMATS}, got {fmt!r}.")
    list_file, root = expand(list_file), expand(root)
    self.list_file, self.fmt, self.multi_label = list_file, fmt, multi_label
    self.label_names = list(label_names) if label_names else None
    if self.label_names and num_classes and len(self.label_names) != num_classes:
      raise AnnotationError(f"{len(self.label_names)} label names, but data.num_classes="
                            f"{num_classes}.")
    self._frames: Optional[np.ndarray] = None
    if fmt == "videos":
      entries = parse_video_list(list_file, root, multi_label, num_classes)
      self._paths = [p for p, _ in entries]
      labels = [l for _, l in entries]
    elif fmt in ("frames", "audio_features"):
      entries3 = parse_frame_list(list_file, root, multi_label, num_classes)
      self._paths = [p for p, _, _ in entries3]
      self._frames = np.array([n for _, n, _ in entries3], np.int64)
      labels = [l for _, _, l in entries3]
    else:
      entries, self.label_names = parse_kinetics_csv(list_file, root, self.label_names,
                                                     csv_path_tmpl, num_classes)
      self._paths = [p for p, _ in entries]
      labels = [l for _, l in entries]
    self.num_classes = num_classes or max(max(l) for l in labels) + 1
    self._labels = labels

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    label = _label_value(self._labels[index], self.multi_label, self.num_classes)
    if self._frames is not None:
      key = "audio_features" if self.fmt == "audio_features" else "frame_dir"
      return {key: self._paths[index], "num_frames": int(self._frames[index]),
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
