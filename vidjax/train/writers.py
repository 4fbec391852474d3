"""Metric writers: clu's default (log + TensorBoard) plus a JSON-lines file.

`WORKDIR/metrics.jsonl` holds one `{"step": s, name: value, ...}` object per write, the
easy way to read a run's curves from a script (as MMAction2's json log). Each (step, name)
appears once: a resumed run drops what the previous run wrote after the resumed step
(steps it is about to redo), and a value written again for a step replaces the old one.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import jax
from absl import logging
from clu import metric_writers


class JsonlWriter(metric_writers.MetricWriter):
  """Appends scalar writes to a JSON-lines file; other summary kinds are not recorded.

  With `resume_step`, records of later steps (written by a run that stopped after its
  last checkpoint) are dropped first, as is a partly written last line.
  """

  def __init__(self, path: str, resume_step: Optional[int] = None):
    self._path = path
    self._resume_step = resume_step
    if resume_step is not None and os.path.exists(path):
      self._rewrite(lambda r: r["step"] <= resume_step)
    self._file = open(path, "a")

  def _rewrite(self, keep: Any, drop_keys: frozenset = frozenset(), at_step: int = -1) -> None:
    """Atomically rewrites the file with the records `keep` accepts, without `drop_keys`
    at `at_step`."""
    records, bad = [], 0
    with open(self._path) as f:
      for line in f:
        try:
          record = json.loads(line)
          int(record["step"])
        except (ValueError, KeyError, TypeError):
          bad += 1  # a line cut short by a kill
          continue
        if not keep(record):
          continue
        if record["step"] == at_step:
          record = {k: v for k, v in record.items() if k not in drop_keys}
          if len(record) == 1:
            continue
        records.append(record)
    if bad:
      logging.warning("%s: left out %d unreadable line(s).", self._path, bad)
    tmp = f"{self._path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(tmp, self._path)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {"step": int(step)}
    record.update({k: float(v) for k, v in scalars.items()})
    if self._resume_step is not None and step <= self._resume_step:
      # A step the previous run may have written already (the resumed step's final
      # eval, step 0's statistics): its values are replaced, not repeated.
      self._file.close()
      self._rewrite(lambda r: True, frozenset(record) - {"step"}, int(step))
      self._file = open(self._path, "a")
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


class RunWriter(metric_writers.MultiWriter):
  """The console (one line per write) and the files; `files` writes to the files only,
  for what would crowd the console (progress rates, hyperparameters)."""

  def __init__(self, console: metric_writers.MetricWriter,
               files: list[metric_writers.MetricWriter]):
    super().__init__([console, *files])
    self.files = metric_writers.MultiWriter(files)


def create_writer(workdir: str, resume_step: Optional[int] = None) -> RunWriter:
  """Console + TensorBoard + metrics.jsonl on process 0; the console only on the others.

  `resume_step`: the step this run starts from (0 for a fresh run); metrics.jsonl keeps
  nothing after it.
  """
  console = metric_writers.LoggingWriter()
  if jax.process_index() > 0:
    return RunWriter(console, [])
  return RunWriter(console, [metric_writers.SummaryWriter(workdir),
                             JsonlWriter(os.path.join(workdir, "metrics.jsonl"), resume_step)])


def read_jsonl(path: str) -> list[dict[str, float]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
