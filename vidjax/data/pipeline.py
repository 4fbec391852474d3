"""grain pipelines for training and evaluation, sharded by JAX process.

Training: this process's slice of the source, shuffled anew each epoch from the seed,
repeated forever, segment-sampled with a per-example rng, batched with drop-remainder.
The iterator is a grain `DatasetIterator`, whose state the checkpoint saves, so a
resumed run reads exactly the batches the uninterrupted run would have read.

Evaluation: one pass; the last batch is padded with copies of the first example and a
`mask` of 0, so that metrics over padded batches are exact. Every process yields the
same number of batches. With `eval.num_views = V > 1`, clips are [V, T, H, W, 3].
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import grain
import jax
import ml_collections
import numpy as np

from vidjax.data import demo, sampling


class DataNotFoundError(FileNotFoundError):
  """The configured data set is not where the config says."""


def _source(data_config: ml_collections.ConfigDict, split: str) -> Any:
  """The random-access source of `split` ("train" or "eval")."""
  if data_config.name == "demo":
    num = data_config.train_examples if split == "train" else data_config.eval_examples
    return demo.DemoSource(split=split, num_examples=num,
                           num_frames=data_config.source_frames,
                           image_size=data_config.image_size, seed=data_config.seed)
  list_file = os.path.expanduser(data_config.get(f"{split}_list", "") or "")
  if not list_file or not os.path.exists(list_file):
    raise DataNotFoundError(missing_data_message(data_config, split, list_file))
  raise NotImplementedError(
      f"data.name={data_config.name!r}: reading video lists ({list_file}) arrives with the "
      "real-video pipeline (issue 4); only data.name='demo' is readable in this version.")


def missing_data_message(data_config: ml_collections.ConfigDict, split: str,
                         looked_at: str) -> str:
  return (
      f"The {split} data of data set {data_config.name!r} is missing: looked for the "
      f"annotation list {looked_at or '(data.' + split + '_list is empty)'}.\n"
      f"To prepare it: put the videos under data.root ({data_config.get('root', '')}) and "
      f"write the list with `python scripts/build_file_list.py --root DIR --output LIST` "
      f"(one `path label` line per video), then pass "
      f"--config.data.root=... --config.data.{split}_list=....\n"
      "To try vidjax without data, run the demo variant of this config, e.g.\n"
      "  python -m vidjax.main --config configs/tsn_r50.py:demo --workdir /tmp/vidjax_demo")


def num_classes(data_config: ml_collections.ConfigDict) -> int:
  if data_config.name == "demo":
    return len(demo.CLASS_NAMES)
  return int(data_config.num_classes)


class _SampleTrain(grain.transforms.RandomMap):

  def __init__(self, num_segments: int):
    self.num_segments = num_segments

  def random_map(self, example: dict, rng: np.random.Generator) -> dict:
    clip = example["clip"]
    idx = sampling.segment_indices(len(clip), self.num_segments, rng=rng)
    return {"clip": clip[idx], "label": np.int32(example["label"])}


def _process_slice(ds: grain.MapDataset) -> grain.MapDataset:
  return ds[jax.process_index()::jax.process_count()]


def _local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch size {global_batch_size} is not divisible by "
                     f"{jax.process_count()} processes.")
  return global_batch_size // jax.process_count()


def _to_iter(ds: grain.MapDataset, data_config: ml_collections.ConfigDict) -> grain.IterDataset:
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=data_config.num_threads,
                                            prefetch_buffer_size=data_config.prefetch))
  if data_config.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return it


def train_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int,
                   seed: int) -> grain.DatasetIterator:
  """Infinite iterator of {"clip": uint8 [b, T, H, W, 3], "label": int32 [b]}.

  b is this process's share of `global_batch_size`.
  """
  ds = _process_slice(grain.MapDataset.source(_source(data_config, "train")))
  ds = ds.seed(seed).shuffle().repeat()
  ds = ds.random_map(_SampleTrain(data_config.num_frames))
  ds = ds.batch(_local_batch_size(global_batch_size), drop_remainder=True)
  return iter(_to_iter(ds, data_config))


def steps_per_epoch(data_config: ml_collections.ConfigDict, global_batch_size: int) -> int:
  return max(1, len(_source(data_config, "train")) // global_batch_size)


def eval_iterator(data_config: ml_collections.ConfigDict, global_batch_size: int,
                  num_views: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass of {"clip", "label", "mask"}; clip [b, T, ...] or [b, V, T, ...]."""
  source = _source(data_config, "eval")
  n = len(source)
  padded = -(-n // global_batch_size) * global_batch_size
  num_segments = data_config.num_frames

  def load(i: int) -> dict:
    example = source[i if i < n else 0]
    clip = example["clip"]
    views = [clip[sampling.segment_indices(len(clip), num_segments, view=v, num_views=num_views)]
             for v in range(num_views)]
    return {"clip": views[0] if num_views == 1 else np.stack(views),
            "label": np.int32(example["label"]), "mask": np.bool_(i < n)}

  ds = _process_slice(grain.MapDataset.range(padded)).map(load)
  ds = ds.batch(_local_batch_size(global_batch_size))
  return iter(_to_iter(ds, data_config))


def num_eval_examples(data_config: ml_collections.ConfigDict) -> int:
  return len(_source(data_config, "eval"))
