"""Extracts the frames of every video under a folder into frame folders, in parallel.

    python scripts/extract_frames.py --src ~/data/sthv2/videos --out ~/data/sthv2/rawframes \
        [--short-side 256] [--tmpl img_{:05d}.jpg] [--start-index 1] [--processes 8] \
        [--list in_list.txt --out-list out_list.txt]

`SRC/a/b.mp4` becomes the folder `OUT/a/b/` of JPEG files `tmpl.format(i + start_index)`
(the TSM / MMAction2 rawframe layout). With `--list` (a `path label` video list relative
to SRC), `--out-list` gets the matching `dir num_frames label` frame list (written
atomically); otherwise every video under SRC is extracted. A progress bar with an ETA
goes to stderr. Videos that fail are listed on stderr and left out; the exit status is 1
if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from vidjax.data import prepare
from vidjax.data import sources


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--src", required=True, help="folder of videos")
  parser.add_argument("--out", required=True, help="folder for the frame folders")
  parser.add_argument("--short-side", type=int, default=0, help="resize (0: keep)")
  parser.add_argument("--tmpl", default="img_{:05d}.jpg")
  parser.add_argument("--start-index", type=int, default=1)
  parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
  parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--list", default=None, help="`path label` list of videos in SRC")
  parser.add_argument("--out-list", default=None, help="frame list to write (with --list)")
  args = parser.parse_args(argv)
  src = os.path.expanduser(args.src)
  if not os.path.isdir(src):
    print(f"error: --src {src} is not a directory.", file=sys.stderr)
    return 2
  labels = {}
  if args.list:
    try:
      entries = sources.parse_video_list(os.path.expanduser(args.list))
    except sources.AnnotationError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    labels = {path: label for path, (label,) in entries}
    videos = list(labels)
  else:
    videos = prepare.find_videos(src)
  out = os.path.expanduser(args.out)
  jobs = [(rel, dict(src=os.path.join(src, rel),
                     out_dir=os.path.join(out, os.path.splitext(rel)[0]),
                     short_side=args.short_side, tmpl=args.tmpl,
                     start_index=args.start_index, quality=args.quality))
          for rel in videos]
  results = prepare.run_jobs(prepare.extract_frames, jobs, args.processes, "extract")
  failed = [(rel, err) for rel, _, err in results if err]
  for rel, err in failed:
    print(f"failed: {rel}: {err}", file=sys.stderr)
  if args.out_list and labels:
    # `dir num_frames label`: the readers take the last two fields, so dirs may have spaces.
    dirs = [(os.path.splitext(rel)[0], n, labels[rel]) for rel, n, err in results if not err]
    for d, _, _ in dirs:
      if not sources.listable(d):
        print(f"warning: left out of --out-list: {d!r} ends in whitespace, which a list "
              "line cannot hold", file=sys.stderr)
    prepare.write_atomic(os.path.expanduser(args.out_list), "".join(
        f"{d} {n} {label}\n" for d, n, label in dirs if sources.listable(d)))
  print(f"{len(results) - len(failed)} of {len(results)} videos -> {out}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
