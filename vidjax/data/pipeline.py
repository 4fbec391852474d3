"""grain pipelines for training and evaluation, sharded by JAX process.

Training: this process's slice of the source, shuffled anew each epoch from the seed,
repeated forever; each example's frames are sampled and decoded with a per-example rng
(`data.sampler`), transformed (`data.train_crop`, flip) and batched with drop-remainder.
Files that cannot be read are skipped with one warning each and counted: the iterator's
`skipped_files`. Worker processes (`data.num_workers`) decode in parallel with prefetch.
The iterator is a grain `DatasetIterator`, whose state the checkpoint saves, so a
resumed run (with the same worker count) reads exactly the batches the uninterrupted run
would have read. With `data.sources` (vidjax/data/mixture.py) every batch mixes several
sources (video lists, image folders) at exact shares, and the state holds each source's
position.

Evaluation: one pass; the last batch is padded with copies of the first example and a
`mask` of 0, so that metrics over padded batches are exact; unreadable files also get
mask 0 (and are counted). Every process yields the same number of batches. With
`eval.num_views = V > 1`, clips are [V, T, H, W, 3]: `data.test_clips` temporal clips x
the spatial crops of `data.test_crop`, crop-major.

Audio features (`data.format` "audio_features", or the demo's "audio_demo"): the same
pipelines, where a clip is float32 [data.audio_length, F] log-mel rows
(vidjax/data/audio.py) and has no spatial transform; views are its temporal clips.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Iterator
import weakref

from absl import flags
from absl import logging
import grain
import jax
import ml_collections
import numpy as np

from vidjax.data import decode, demo, demo_audio, mixture, resolve, sampling, sources, transforms

# Data formats whose clips are audio features [T, F] (vidjax/data/audio.py), not frames.
AUDIO_FORMATS = ("audio_features", "audio_demo")


class DataNotFoundError(FileNotFoundError):
  """The configured data set is not where the config says."""


class DataError(ValueError):
  """The data cannot feed training (e.g. not one readable file in a whole pass)."""


def _split_name(data_config: ml_collections.ConfigDict, split: str) -> str:
  return data_config.train_split if split == "train" else data_config.eval_split


def _source(data_config: ml_collections.ConfigDict, split: str) -> Any:
  """The random-access source of `split` ("train" or "eval")."""
  if data_config.name == "demo":
    num = data_config.train_examples if split == "train" else data_config.eval_examples
    if data_config.get("format") == "audio_demo":
      return demo_audio.DemoAudioSource(split=split, num_examples=num, seed=data_config.seed)
    return demo.DemoSource(split=split, num_examples=num,
                           num_frames=data_config.source_frames,
                           image_size=data_config.image_size, seed=data_config.seed)
  fmt = data_config.get("format", "videos")
  if fmt == "tfds":
    try:
      return sources.TfdsSource(name=data_config.tfds_name, split=_split_name(data_config, split),
                                data_dir=data_config.tfds_data_dir,
                                video_key=data_config.video_key, label_key=data_config.label_key)
    except Exception as e:  # TFDS raises several types for a missing data set
      where = data_config.tfds_data_dir or "~/tensorflow_datasets"
      raise DataNotFoundError(missing_data_message(
          data_config, split, f"TFDS data set {data_config.tfds_name!r} split "
          f"{_split_name(data_config, split)!r} in {where} ({type(e).__name__}: {e})")) from e
  list_file = resolve.find_list(data_config.root, data_config.get(f"{split}_list", "") or "")
  if not list_file or not os.path.exists(list_file):
    raise DataNotFoundError(missing_data_message(data_config, split, list_file))
  names = None
  if data_config.label_names:
    path = resolve.find_list(data_config.root, data_config.label_names)
    if not os.path.exists(path):
      raise DataNotFoundError(f"data.label_names: {path} does not exist.")
    names = sources.read_label_names(path, data_config.num_classes)
  return sources.ListSource(list_file=list_file, fmt=fmt, root=data_config.root,
                            multi_label=data_config.multi_label,
                            num_classes=data_config.num_classes, label_names=names,
                            csv_path_tmpl=data_config.csv_path_tmpl)


def missing_data_message(data_config: ml_collections.ConfigDict, split: str,
                         looked_at: str) -> str:
  if is_audio(data_config):
    return (
        f"The {split} data of data set {data_config.name!r} is missing: looked for the "
        f"audio feature list {looked_at or '(data.' + split + '_list is empty)'}.\n"
        f"To prepare it: write the features of your videos and their list with `python "
        f"scripts/extract_audio_features.py --src VIDEOS --list VIDEO_LIST --out "
        f"{data_config.get('root', '') or 'FEATURES'} --out-list FEATURE_LIST`, then pass "
        f"--config.data.root=... --config.data.{split}_list=....\n"
        "To try vidjax without data, run the demo variant of this config, e.g.\n"
        "  python -m vidjax.main --config configs/audio_tsn_r18.py:demo --workdir "
        "/tmp/vidjax_audio_demo")
  return (
      f"The {split} data of data set {data_config.name!r} is missing: looked for the "
      f"annotation list {looked_at or '(data.' + split + '_list is empty)'}.\n"
      f"To prepare it: put the videos under data.root ({data_config.get('root', '')}) and "
      f"write the list with `python scripts/build_file_list.py --root DIR --output LIST` "
      f"(one `path label` line per video; --frames for extracted frame folders), then pass "
      f"--config.data.root=... --config.data.{split}_list=....\n"
      "To try vidjax without data, run the demo variant of this config, e.g.\n"
      "  python -m vidjax.main --config configs/tsn_r50.py:demo --workdir /tmp/vidjax_demo")


def num_classes(data_config: ml_collections.ConfigDict) -> int:
  if data_config.name == "demo":
    return len(demo_class_names(data_config))
  return int(data_config.num_classes)


def demo_class_names(data_config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The class names of the demo data set of `data_config` (frames or sounds)."""
  if data_config.get("format") == "audio_demo":
    return demo_audio.CLASS_NAMES
  return demo.CLASS_NAMES


