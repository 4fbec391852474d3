"""Writes an MMAction2-style annotation list from a folder of class folders.

    python scripts/build_file_list.py --root ~/data/mydata/train \
        --output ~/data/mydata/train_list.txt [--labels ~/data/mydata/label_names.txt]

Each line of the list is `relative/path/to/video.mp4 LABEL`; with `--frames` (class
folders of extracted frame folders, e.g. from scripts/extract_frames.py) it is
`relative/frame_dir NUM_FRAMES LABEL`, counting the images of each folder. Paths may
contain spaces: the readers (vidjax/data/sources.py) take the last fields as the numbers.

Labels index the label-name file `--labels` (default: `label_names.txt` beside the list),
one class name a line. When that file exists it is read and never rewritten, so the
lists of all splits share one label map: a class folder it does not name is an error, and
a class without a folder in this split leaves the other labels as they are. When it does
not exist, it is written from the sorted class folders (build the split that has every
class first).

Names that a list line cannot hold (not UTF-8, a line break, leading or trailing
whitespace) are left out with one warning line naming them. Both files are written
atomically: a failed run leaves existing files as they were.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from vidjax.data import prepare
from vidjax.data import sources

_SHOWN = 10   # skipped names printed in the warning


def _show(name: str) -> str:
  """repr of the name, or of its bytes when it is not UTF-8."""
  try:
    name.encode("utf-8")
    return repr(name)
  except UnicodeEncodeError:
    return repr(os.fsencode(name))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="folder with one sub-folder per class")
  parser.add_argument("--output", required=True, help="annotation list to write")
  parser.add_argument("--labels", default=None,
                      help="label-name file: read if it exists (never rewritten), else "
                           "written (default: label_names.txt beside --output)")
  parser.add_argument("--frames", action="store_true",
                      help="frame folders (`dir num_frames label` lines) instead of videos")
  args = parser.parse_args(argv)
  output = os.path.expanduser(args.output)
  labels_path = os.path.expanduser(args.labels) if args.labels else os.path.join(
      os.path.dirname(os.path.abspath(output)), "label_names.txt")
  labels_exist = os.path.exists(labels_path)
  try:
    names = sources.read_label_names(labels_path) if labels_exist else None
    lines, names, skipped = prepare.build_list(args.root, names, frames=args.frames,
                                               labels_path=labels_path)
  except (FileNotFoundError, ValueError) as e:  # AnnotationError is a ValueError
    print(f"error: {e}", file=sys.stderr)
    return 2
  if skipped:
    shown = ", ".join(_show(s) for s in skipped[:_SHOWN])
    more = f" and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    plural = "s" if len(skipped) > 1 else ""
    print(f"warning: left out {len(skipped)} name{plural} that a list line cannot hold (not "
          f"UTF-8, a line break, or leading/trailing whitespace; rename them to list them): "
          f"{shown}{more}", file=sys.stderr)
  kind = "frame folders" if args.frames else "videos"
  if not lines:
    what = "frame folders" if args.frames else f"videos ({', '.join(prepare.VIDEO_EXTENSIONS)})"
    print(f"error: no {what} under the class folders of {args.root}.", file=sys.stderr)
    return 2
  writes = [(output, lines)] if labels_exist else [(labels_path, names), (output, lines)]
  for path, text in writes:
    try:
      prepare.write_atomic(path, "\n".join(text) + "\n")
    except OSError as e:
      print(f"error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
      return 1
  labels_note = "read" if labels_exist else "written"
  print(f"{len(lines)} {kind} in {len(names)} classes -> {output} "
        f"(label names {labels_note}: {labels_path})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
