"""Training data from several sources at once (OmniSource's joint training), each with a
fixed share of every batch.

`data.sources` is a tuple of dicts, one per source; a batch's "source" row ids index it,
and each source's rows are spread evenly over the batch (vidjax/data/pipeline.py
`interleaved_order`), so a device's rows or a microbatch hold the mix too. Fields:

  name       names the source in messages and in the saved iterator state ("source{i}").
  kind       "videos": an annotation list as data.format reads it (field `format`: videos
             | frames; frame folders use data.filename_tmpl and data.start_index);
             "images": an image folder (class sub-folders, images at any depth
             below them) or an image list (`path label` lines); an image becomes a clip of
             data.num_frames copies of it, then takes the same transforms as the videos.
  root       where the source's files lie; relative: under data.root if there, else the
             working directory. A videos source with neither root nor list is the data
             set's own training list (data.root, data.train_list, data.format).
  list       the annotation list (relative: under root). Images: "" reads class folders.
  share      the source's clips in every batch: an int count, or a float ratio of
             config.batch_size whose product with it is whole; the shares add up to the
             batch size. Each process takes share / process_count of its batch.
  label_map  source label -> target class: a dict, or a file (relative: under data.root
             if there; a JSON object, or text lines `source_label target`). Source labels
             are written as in the source: list integers, class folder names; a target is
             a class index or a name in data.label_names. Every label of the source must
             be mapped. Without a map, list labels are target labels and a class folder is
             a data.label_names name or an integer label (`007`).

Each source is shuffled from its own seed, and an unreadable file is replaced by the next
one of the same source, so the shares hold exactly. An epoch is one pass over the first
source at its share per step (MMAction2's OmniSource runner: the main data loader sets the
epoch). Evaluation reads data.eval_list only. Every problem is one `SourceError` line that
names `data.sources[i]` and what is wrong; vidjax/data/resolve.py reads every source
before training starts.

    sources=({"name": "kinetics400", "kind": "videos", "share": 0.5},   # data.train_list
             {"name": "web", "kind": "images", "root": "~/data/web", "share": 0.5,
              "label_map": "~/data/web/to_k400.json"})
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional, Sequence

import ml_collections
import numpy as np

from vidjax.data import prepare, sources

KINDS = ("videos", "images")
LIST_FORMATS = ("videos", "frames")
_FIELDS = ("name", "kind", "root", "list", "format", "share", "label_map")
_FRACTION_TOLERANCE = 1e-6


class SourceError(ValueError):
  """A source of `data.sources` that cannot be read as configured (one line)."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """One entry of `data.sources`, checked."""
  index: int
  name: str
  kind: str
  root: str = ""
  list: str = ""
  format: str = ""
  share: Any = 0
  label_map: Any = None

  @property
  def where(self) -> str:
    return f"data.sources[{self.index}] ({self.name!r})"


def specs(data_config: ml_collections.ConfigDict) -> list[Spec]:
  """The checked entries of `data.sources` (empty: one source, the classic pipeline)."""
  out, names = [], set()
  for i, entry in enumerate(data_config.get("sources", ()) or ()):
    if not isinstance(entry, Mapping):
      raise SourceError(f"data.sources[{i}] is a {type(entry).__name__}; expected a dict "
                        f"with the fields {', '.join(_FIELDS)}.")
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
      raise SourceError(f"data.sources[{i}] has unknown fields {unknown}; expected "
                        f"{', '.join(_FIELDS)}.")
    spec = Spec(index=i, name=str(entry.get("name") or f"source{i}"),
                kind=entry.get("kind", ""), root=str(entry.get("root") or ""),
                list=str(entry.get("list") or ""), format=str(entry.get("format") or ""),
                share=entry.get("share", 0), label_map=entry.get("label_map") or None)
    if spec.kind not in KINDS:
      raise SourceError(f"{spec.where}: kind {spec.kind!r}; expected one of {KINDS}.")
    if spec.format and (spec.kind != "videos" or spec.format not in LIST_FORMATS):
      raise SourceError(f"{spec.where}: format {spec.format!r}; expected one of "
                        f"{LIST_FORMATS} (videos sources only).")
    if spec.name in names:
      raise SourceError(f"{spec.where}: the name {spec.name!r} is taken by an earlier "
                        "source; expected one name per source.")
    names.add(spec.name)
    out.append(spec)
  if out and data_config.get("multi_label"):
    raise SourceError("data.sources: multi-label lists (data.multi_label) cannot be mixed; "
                      "expected single-label sources.")
  return out


def batch_shares(specs_: Sequence[Spec], batch_size: int) -> list[int]:
  """Clips per batch of each source: counts as given, ratios times `batch_size`."""
  counts = []
  for spec in specs_:
    share = spec.share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or share <= 0:
      raise SourceError(f"{spec.where}: share {share!r}; expected a positive int (clips per "
                        "batch) or a float ratio of config.batch_size.")
    if isinstance(share, float):
      count = share * batch_size
      if share > 1 or abs(count - round(count)) > _FRACTION_TOLERANCE * max(1, batch_size) \
          or round(count) < 1:
        raise SourceError(
            f"{spec.where}: share {share} of config.batch_size={batch_size} is "
            f"{count:g} clips; expected a ratio in (0, 1] whose product with the batch "
            "size is a whole number of clips.")
      share = int(round(count))
    counts.append(int(share))
  if specs_ and sum(counts) != batch_size:
    listed = " + ".join(f"{n} ({s.name})" for n, s in zip(counts, specs_))
    raise SourceError(f"data.sources: the shares make {listed} = {sum(counts)} clips per "
                      f"batch, but config.batch_size={batch_size}; expected shares that add "
                      "up to the batch size.")
  return counts


def local_shares(counts: Sequence[int], specs_: Sequence[Spec], processes: int) -> list[int]:
  """Each process's clips of every source per batch."""
  for n, spec in zip(counts, specs_):
    if n % processes:
      raise SourceError(f"{spec.where}: share {n} clips per batch does not split over the "
                        f"{processes} processes; expected a multiple of {processes}.")
  return [n // processes for n in counts]


def source_seed(seed: int, index: int) -> int:
  """The shuffle seed of source `index`: the run's seed for the first, others apart."""
  if index == 0:
    return seed
  return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])