def _demo_names(source: Any) -> tuple[str, ...]:
  return (demo_audio.CLASS_NAMES if isinstance(source, demo_audio.DemoAudioSource)
          else demo.CLASS_NAMES)


def is_audio(data_config: ml_collections.ConfigDict) -> bool:
  """Whether the data are audio feature clips (float32 [T, F]) rather than frames."""
  return data_config.get("format", "videos") in AUDIO_FORMATS


def example_shape(data_config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The shape of one training example's clip: [T, S, S, 3] frames, or audio features
  [data.audio_length, data.audio_bins]."""
  d = data_config
  if is_audio(d):
    return (int(d.audio_length), int(d.audio_bins))
  return (int(d.num_frames), int(d.image_size), int(d.image_size), 3)


def splittable_frames(data_config: ml_collections.ConfigDict) -> int:
  """The frames of a clip that the devices may share at inference (sharding.py's
  `splits_frames`); 0 for audio features, whose clips are not split."""
  return 0 if is_audio(data_config) else int(data_config.num_frames)


# ---------------------------------------------------------------------------- pieces
def make_sampler(data_config: ml_collections.ConfigDict) -> sampling.Sampler:
  """The frame sampler of the data config (training clips and test views)."""
  return sampling.Sampler(kind=data_config.sampler, num_frames=int(data_config.num_frames),
                          frame_interval=int(data_config.frame_interval),
                          test_sampling=data_config.test_sampling,
                          out_of_bound=data_config.out_of_bound)


def make_reader(data_config: ml_collections.ConfigDict) -> decode.Reader:
  """The decoder of the data config's records (video files, frame folders, arrays)."""
  return decode.Reader(threads=int(data_config.decode_threads), seek=bool(data_config.seek),
                       filename_tmpl=data_config.filename_tmpl,
                       start_index=int(data_config.start_index),
                       jpeg_backend=decode.resolve_jpeg_backend(data_config.jpeg_backend),
                       audio_length=int(data_config.get("audio_length", 128)),
                       audio_bins=int(data_config.get("audio_bins", 0)))


def make_transform(data_config: ml_collections.ConfigDict
                   ) -> transforms.ClipTransform | None:
  """The spatial transforms of the data config's clips; None for audio features."""
  return None if is_audio(data_config) else transforms.from_config(data_config)


def _warn_skip(skipped: Any, seen: set[str], split: str) -> int:
  """Warns once per file (in the main process, whichever worker read it); returns how many
  files of `skipped` are not in `seen` yet, and adds them: a file met again (in a later
  epoch, or in padded rows) is one file, warned about and counted once.

  `skipped`: (path, message) of each file skipped; path "" for rows that were read.
  """
  n = 0
  for path, message in skipped:
    path = str(path)
    if not path or path in seen:
      continue
    seen.add(path)
    n += 1
    logging.warning("Skipping unreadable %s file %s", split, message)
  return n


def test_views(data_config: ml_collections.ConfigDict, num_views: int) -> tuple[int, int]:
  """(temporal clips, spatial crops) of the test protocol; their product is `num_views`.

  Raises:
    ValueError: config.eval.num_views does not match data.test_clips x test_crop.
  """
  crops = transforms.num_test_crops(data_config.test_crop)
  clips = int(data_config.test_clips)
  if clips > 0:
    if clips * crops != num_views:
      raise ValueError(
          f"config.eval.num_views={num_views}, but data.test_clips={clips} temporal clips x "
          f"{crops} crops of data.test_crop={data_config.test_crop!r} make {clips * crops} "
          f"views: set config.eval.num_views={clips * crops}.")
    return clips, crops
  if num_views % crops:
    raise ValueError(f"config.eval.num_views={num_views} is not a multiple of the {crops} "
                     f"crops of data.test_crop={data_config.test_crop!r}.")
  return num_views // crops, crops


def test_clip_views(transform: transforms.ClipTransform | None,
                    frames: np.ndarray) -> np.ndarray:
  """The test views of one example's sampled frames, as eval batches hold them.

  Args:
    transform: the data config's (`make_transform`); None for audio features, whose
      temporal clips are the views.
    frames: uint8 [clips, T, H, W, 3], the sampler's temporal test clips.

  Returns:
    uint8 [V, T, S, S, 3], crop-major: view c * clips + k is crop c of clip k.
  """
  if transform is None:
    return frames
  views = transform.test(frames)                  # [crops, clips, T, S, S, 3]
  return views.reshape((-1,) + views.shape[2:])


class _LoadTrain(grain.transforms.RandomMap):
  """Record -> {"clip" [T, S, S, 3], "label"}, or {"skipped": (path, message)}; with
  `source` >= 0 (a mixture's source index) also "source"."""

  def __init__(self, reader: decode.Reader, sampler: sampling.Sampler,
               transform: transforms.ClipTransform | None, source: int = -1):
    self.reader, self.sampler, self.transform = reader, sampler, transform
    self.source = source

  def _frames(self, record: dict, rng: np.random.Generator) -> np.ndarray:
    return self.reader(record, lambda n: self.sampler.train(n, rng))

  def random_map(self, record: dict, rng: np.random.Generator) -> dict:
    try:
      clip = self._frames(record, rng)
    except decode.DecodeError as e:
      return {"skipped": (e.path, str(e))}
    label = record["label"]
    if self.transform is not None:
      clip, label = self.transform.train(clip, label, rng)
    out = {"clip": clip, "label": label}
    if self.source >= 0:
      out["source"] = np.int32(self.source)
    return out


class _LoadImage(_LoadTrain):
  """An image record {"image": path} -> a clip of `num_frames` copies of the image, then
  the same transforms as a video clip (OmniSource's pseudo clips)."""

  def __init__(self, transform: transforms.ClipTransform, num_frames: int, source: int,
               jpeg_backend: str):
    super().__init__(decode.Reader(), None, transform, source)
    self.num_frames, self.jpeg_backend = num_frames, jpeg_backend

  def _frames(self, record: dict, rng: np.random.Generator) -> np.ndarray:
    image = decode.read_image(record["image"], self.jpeg_backend)
    return np.repeat(image[None], self.num_frames, axis=0)


class _BatchReadable(grain.IterDataset):
  """Batches of `batch_size` readable examples; "skipped" lists the files left out."""

  def __init__(self, parent: grain.IterDataset, batch_size: int, max_consecutive: int):
    super().__init__(parent)
    self.batch_size, self.max_consecutive = batch_size, max_consecutive

  def __iter__(self) -> grain.DatasetIterator:
    return _BatchReadableIterator(self._parent.__iter__(), self.batch_size,
                                  self.max_consecutive)

  def __str__(self) -> str:
    return f"BatchReadable(batch_size={self.batch_size})"


class _BatchReadableIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, batch_size: int, max_consecutive: int):
    super().__init__(parent)
    self.batch_size, self.max_consecutive = batch_size, max_consecutive

  def __next__(self) -> dict:
    rows, skipped, run = [], [], 0
    while len(rows) < self.batch_size:
      example = next(self._parent)
      if "skipped" in example:
        skipped.append(example["skipped"])
        run += 1
        if run > self.max_consecutive:
          raise DataError(f"{run} files in a row could not be read (the last: "
                          f"{example['skipped']}); is data.root right?")
        continue
      run = 0
      rows.append(example)
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch["skipped"] = tuple(skipped)
    return batch

  def get_state(self) -> dict:
    return self._parent.get_state()

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state)


