"""Turns the audio track of videos into the log-mel features of MMAction2's audio models.

    python scripts/extract_audio_features.py --src ~/data/kinetics400 \
        --list ~/data/kinetics400/kinetics400_val_list_videos.txt \
        --out ~/data/kinetics400/audio_features \
        --out-list ~/data/kinetics400/audio_features/kinetics400_val_list_audio_features.txt \
        [--processes 8] [--overwrite] [--n-fft 512] [--hop 256] [--num-mels 80]

`SRC/a/b.mp4` becomes `OUT/a/b.npy`, float32 [rows, 80]: one row every 16 ms of the audio
mixed down to mono at 16 kHz and scaled to an RMS of 0.1, 80 mel bins (125 Hz to 7.6 kHz)
of 512-sample frames, in dB mapped to [0, 1] (MMAction2's tools/data/build_audio_features.py
with its settings; details in vidjax/data/audio.py). With `--list` (a `path label` video
list relative to SRC) only those videos are read, and `--out-list` gets the matching
feature list, `a/b.npy NUM_FRAMES LABEL` with each video's frame count (MMAction2's audio
feature list, `data.format=audio_features`); without it every video under SRC is read.
Feature paths mirror the video paths, so an audio model's per-video scores fuse with an RGB
model's (scripts/fuse_scores.py).

Existing feature files are kept (a stopped run resumes) unless `--overwrite`; each file is
written atomically. A progress bar with an ETA goes to stderr. A video that fails (no
audio stream, unreadable) gets one line `failed: PATH: why` on stderr and is left out of
the list; the exit status is then 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from vidjax.data import audio
from vidjax.data import prepare
from vidjax.data import sources


def _error(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return 2


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--src", required=True, help="folder of videos (the list's root)")
  parser.add_argument("--out", required=True, help="folder for the feature files")
  parser.add_argument("--list", default=None, help="`path label` list of videos in SRC")
  parser.add_argument("--out-list", default=None, help="feature list to write (with --list)")
  parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--overwrite", action="store_true", help="recompute existing files")
  parser.add_argument("--sample-rate", type=int, default=audio.SAMPLE_RATE)
  parser.add_argument("--n-fft", type=int, default=audio.N_FFT, help="samples per frame")
  parser.add_argument("--hop", type=int, default=audio.HOP, help="samples between frames")
  parser.add_argument("--num-mels", type=int, default=audio.NUM_MELS)
  args = parser.parse_args(argv)
  src = os.path.expanduser(args.src)
  if not os.path.isdir(src):
    return _error(f"--src {src} is not a directory.")
  if args.out_list and not args.list:
    return _error("--out-list needs --list (the labels); make one from class folders with "
                  "scripts/build_file_list.py.")
  if args.n_fft % args.hop or args.hop < 1:
    return _error(f"--hop {args.hop} must divide --n-fft {args.n_fft}.")
  if not 0 < audio.FMAX <= args.sample_rate / 2:
    return _error(f"--sample-rate {args.sample_rate} is below twice the top mel frequency "
                  f"({audio.FMAX:g} Hz).")
  labels = {}
  if args.list:
    try:
      entries = sources.parse_video_list(os.path.expanduser(args.list))
    except sources.AnnotationError as e:
      return _error(str(e))
    labels = {path: label for path, (label,) in entries}
    videos = list(labels)
  else:
    videos = prepare.find_videos(src)
  if not videos:
    return _error(f"no videos ({', '.join(prepare.VIDEO_EXTENSIONS)}) under {src}.")
  out = os.path.expanduser(args.out)
  features = {rel: os.path.splitext(rel)[0] + audio.FEATURE_SUFFIX for rel in videos}
  settings = dict(sample_rate=args.sample_rate, n_fft=args.n_fft, hop=args.hop,
                  num_mels=args.num_mels, overwrite=args.overwrite)
  jobs = [(rel, dict(src=os.path.join(src, rel), dst=os.path.join(out, features[rel]),
                     **settings)) for rel in videos]
  results = prepare.run_jobs(audio.extract_to_file, jobs, args.processes, "audio features")
  failed = [(rel, err) for rel, _, err in results if err]
  for rel, err in failed:
    print(f"failed: {rel}: {err}", file=sys.stderr)
  if args.out_list:
    done = [(features[rel], n, labels[rel]) for rel, n, err in results if not err]
    for path, _, _ in done:
      if not sources.listable(path):
        print(f"warning: left out of --out-list: {path!r} ends in whitespace, which a list "
              "line cannot hold", file=sys.stderr)
    prepare.write_atomic(os.path.expanduser(args.out_list), "".join(
        f"{path} {n} {label}\n" for path, n, label in done if sources.listable(path)))
  print(f"{len(results) - len(failed)} of {len(results)} videos -> {out}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