# ---------------------------------------------------------------------------- label maps
def _read_label_map(value: Any, where: str, data_root: str) -> tuple[dict[str, Any], str]:
  """({source label as written: target}, how messages name the map)."""
  if isinstance(value, Mapping):
    return {str(k).strip(): v for k, v in value.items()}, "the label_map dict"
  if not isinstance(value, str):
    raise SourceError(f"{where}: label_map is a {type(value).__name__}; expected a dict or "
                      "a file (JSON object, or `source_label target` lines).")
  from vidjax.data import resolve  # pylint: disable=g-import-not-at-top
  path = sources.expand(resolve.find_list(data_root, value))
  if not os.path.isfile(path):
    raise SourceError(f"{where}: label map {path} does not exist; expected a JSON object or "
                      "`source_label target` lines.")
  if path.lower().endswith(".json"):
    try:
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
    except (OSError, ValueError) as e:
      raise SourceError(f"{where}: label map {path} is not readable JSON ({e}).") from None
    if not isinstance(data, dict):
      raise SourceError(f"{where}: label map {path} holds a JSON {type(data).__name__}; "
                        "expected an object {source_label: target}.")
    return {str(k).strip(): v for k, v in data.items()}, f"the label map {path}"
  out = {}
  for n, line in enumerate(sources.read_lines(path, "label map"), 1):
    if not line.strip():
      continue
    fields = line.rsplit(None, 1)
    if len(fields) != 2:
      raise SourceError(f"{path}:{n}: expected `source_label target`, got {line.strip()!r}.")
    key = fields[0].strip()
    if key in out:
      raise SourceError(f"{path}:{n}: source label {key!r} is mapped twice.")
    out[key] = fields[1]
  if not out:
    raise SourceError(f"{path}: empty label map; expected `source_label target` lines.")
  return out, f"the label map {path}"


class _Targets:
  """Target class indices from integers or data.label_names names."""

  def __init__(self, num_classes: int, names: Optional[Sequence[str]]):
    self.num_classes = num_classes
    self.index = {name: i for i, name in enumerate(names or ())}

  def expected(self) -> str:
    named = " or a name in data.label_names" if self.index else (
        " (class names need data.label_names)")
    return f"a class index 0..{self.num_classes - 1}{named}"

  def find(self, value: Any) -> Optional[int]:
    """The class `value` names, or None."""
    if isinstance(value, str) and value.strip() in self.index:
      return self.index[value.strip()]
    if isinstance(value, (bool, float)):
      return None
    try:
      target = int(value)
    except (TypeError, ValueError):
      return None
    return target if 0 <= target < self.num_classes else None