def _off_shared_memory(batch: dict) -> dict:
  """Copies the arrays grain's workers hand over in shared memory into ordinary ones.

  grain frees a shared block on a background thread when its array dies; a batch still
  alive when the interpreter exits is reported as leaked, so the block dies here instead.
  """
  return {k: np.array(v) if isinstance(v, grain.multiprocessing.SharedMemoryArray) else v
          for k, v in batch.items()}


class TrainIterator(grain.DatasetIterator):
  """Batches {"clip" uint8 [b, T, S, S, 3], "label" [b]}; `skipped_files` counts the
  distinct unreadable files left out so far (this process). The files are part of the
  saved state, so a resumed run neither counts one twice nor warns about it again."""

  def __init__(self, parent: grain.DatasetIterator, num_workers: int,
               sources_: tuple = ()):
    super().__init__(parent)
    self.skipped_files = 0
    self.num_workers = num_workers
    self._skipped: set[str] = set()
    # A mixture's [name, clips per batch] of each source: its position only exists for
    # the same sources and shares.
    self.sources = [list(x) for x in sources_]

  def __next__(self) -> dict:
    batch = _off_shared_memory(next(self._parent))
    self.skipped_files += _warn_skip(batch.pop("skipped"), self._skipped, "train")
    return batch

  def get_state(self) -> dict:
    state = {"pipeline": self._parent.get_state(), "skipped_files": self.skipped_files,
             "skipped_paths": sorted(self._skipped), "num_workers": self.num_workers}
    if self.sources:
      state["sources"] = self.sources
    return state

  def set_state(self, state: dict) -> None:
    saved = state.get("num_workers", 0)
    if saved != self.num_workers:
      # Each worker reads its own slice of the examples, so the position (and the order
      # after it) only exists for the same worker count.
      raise DataError(f"The checkpoint's data position was saved with data.num_workers="
                      f"{saved}; resume with --config.data.num_workers={saved} (the example "
                      f"order depends on it), not {self.num_workers}.")
    saved = [list(x) for x in state.get("sources", [])]
    if saved != self.sources:
      raise DataError(f"The checkpoint's data position was saved for the training sources "
                      f"{_describe_sources(saved)}, not {_describe_sources(self.sources)}; "
                      "resume with the same data.sources and batch_size.")
    self._parent.set_state(state["pipeline"])
    self.skipped_files = int(state["skipped_files"])
    self._skipped = set(state.get("skipped_paths", ()))  # absent in older checkpoints

  def close(self) -> None:
    close = getattr(self._parent, "close", None)
    if close is not None:
      close()


