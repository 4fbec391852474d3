"""Metric writers: clu's default (log + TensorBoard) plus a JSON-lines file.

`WORKDIR/metrics.jsonl` holds one `{"step": s, name: value, ...}` object per write, the
easy way to read a run's curves from a script (as MMAction2's json log).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
from clu import metric_writers


class JsonlWriter(metric_writers.MetricWriter):
  """Appends scalar writes to a JSON-lines file; other summary kinds are not recorded."""

  def __init__(self, path: str):
    self._file = open(path, "a")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {"step": int(step)}
    record.update({k: float(v) for k, v in scalars.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()

  def write_summaries(self, step, values, metadata=None) -> None:
    pass

  def write_images(self, step, images) -> None:
    pass

  def write_videos(self, step, videos) -> None:
    pass

  def write_audios(self, step, audios, *, sample_rate) -> None:
    pass

  def write_texts(self, step, texts) -> None:
    pass

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    pass

  def write_hparams(self, hparams) -> None:
    pass

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """Log + TensorBoard + metrics.jsonl on process 0; log only on the others."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(workdir, just_logging=True, asynchronous=False)
  default = metric_writers.create_default_writer(workdir, asynchronous=False)
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, "metrics.jsonl"))])


def read_jsonl(path: str) -> list[dict[str, float]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