def _map_labels(raw: Sequence[str], spec: Spec, targets: _Targets, files: Sequence[str],
                data_root: str) -> np.ndarray:
  """int32 [N] target labels of the source labels `raw` (as written in the source)."""
  if spec.label_map is None:
    resolved = {label: targets.find(label) for label in set(raw)}
    bad = sorted(label for label, t in resolved.items() if t is None)
    if bad:
      first = files[raw.index(bad[0])]
      raise SourceError(f"{spec.where}: label {bad[0]!r} (of {first}) names no target "
                        f"class; expected {targets.expected()}, or a label_map onto the "
                        f"target classes ({len(bad)} such labels: {bad[:8]}).")
  else:
    table, described = _read_label_map(spec.label_map, spec.where, data_root)
    resolved = {}
    for key, value in table.items():
      resolved[key] = targets.find(value)
      if resolved[key] is None:
        raise SourceError(f"{spec.where}: {described} maps {key!r} to {value!r}, which is "
                          f"not a target class; expected {targets.expected()}.")
    missing = sorted({label for label in raw if label not in resolved})
    if missing:
      first = files[raw.index(missing[0])]
      raise SourceError(f"{spec.where}: label {missing[0]!r} (of {first}) is not in "
                        f"{described}; expected a target for every label of the source "
                        f"({len(missing)} unmapped: {missing[:8]}).")
  return np.array([resolved[label] for label in raw], np.int32)


# ---------------------------------------------------------------------------- sources
class Relabelled:
  """Records of a list source with the label of each entry replaced (grain random access)."""

  def __init__(self, source: Any, labels: np.ndarray):
    self.source, self.labels = source, labels

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = dict(self.source[int(index)])
    record["label"] = np.int32(self.labels[int(index)])
    return record

  def __repr__(self) -> str:
    return f"Relabelled({self.source!r})"


class ImageSource:
  """Records {"image": path, "label": int32} of an image list or image class folders."""

  def __init__(self, paths: Sequence[str], labels: np.ndarray, origin: str):
    self.paths, self.labels, self.origin = list(paths), labels, origin

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    return {"image": self.paths[index], "label": np.int32(self.labels[index])}

  def __repr__(self) -> str:
    return f"ImageSource({self.origin!r}, {len(self)} images)"


def _root(spec: Spec, data_root: str) -> str:
  from vidjax.data import resolve  # pylint: disable=g-import-not-at-top
  return sources.expand(resolve.find_list(data_root, spec.root)) if spec.root else \
      sources.expand(data_root)


def _list_file(spec: Spec, root: str, value: str, what: str) -> str:
  from vidjax.data import resolve  # pylint: disable=g-import-not-at-top
  path = resolve.find_list(root, value)
  if not os.path.isfile(path):
    raise SourceError(f"{spec.where}: {what} {path} does not exist; expected it there "
                      "(the source's root and list fields say where).")
  return path


def _image_folders(spec: Spec, root: str) -> tuple[list[str], list[str]]:
  """(image paths, class folder names) below the class folders of `root`."""
  if not os.path.isdir(root):
    raise SourceError(f"{spec.where}: image folder {root} does not exist; expected class "
                      "sub-folders of images (or the source's list: an image list).")
  classes = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
  if not classes:
    raise SourceError(f"{spec.where}: image folder {root} has no class sub-folders; "
                      "expected ROOT/<class>/<image>.")
  paths, labels = [], []
  for name in classes:
    for dirpath, dirnames, files in os.walk(os.path.join(root, name)):
      dirnames.sort()
      for f in sorted(files):
        if f.lower().endswith(prepare.IMAGE_EXTENSIONS):
          paths.append(os.path.join(dirpath, f))
          labels.append(name)
  if not paths:
    raise SourceError(f"{spec.where}: no images ({', '.join(prepare.IMAGE_EXTENSIONS)}) in "
                      f"the class folders of {root}.")
  return paths, labels