def _process_slice(ds: grain.MapDataset) -> grain.MapDataset:
  return ds[jax.process_index()::jax.process_count()]


def _local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch size {global_batch_size} is not divisible by "
                     f"{jax.process_count()} processes.")
  return global_batch_size // jax.process_count()


def _read_options(data_config: ml_collections.ConfigDict) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=data_config.num_threads,
                           prefetch_buffer_size=data_config.prefetch)


def _mp(it: grain.IterDataset, data_config: ml_collections.ConfigDict) -> grain.IterDataset:
  if data_config.num_workers > 0:
    # grain's workers read absl flags; outside an absl app (tests, notebooks) nothing has
    # parsed them, so their defaults stand.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=data_config.num_workers, per_worker_buffer_size=data_config.prefetch))
  return it


def _close_if_alive(ref: weakref.ref) -> None:
  it = ref()
  if it is not None:
    it.close()


def _closed_at_exit(it: Any, data_config: ml_collections.ConfigDict) -> Any:
  """Worker iterators are closed before multiprocessing's own exit handlers run, which
  otherwise find their queues already closed (noisy tracebacks at interpreter exit)."""
  if data_config.num_workers > 0:
    atexit.register(_close_if_alive, weakref.ref(it))
  return it


def train_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int,
                   seed: int) -> TrainIterator:
  """Infinite iterator of {"clip": uint8 [b, T, H, W, 3], "label": int32 [b]}.

  b is this process's share of `global_batch_size`. With `data.sources`, batches mix
  the sources (`_mixed_train_iterator`).
  """
  if data_config.get("sources"):
    return _mixed_train_iterator(data_config, global_batch_size, seed)
  source = _source(data_config, "train")
  ds = _process_slice(grain.MapDataset.source(source))
  if len(ds) == 0:
    raise DataError(f"The train split of {data_config.name!r} has no examples for process "
                    f"{jax.process_index()}.")
  ds = ds.seed(seed).shuffle().repeat()
  ds = ds.random_map(_LoadTrain(make_reader(data_config), make_sampler(data_config),
                                make_transform(data_config)))
  it = ds.to_iter_dataset(_read_options(data_config))
  it = _BatchReadable(it, _local_batch_size(global_batch_size), max_consecutive=len(source))
  return _closed_at_exit(TrainIterator(iter(_mp(it, data_config)), data_config.num_workers),
                         data_config)


