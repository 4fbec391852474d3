"""Writes an MMAction2-style annotation list from a folder of class folders.

    python scripts/build_file_list.py --root ~/data/mydata/train \
        --output ~/data/mydata/train_list.txt [--labels ~/data/mydata/label_names.txt]

Each line of the list is `relative/path/to/video.mp4 LABEL`; labels index the sorted
class-folder names, which are written one per line to `--labels` (default: beside the
list, `label_names.txt`). With `--labels` pointing at an existing file, its order is used,
so train and val lists share one label map.
"""

from __future__ import annotations

import argparse
import os
import sys

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov")


def build(root: str, class_names: list[str] | None = None) -> tuple[list[str], list[str]]:
  """Returns (lines, class_names) for the videos under root/<class>/."""
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--root {root} is not a directory of class folders.")
  found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  if class_names is None:
    class_names = found
  unknown = sorted(set(found) - set(class_names))
  if unknown:
    raise ValueError(f"class folders {unknown} of {root} are not in the label names.")
  lines = []
  for label, name in enumerate(class_names):
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      continue
    for dirpath, _, files in sorted(os.walk(folder)):
      for f in sorted(files):
        if f.lower().endswith(VIDEO_EXTENSIONS):
          rel = os.path.relpath(os.path.join(dirpath, f), root)
          lines.append(f"{rel} {label}")
  return lines, class_names


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="folder with one sub-folder per class")
  parser.add_argument("--output", required=True, help="annotation list to write")
  parser.add_argument("--labels", default=None, help="label-name file (read if it exists)")
  args = parser.parse_args(argv)
  labels_path = args.labels or os.path.join(os.path.dirname(os.path.abspath(args.output)),
                                            "label_names.txt")
  names = None
  if args.labels and os.path.exists(labels_path):
    with open(labels_path) as f:
      names = [line.strip() for line in f if line.strip()]
  try:
    lines, names = build(args.root, names)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not lines:
    print(f"error: no videos ({', '.join(VIDEO_EXTENSIONS)}) under {args.root}.", file=sys.stderr)
    return 2
  with open(args.output, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(labels_path, "w") as f:
    f.write("\n".join(names) + "\n")
  print(f"{len(lines)} videos in {len(names)} classes -> {args.output}, {labels_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
