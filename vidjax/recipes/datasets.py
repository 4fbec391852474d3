"""The data sets of every recipe family, one entry each: where the data lies, how to read it.

A data set prepared once (root, annotation lists, frame file names) runs every config
that names it, whatever the family. What a family decides for itself (lr, epochs,
frames, whether it flips Something) stays in its recipe. The keys are the variant parts
that name the data sets (`configs/gc_tsm_r50.py:sthv2`); list formats:
vidjax/data/sources.py.
"""

from __future__ import annotations

import dataclasses

import ml_collections

# Something-Something: the left/right label pairs a horizontal flip swaps (GC's loader).
STH_FLIP_PAIRS = ((86, 87), (93, 94), (166, 167))


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The `data` fields of one data set."""
  name: str
  root: str
  train_list: str                     # relative: under root (vidjax/data/resolve.py)
  eval_list: str
  num_classes: int
  format: str = "videos"              # videos | frames | audio_features (data.format)
  filename_tmpl: str = "img_{:05d}.jpg"   # frames: file of frame i (from start_index)
  start_index: int = 1
  flip: bool = True                   # a horizontal flip keeps the label (after the map)
  flip_label_map: tuple = ()          # label pairs a flip swaps


def _videos(name: str, folder: str, train: str, val: str, num_classes: int) -> Dataset:
  return Dataset(name, f"~/data/{folder}", train, val, num_classes)


def _videofolder(name: str, folder: str, num_classes: int, digits: int,
                 **fields) -> Dataset:
  """Frame folders with TSM's lists (tools/gen_label_*.py: `dir num_frames label`)."""
  return Dataset(name, f"~/data/{folder}/frames", "../train_videofolder.txt",
                 "../val_videofolder.txt", num_classes, format="frames",
                 filename_tmpl="{:0%dd}.jpg" % digits, **fields)


DATASETS: dict[str, Dataset] = {
    "k400": _videos("kinetics400", "kinetics400", "kinetics400_train_list_videos.txt",
                    "kinetics400_val_list_videos.txt", 400),
    "minik200": _videos("minikinetics200", "minikinetics200", "train_list_videos.txt",
                        "val_list_videos.txt", 200),
    # Something: a flip is label-safe with the swapped pairs; TSM still trains without it.
    "sthv1": _videofolder("somethingv1", "sthv1", 174, 5, flip_label_map=STH_FLIP_PAIRS),
    "sthv2": _videofolder("somethingv2", "sthv2", 174, 6, flip_label_map=STH_FLIP_PAIRS),
    # Gestures are directional and have no label map: never flipped.
    "jester": _videofolder("jester", "jester", 27, 5, flip=False),
    "ucf101": _videos("ucf101", "ucf101", "ucf101_train_split_1_videos.txt",
                      "ucf101_val_split_1_videos.txt", 101),
    "hmdb51": _videos("hmdb51", "hmdb51", "hmdb51_train_split_1_videos.txt",
                      "hmdb51_val_split_1_videos.txt", 51),
    "diving48": _videos("diving48", "diving48", "train_list_videos.txt",
                        "val_list_videos.txt", 48),
}

# Kinetics-400's audio: log-mel feature files and their `path num_frames label` lists
# (scripts/extract_audio_features.py run over the k400 video lists; paths mirror the
# videos', so the per-video scores of both fuse by name). Never flipped.
DATASETS["k400_audio"] = Dataset(
    "kinetics400_audio", "~/data/kinetics400/audio_features",
    "kinetics400_train_list_audio_features.txt", "kinetics400_val_list_audio_features.txt",
    400, format="audio_features", flip=False)


def apply(config: ml_collections.ConfigDict, key: str) -> Dataset:
  """Sets every `data` field of data set `key` and the model's class count."""
  entry = DATASETS[key]
  config.data.update(dataclasses.asdict(entry))
  config.model.num_classes = entry.num_classes
  return entry