# ---------------------------------------------------------------------------- mixtures
class _ConcatGroups(grain.IterDataset):
  """Joins each run of `num_groups` consecutive groups (one per source, in any order) into
  one batch, the sources' rows interleaved evenly (`interleaved_order`); "skipped" lists
  every group's files."""

  def __init__(self, parent: grain.IterDataset, num_groups: int):
    super().__init__(parent)
    self.num_groups = num_groups

  def __iter__(self) -> grain.DatasetIterator:
    return _ConcatGroupsIterator(self._parent.__iter__(), self.num_groups)

  def __str__(self) -> str:
    return f"ConcatGroups(num_groups={self.num_groups})"


class _ConcatGroupsIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, num_groups: int):
    super().__init__(parent)
    self.num_groups = num_groups

  def __next__(self) -> dict:
    groups = sorted((next(self._parent) for _ in range(self.num_groups)),
                    key=lambda g: int(g["source"][0]))
    order = interleaved_order([len(g["source"]) for g in groups])
    batch = {k: np.concatenate([g[k] for g in groups])[order]
             for k in groups[0] if k != "skipped"}
    batch["skipped"] = tuple(f for g in groups for f in g["skipped"])
    return batch

  # Whole runs of groups are read per batch, so the parent's position is the batch's.
  def get_state(self) -> dict:
    return self._parent.get_state()

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state)


def interleaved_order(counts: list[int]) -> np.ndarray:
  """The row order that spreads each source's rows evenly over a batch: row j of a source
  with n rows sits at (j + 1/2) / n of the batch (ties: the earlier source first), so every
  contiguous part of a batch (a device's rows, a microbatch, a BatchNorm group) holds the
  sources as nearly in their shares as its size allows.

  Args:
    counts: rows per source; rows are given source by source.

  Returns:
    int [sum(counts)]: indices into the source-by-source rows.
  """
  keys = np.concatenate([(np.arange(n) + 0.5) / n for n in counts])
  return np.argsort(keys, kind="stable")


