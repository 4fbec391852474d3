"""Writes an MMAction2-style annotation list from a folder of class folders.

    python scripts/build_file_list.py --root ~/data/mydata/train \
        --output ~/data/mydata/train_list.txt [--labels ~/data/mydata/label_names.txt]

Each line of the list is `relative/path/to/video.mp4 LABEL`; with `--frames` (class
folders of extracted frame folders, e.g. from scripts/extract_frames.py) it is
`relative/frame_dir NUM_FRAMES LABEL`, counting the images of each folder. Labels index
the sorted class-folder names, which are written one per line to `--labels` (default: beside the
list, `label_names.txt`). With `--labels` pointing at an existing file, its order is used,
so train and val lists share one label map.
"""

from __future__ import annotations

import argparse
import os
import sys

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _frame_dirs(folder: str, root: str) -> list[str]:
  """`rel_dir num_frames` of every folder under `folder` that holds images."""
  out = []
  for dirpath, _, files in sorted(os.walk(folder)):
    n = sum(1 for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
    if n:
      out.append(f"{os.path.relpath(dirpath, root)} {n}")
  return out


def build(root: str, class_names: list[str] | None = None,
          frames: bool = False) -> tuple[list[str], list[str]]:
  """Returns (lines, class_names) for the videos (or frame folders) under root/<class>/."""
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
    if frames:
      lines += [f"{entry} {label}" for entry in _frame_dirs(folder, root)]
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
  parser.add_argument("--frames", action="store_true",
                      help="frame folders (`dir num_frames label` lines) instead of videos")
  args = parser.parse_args(argv)
  labels_path = args.labels or os.path.join(os.path.dirname(os.path.abspath(args.output)),
                                            "label_names.txt")
  names = None
  if args.labels and os.path.exists(labels_path):
    with open(labels_path) as f:
      names = [line.strip() for line in f if line.strip()]
  try:
    lines, names = build(args.root, names, frames=args.frames)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not lines:
    kind = "frame folders" if args.frames else f"videos ({', '.join(VIDEO_EXTENSIONS)})"
    print(f"error: no {kind} under {args.root}.", file=sys.stderr)
    return 2
  with open(args.output, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(labels_path, "w") as f:
    f.write("\n".join(names) + "\n")
  kind = "frame folders" if args.frames else "videos"
  print(f"{len(lines)} {kind} in {len(names)} classes -> {args.output}, {labels_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
