"""Training curves of one or more runs, overlaid, as one PNG.

    python scripts/plot_curves.py WORKDIR [WORKDIR ...] --output curves.png

Reads each workdir's `metrics.jsonl` (one `{"step": s, name: value, ...}` object per write,
vidjax/train/writers.py) and draws three panels side by side against the step: the train
loss (`train/loss`), the eval top-1 accuracy (`eval/top1`) and the learning rate
(`train/learning_rate`). Each run is one colour, labelled by its workdir's name (with
its parent folder when two names are the same). A resumed run appends to its file; the
last value written at a step is the one drawn. A panel that no run has values for says
so. Needs matplotlib (`pip install vidjax[plots]`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax.data import prepare  # pylint: disable=g-import-not-at-top,wrong-import-position

METRICS_FILE = "metrics.jsonl"
PANELS = (("train/loss", "train loss"), ("eval/top1", "eval top-1 accuracy"),
          ("train/learning_rate", "learning rate"))


def read_metrics(workdir: str) -> dict[str, tuple[list[int], list[float]]]:
  """{name: (steps, values)} of `workdir/metrics.jsonl`, in step order, the last value
  written at each step.

  (Read here, not with writers.read_jsonl: importing the writers loads clu's TensorBoard
  writer and TensorFlow, seconds for a JSON-lines file.)

  Raises:
    ValueError: no metrics.jsonl, or a line that is not a JSON object with a step.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"{workdir} has no {METRICS_FILE} (a training run writes "
                     f"WORKDIR/{METRICS_FILE}).")
  by_name: dict[str, dict[int, float]] = {}
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        step = int(record.pop("step"))
      except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}:{n}: expected a JSON object with a \"step\" "
                         f"({type(e).__name__}: {e}).") from e
      for name, value in record.items():
        if isinstance(value, (int, float)):
          by_name.setdefault(name, {})[step] = float(value)
  return {name: (sorted(values), [values[s] for s in sorted(values)])
          for name, values in by_name.items()}


def run_labels(workdirs: list[str]) -> list[str]:
  """Each workdir's name, with its parent when another run has the same name."""
  paths = [os.path.abspath(os.path.expanduser(w)).rstrip(os.sep) for w in workdirs]
  names = [os.path.basename(p) for p in paths]
  return [os.path.join(os.path.basename(os.path.dirname(p)), n) if names.count(n) > 1 else n
          for p, n in zip(paths, names)]


def plot(runs: list[tuple[str, dict]], output: str) -> None:
  """Draws the panels of `runs` [(label, read_metrics output)] into the PNG `output`."""
  # The object API, not pyplot: no display backend is needed.
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  # pylint: enable=g-import-not-at-top
  fig = Figure(figsize=(5.0 * len(PANELS), 4.2))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(PANELS))
  for ax, (key, title) in zip(axes, PANELS):
    drawn = False
    for i, (label, metrics) in enumerate(runs):
      if key not in metrics:
        continue
      steps, values = metrics[key]
      # Evaluations are few: markers show each one.
      ax.plot(steps, values, label=label, color=f"C{i % 10}",
              marker="o" if key.startswith("eval/") else None, markersize=3)
      drawn = True
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if drawn:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, f"no {key} in any run", ha="center", va="center",
              transform=ax.transAxes)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  prepare.write_atomic(output, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="training workdirs (with metrics.jsonl)")
  parser.add_argument("--output", required=True, help="the PNG to write")
  args = parser.parse_args(argv)
  try:
    runs = [(label, read_metrics(w)) for label, w in zip(run_labels(args.workdirs),
                                                          args.workdirs)]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print("error: plot_curves.py needs matplotlib: pip install vidjax[plots]", file=sys.stderr)
    return 2
  plot(runs, args.output)
  for label, metrics in runs:
    counts = ", ".join(f"{len(metrics[k][0])} {k}" for k, _ in PANELS if k in metrics)
    print(f"{label}: {counts or 'none of ' + ', '.join(k for k, _ in PANELS)}")
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