def _describe_sources(shares: list) -> str:
  return (" + ".join(f"{n} {name}" for name, n in shares) + " clips per batch" if shares
          else "one source (no data.sources)")


def _mixed_train_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int,
                          seed: int) -> TrainIterator:
  """Batches of every source of `data.sources` at its share (vidjax/data/mixture.py), with
  a "source" int32 [b] row id (the index in data.sources), the sources' rows interleaved
  evenly (`interleaved_order`).

  Each source is its own grain pipeline (sharded by process, shuffled from its own seed,
  repeated, decoded and transformed like the classic pipeline) batched by its share, so
  an unreadable file is replaced by the next one of the same source; grain's `mix` with
  equal weights takes one such group of every source in turn, and each run of groups
  becomes one batch.
  """
  built = mixture.build_all(data_config)
  specs = [spec for spec, _ in built]
  counts = mixture.batch_shares(specs, global_batch_size)
  local = mixture.local_shares(counts, specs, jax.process_count())
  transform = transforms.from_config(data_config)
  reader, sampler = make_reader(data_config), make_sampler(data_config)
  backend = decode.resolve_jpeg_backend(data_config.jpeg_backend)
  groups = []
  for i, (spec, source) in enumerate(built):
    ds = _process_slice(grain.MapDataset.source(source))
    if len(ds) == 0:
      raise DataError(f"{spec.where} has no examples for process {jax.process_index()}.")
    ds = ds.seed(mixture.source_seed(seed, i)).shuffle().repeat()
    if spec.kind == "images":
      load = _LoadImage(transform, int(data_config.num_frames), i, backend)
    else:
      load = _LoadTrain(reader, sampler, transform, source=i)
    it = ds.random_map(load).to_iter_dataset(_read_options(data_config))
    groups.append(_BatchReadable(it, local[i], max_consecutive=len(source)))
  it = _ConcatGroups(grain.IterDataset.mix(groups), len(groups))
  shares = [(spec.name, n) for spec, n in zip(specs, counts)]
  return _closed_at_exit(TrainIterator(iter(_mp(it, data_config)), data_config.num_workers,
                                       shares), data_config)