def _video_source(spec: Spec, d: ml_collections.ConfigDict, root: str, bound: int,
                  names: Optional[Sequence[str]]) -> tuple[Any, list[str], list[str]]:
  """(ListSource, its labels as written, its files) of a videos source."""
  own = not spec.list and not spec.root   # the data set's own training list
  fmt = spec.format or (d.get("format", "videos") if own else "videos")
  if own:
    if fmt not in ("videos", "frames", "kinetics_csv"):
      raise SourceError(f"{spec.where}: the data set's own list needs data.format videos, "
                        f"frames or kinetics_csv, not {fmt!r}; set the source's list.")
    if not d.get("train_list"):
      raise SourceError(f"{spec.where}: no list and data.train_list is empty; expected the "
                        "source's list or the data set's training list.")
    list_file = _list_file(spec, root, d.train_list, "training list (data.train_list)")
  elif not spec.list:
    raise SourceError(f"{spec.where}: a videos source with a root needs its list (the "
                      "annotation list under root).")
  else:
    list_file = _list_file(spec, root, spec.list, "annotation list")
  csv = {"csv_path_tmpl": d.csv_path_tmpl} if d.get("csv_path_tmpl") else {}
  try:
    listed = sources.ListSource(list_file=list_file, fmt=fmt, root=root, num_classes=bound,
                                label_names=names if own else None, **csv)
  except sources.AnnotationError as e:
    raise SourceError(f"{spec.where}: {e}") from None
  if spec.label_map is None:   # labels checked against the classes by ListSource
    return listed, [], []
  records = [listed[i] for i in range(len(listed))]
  return (listed, [str(int(r["label"])) for r in records],
          [str(r.get("video", r.get("frame_dir"))) for r in records])


def build(spec: Spec, data_config: ml_collections.ConfigDict,
          label_names: Optional[Sequence[str]] = None) -> Any:
  """The random-access source of `spec`, its labels mapped onto the target classes.

  Records: a list source's (`{"video": ...}` / `{"frame_dir": ...}`) or
  `{"image": path}`, each with an int32 "label" in 0..data.num_classes - 1.
  """
  d = data_config
  data_root = d.get("root", "") or ""
  targets = _Targets(int(d.num_classes), label_names)
  # With a map, source labels need not be target classes.
  bound = 0 if spec.label_map is not None else int(d.num_classes)
  root = _root(spec, data_root)
  if spec.kind == "videos":
    listed, raw, files = _video_source(spec, d, root, bound, label_names)
    if spec.label_map is None:
      return listed
    return Relabelled(listed, _map_labels(raw, spec, targets, files, data_root))
  if spec.list:
    origin = _list_file(spec, root, spec.list, "image list")
    try:
      entries = sources.parse_video_list(origin, root, num_classes=bound)
    except sources.AnnotationError as e:
      raise SourceError(f"{spec.where}: {e}") from None
    paths, raw = [p for p, _ in entries], [str(l[0]) for _, l in entries]
  else:
    origin = root
    paths, raw = _image_folders(spec, root)
  return ImageSource(paths, _map_labels(raw, spec, targets, paths, data_root), origin)


def label_names(data_config: ml_collections.ConfigDict) -> Optional[list[str]]:
  """data.label_names' class names, or None."""
  from vidjax.data import resolve  # pylint: disable=g-import-not-at-top
  if not data_config.get("label_names"):
    return None
  path = resolve.find_list(data_config.get("root", "") or "", data_config.label_names)
  if not os.path.exists(path):
    raise SourceError(f"data.label_names: {path} does not exist.")
  return sources.read_label_names(path)


def build_all(data_config: ml_collections.ConfigDict) -> list[tuple[Spec, Any]]:
  """Every source of `data.sources`, checked: (spec, random-access source)."""
  names = label_names(data_config)
  return [(spec, build(spec, data_config, names)) for spec in specs(data_config)]


def check(config: ml_collections.ConfigDict) -> str:
  """Reads every source (before training) and checks the shares against the batch size;
  returns a one-line description for the log."""
  built = build_all(config.data)
  counts = batch_shares([s for s, _ in built], int(config.batch_size))
  parts = []
  for (spec, source), n in zip(built, counts):
    if len(source) == 0:
      raise SourceError(f"{spec.where}: no entries.")
    parts.append(f"{spec.name} {n} ({spec.kind}, {len(source)})")
  return "training batches mix " + " + ".join(parts) + " clips (source, entries)"
