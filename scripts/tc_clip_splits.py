"""Evaluates one checkpoint on several class splits: TC-CLIP's test protocols
(reference/tcclip.md 5).

    python scripts/tc_clip_splits.py --config configs/tc_clip.py \
        --checkpoint /tmp/tc_clip_zs --workdir /tmp/tc_clip_zs_eval \
        --split hmdb51=~/data/hmdb51/val_split1.txt:~/data/hmdb51/labels.txt \
        --split hmdb51=~/data/hmdb51/val_split2.txt:~/data/hmdb51/labels.txt ... \
        [--config.data.root=~/data/hmdb51/videos]

Each `--split GROUP=EVAL_LIST:LABEL_FILE` is evaluated with the config's test views, its
label file's lines as the class names (TC-CLIP has no classifier, so one checkpoint
serves every class list) and its own output directory `WORKDIR/GROUP_i`. Printed: each
split's top-1, each group's mean and standard deviation over its splits (numpy's
population std) in percent, and, when the groups `base` and `novel` both appear, the
base-to-novel harmonic mean 2bn / (b + n) of their means. The last line is a JSON object
of all of it.

Zero-shot: one group per data set, its three splits (K600: the novel-class splits).
Base-to-novel: the groups `base` (base classes' validation, one split per seed) and
`novel`. `--config.FIELD=VALUE` overrides apply to every split.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_split(text: str) -> tuple[str, str, str]:
  """'GROUP=LIST:LABELS' -> (group, list, labels)."""
  group, sep, rest = text.partition("=")
  eval_list, sep2, labels = rest.rpartition(":")
  if not (sep and sep2 and group and eval_list and labels):
    raise ValueError(f"--split {text!r}: expected GROUP=EVAL_LIST:LABEL_FILE")
  return group, os.path.expanduser(eval_list), os.path.expanduser(labels)


def summarize(results: list[dict]) -> dict:
  """Per-split top-1 (0..1) -> per-group mean and std in percent, and the harmonic mean
  of the `base` and `novel` groups' means when both are there."""
  groups: dict[str, list[float]] = {}
  for r in results:
    groups.setdefault(r["group"], []).append(100.0 * r["top1"])
  out = {"splits": results,
         "groups": {g: {"mean": float(np.mean(v)), "std": float(np.std(v)), "splits": len(v)}
                    for g, v in groups.items()}}
  if "base" in groups and "novel" in groups:
    b, n = out["groups"]["base"]["mean"], out["groups"]["novel"]["mean"]
    out["harmonic_mean"] = 2 * b * n / (b + n) if b + n else 0.0
  return out


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", action="append", required=True)
  args, overrides = parser.parse_known_args(argv)
  from vidjax import config_checks, run_config  # pylint: disable=g-import-not-at-top
  from vidjax.data import sources  # pylint: disable=g-import-not-at-top
  try:
    splits = [parse_split(s) for s in args.split]
    overrides, unknown = run_config.split_overrides(overrides)
    if unknown:
      raise ValueError(f"unknown arguments {unknown}; config fields are --config.FIELD=VALUE")
    config = run_config.load(args.config, overrides)
    names = [sources.read_label_names(labels) for _, _, labels in splits]
  except (ValueError, run_config.ConfigError, OSError) as e:
    config_checks.exit_with_error(str(e))
  from vidjax.train import trainer  # pylint: disable=g-import-not-at-top
  results = []
  for i, ((group, eval_list, labels), classes) in enumerate(zip(splits, names)):
    cfg = copy.deepcopy(config)
    # Evaluation only: the training list (a run's config names one with other classes,
    # which the data checks would hold against this split's class count) is the split's.
    cfg.data.update(train_list=eval_list, eval_list=eval_list, label_names=labels,
                    num_classes=len(classes))
    cfg.model.update(label_file=labels, num_classes=len(classes))
    got = trainer.evaluate_only(cfg, os.path.join(args.workdir, f"{group}_{i}"),
                                args.checkpoint)
    results.append({"group": group, "eval_list": eval_list, "classes": len(classes),
                    "top1": float(got["eval/top1"]), "top5": float(got["eval/top5"])})
    print(f"{group} split {i}: top1 {100 * results[-1]['top1']:.2f} "
          f"({len(classes)} classes, {eval_list})", flush=True)
  summary = summarize(results)
  for g, s in summary["groups"].items():
    print(f"{g}: {s['mean']:.2f} +- {s['std']:.2f} over {s['splits']} splits")
  if "harmonic_mean" in summary:
    print(f"harmonic mean (base, novel): {summary['harmonic_mean']:.2f}")
  print(json.dumps(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