def steps_per_epoch(data_config: ml_collections.ConfigDict, global_batch_size: int) -> int:
  """Optimiser steps per epoch; with `data.sources`, per pass over the first source."""
  specs = mixture.specs(data_config)
  if specs:
    first = mixture.build(specs[0], data_config, mixture.label_names(data_config))
    return max(1, len(first) // mixture.batch_shares(specs, global_batch_size)[0])
  return max(1, len(_source(data_config, "train")) // global_batch_size)


class _LoadEval:
  """Index -> {"clip" [T, ...] or [V, T, ...], "label", "mask", "index" (the position in
  the source; -1 for padding), "skipped" [2] str (path and message of an unreadable file,
  or empty)}."""

  def __init__(self, source: Any, reader: decode.Reader, sampler: sampling.Sampler,
               transform: transforms.ClipTransform | None, clips: int, views: int):
    self.source, self.reader, self.sampler, self.transform = source, reader, sampler, transform
    self.clips, self.views, self.n = clips, views, len(source)
    self._zeros = None

  def _views(self, record: dict) -> np.ndarray:
    frames = self.reader(record, lambda n: self.sampler.test(n, self.clips))
    return test_clip_views(self.transform, frames)

  def _placeholder(self) -> np.ndarray:
    """Zeros shaped as a readable example's views (for the masked row of a bad file)."""
    if self._zeros is None:
      for j in range(self.n):
        try:
          self._zeros = np.zeros_like(self._views(self.source[j]))
          break
        except decode.DecodeError:
          continue
      else:
        raise DataError(f"Not one of the {self.n} eval files could be read.")
    return self._zeros

  def __call__(self, i: int) -> dict:
    record = self.source[i if i < self.n else 0]
    try:
      views, ok = self._views(record), True
    except decode.DecodeError as e:
      views, ok, skipped = self._placeholder(), False, (e.path, str(e))
    if ok or i >= self.n:
      skipped = ("", "")
    return {"clip": views[0] if self.views == 1 else views, "label": record["label"],
            "mask": np.bool_(ok and i < self.n), "index": np.int32(i if i < self.n else -1),
            "skipped": np.array(skipped, np.str_)}


class EvalIterator:
  """One pass of eval batches; `skipped_files` counts the unreadable files (mask 0).

  `files()` and `class_names()` name the rows of the per-video scores file: a batch's
  "index" indexes `files()`.
  """

  def __init__(self, it: Iterator[dict], source: Any = None,
               data_config: ml_collections.ConfigDict | None = None):
    self._it = it
    self._source, self._data_config = source, data_config
    self.skipped_files = 0
    self._warned: set[str] = set()

  def files(self) -> list[str]:
    """The name of each eval example, in source order (see `eval_files`)."""
    return eval_files(self._source, self._data_config)

  def class_names(self) -> list[str] | None:
    """The class names when the data set has them (see `eval_class_names`)."""
    return eval_class_names(self._source, self._data_config)

  def __iter__(self) -> "EvalIterator":
    return self

  def __next__(self) -> dict:
    batch = _off_shared_memory(next(self._it))
    self.skipped_files += _warn_skip(batch.pop("skipped"), self._warned, "eval")
    return batch


def eval_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int,
                  num_views: int = 1) -> EvalIterator:
  """One pass of {"clip", "label", "mask"}; clip [b, T, ...] or [b, V, T, ...]."""
  source = _source(data_config, "eval")
  clips, _ = test_views(data_config, num_views)
  n = len(source)
  padded = -(-n // global_batch_size) * global_batch_size
  load = _LoadEval(source, make_reader(data_config), make_sampler(data_config),
                   make_transform(data_config), clips, num_views)
  ds = _process_slice(grain.MapDataset.range(padded)).map(load)
  ds = ds.batch(_local_batch_size(global_batch_size))
  inner = iter(_mp(ds.to_iter_dataset(_read_options(data_config)), data_config))
  _closed_at_exit(inner, data_config)
  return EvalIterator(inner, source, data_config)


def eval_files(source: Any, data_config: ml_collections.ConfigDict) -> list[str]:
  """Names of the eval examples, in source order, without reading any video.

  List formats: the path as in the list (relative to `data.root` unless the list gives
  an absolute path; frame lists: the frame folder). Demo: `eval/{class}/{index:06d}`, the
  name `demo.write_video_files` gives the same clip. TFDS: `{tfds_name}/{split}[{index}]`.
  """
  n = len(source)
  if isinstance(source, (demo.DemoSource, demo_audio.DemoAudioSource)):
    names = _demo_names(source)
    return [f"{source.split}/{names[label]}/{i:06d}" for i, label in enumerate(source.labels)]
  if isinstance(source, sources.TfdsSource):
    return [f"{source.name}/{source.split}[{i}]" for i in range(n)]
  root = sources.expand(data_config.get("root", "") or "")
  prefix = root.rstrip(os.sep) + os.sep if root else ""
  out = []
  for i in range(n):
    record = source[i]
    path = str(record.get("video", record.get("frame_dir", record.get("audio_features", i))))
    out.append(path[len(prefix):] if prefix and path.startswith(prefix) else path)
  return out


def eval_class_names(source: Any, data_config: ml_collections.ConfigDict) -> list[str] | None:
  """Class names, line i naming label i: the demo's, `data.label_names`, a Kinetics CSV's,
  or a TFDS ClassLabel's; None when the data set has none."""
  if isinstance(source, (demo.DemoSource, demo_audio.DemoAudioSource)):
    return list(_demo_names(source))
  names = getattr(source, "label_names", None)
  if names:
    return list(names)
  if isinstance(source, sources.TfdsSource):
    try:  # a ClassLabel feature has names; another label feature has none
      info = source._open().dataset_info  # pylint: disable=protected-access
      return list(info.features[source.label_key].names)
    except Exception:  # pylint: disable=broad-except
      return None
  return None


def num_eval_examples(data_config: ml_collections.ConfigDict) -> int:
  return len(_source(data_config, "eval"))
