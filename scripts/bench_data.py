"""Data-loading throughput: the grain pipelines vs a plain single-process loop.

    python scripts/bench_data.py [--workers 0,1,2,4] [--num-videos 12] [--batches 8]
        [--list LIST --root ROOT]   # real mp4 files instead of generated ones

Two clip recipes, each read from mp4 files and from JPEG frame folders:
  segments 8x224: TSN, 8 segments, one random frame each;
  dense 32x2:     32 frames 2 apart at a random start (MMAction2 SampleFrames 32x2x1);
both followed by the training transforms (short side 256, TSN multi-scale crop to 224,
flip). The baseline is a plain single-process loop doing the same work the usual naive
way: PyAV decodes from the first frame to the last one needed, converting every frame to
RGB (PIL opens each needed JPEG for frame folders), then the same sampling and crops.
"vidjax reader, loop" runs vidjax's reader and transforms in the same plain loop (the
decoding gain alone). The pipeline runs with 0 (in the main process, `data.num_threads`
reader threads) to N
worker processes. The table gives clips per second after a warm-up that drains the
prefetch buffers; the load average before and after is printed, since the machine may be
shared.

Generated data (cached in --cache): 340x256 videos (the usual 256 short side), 30 fps,
`--frames` frames, x264 `veryfast` crf 23 with its default GOP (keyframe every 250
frames), a moving smooth texture with noise; frame folders are those videos extracted to
JPEG (quality 95, scripts/extract_frames.py's default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax import config_defaults  # pylint: disable=g-import-not-at-top,wrong-import-position
from vidjax.data import pipeline, prepare  # pylint: disable=wrong-import-position
from vidjax.data import sampling, transforms  # pylint: disable=wrong-import-position

RECIPES = {
    "segments 8x224": dict(sampler="segments", num_frames=8, frame_interval=1),
    "dense 32x2": dict(sampler="dense", num_frames=32, frame_interval=2),
}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def generate(cache: str, num_videos: int, num_frames: int, height: int = 256,
             width: int = 340) -> tuple[str, str]:
  """Writes (once) mp4 files and their frame folders; returns the two list files."""
  import av  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(cache, "videos"), exist_ok=True)
  video_list = os.path.join(cache, "videos.txt")
  frame_list = os.path.join(cache, "frames.txt")
  tag = os.path.join(cache, f"done_{num_videos}_{num_frames}")
  if os.path.exists(tag):
    return video_list, frame_list
  rng = np.random.default_rng(0)
  vlines, flines = [], []
  for i in range(num_videos):
    tex = _texture(rng, 2 * height, 2 * width)
    path = os.path.join(cache, "videos", f"v{i:03d}.mp4")
    with av.open(path, mode="w") as container:
      stream = container.add_stream("libx264", rate=30)
      stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
      stream.options = {"crf": "23", "preset": "veryfast"}
      for t in range(num_frames):
        y = int(height / 2 * (1 + np.sin(t / 40 + i)))
        x = int(width / 2 * (1 + np.cos(t / 55 + i)))
        frame = tex[y:y + height, x:x + width].astype(np.int16)
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    n = prepare.extract_frames(path, os.path.join(cache, "frames", f"v{i:03d}"))
    vlines.append(f"videos/v{i:03d}.mp4 {i % 4}")
    flines.append(f"frames/v{i:03d} {n} {i % 4}")
  with open(video_list, "w") as f:
    f.write("\n".join(vlines) + "\n")
  with open(frame_list, "w") as f:
    f.write("\n".join(flines) + "\n")
  open(tag, "w").close()
  return video_list, frame_list


def _data_config(fmt: str, list_file: str, root: str, recipe: dict, workers: int):
  return config_defaults.data_config(
      name="bench", format=fmt, root=root, train_list=list_file, eval_list=list_file,
      num_classes=4, image_size=224, num_workers=workers, num_threads=2, prefetch=2,
      **recipe)


def bench_pipeline(data, batch: int, batches: int) -> float:
  it = pipeline.train_iterator(data, batch, seed=0)
  # Warm-up: worker start, and as many batches as the prefetch buffers hold, so that the
  # timed batches are produced at the steady rate rather than taken from full buffers.
  for _ in range(1 + max(1, data.num_workers) * data.prefetch):
    next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  dt = time.perf_counter() - t
  it.close()
  return batch * batches / dt


def _naive_video(path: str, select, rng) -> np.ndarray:
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    stream = container.streams.video[0]
    idx = select(stream.frames, rng)
    frames = []
    for frame in container.decode(stream):
      frames.append(frame.to_ndarray(format="rgb24"))
      if len(frames) > idx.max():
        break
  return np.stack([frames[i] for i in idx])


def _naive_frames(directory: str, n: int, select, rng) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  idx = select(n, rng)
  out = []
  for i in idx:
    with Image.open(os.path.join(directory, f"img_{i + 1:05d}.jpg")) as im:
      out.append(np.asarray(im.convert("RGB")))
  return np.stack(out)


def bench_naive(fmt: str, list_file: str, root: str, recipe: dict, clips: int) -> float:
  sampler = sampling.Sampler(recipe["sampler"], recipe["num_frames"], recipe["frame_interval"])
  transform = transforms.ClipTransform(image_size=224)
  with open(list_file) as f:
    entries = [line.split() for line in f if line.strip()]
  rng = np.random.default_rng(0)
  select = lambda n, r: sampler.train(n, r)
  t = time.perf_counter()
  for k in range(clips):
    e = entries[k % len(entries)]
    if fmt == "videos":
      clip = _naive_video(os.path.join(root, e[0]), select, rng)
    else:
      clip = _naive_frames(os.path.join(root, e[0]), int(e[1]), select, rng)
    transform.train(clip, 0, rng)
  return clips / (time.perf_counter() - t)


def bench_direct(fmt: str, list_file: str, root: str, recipe: dict, clips: int) -> float:
  """vidjax's reader and transforms in a plain loop: the decoding gain without grain."""
  data = _data_config(fmt, list_file, root, recipe, 0)
  source = pipeline._source(data, "train")  # pylint: disable=protected-access
  # pylint: disable=protected-access
  reader, sampler = pipeline.make_reader(data), pipeline.make_sampler(data)
  transform = transforms.from_config(data)
  rng = np.random.default_rng(0)
  t = time.perf_counter()
  for k in range(clips):
    record = source[k % len(source)]
    clip = reader(record, lambda n: sampler.train(n, rng))
    transform.train(clip, record["label"], rng)
  return clips / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
  parser.add_argument("--num-videos", type=int, default=12)
  parser.add_argument("--frames", type=int, default=300, help="frames per generated video")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--batches", type=int, default=8, help="timed batches per cell")
  parser.add_argument("--cache", default="/tmp/vidjax_bench_data")
  parser.add_argument("--list", default=None, help="a `path label` list of real mp4 files")
  parser.add_argument("--root", default="", help="root of --list")
  parser.add_argument("--json", default=None, help="also write the cells as JSON lines")
  args = parser.parse_args(argv)
  workers = [int(w) for w in args.workers.split(",")]
  load0 = os.getloadavg()
  if args.list:
    kinds = {"mp4": ("videos", args.list, args.root)}
  else:
    t = time.perf_counter()
    vlist, flist = generate(args.cache, args.num_videos, args.frames)
    print(f"data: {args.num_videos} videos of {args.frames} frames 340x256 in {args.cache} "
          f"({time.perf_counter() - t:.1f} s)", flush=True)
    kinds = {"mp4": ("videos", vlist, args.cache), "frames": ("frames", flist, args.cache)}
  print(f"{os.cpu_count()} CPUs; load average before: "
        + " ".join(f"{x:.2f}" for x in load0), flush=True)
  rows = []
  for recipe_name, recipe in RECIPES.items():
    for kind, (fmt, list_file, root) in kinds.items():
      clips = args.batch * args.batches
      row = {"recipe": recipe_name, "data": kind,
             "plain loop": bench_naive(fmt, list_file, root, recipe, clips),
             "vidjax reader, loop": bench_direct(fmt, list_file, root, recipe, clips)}
      for w in workers:
        data = _data_config(fmt, list_file, root, recipe, w)
        row[f"{w} workers"] = bench_pipeline(data, args.batch, args.batches)
      rows.append(row)
      print("  " + ", ".join(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}"
                             for k, v in row.items()), flush=True)
  load1 = os.getloadavg()
  cols = ["plain loop", "vidjax reader, loop"] + [f"{w} workers" for w in workers]
  print(f"\nclips/s (batch {args.batch}, {args.batches} timed batches; load average "
        f"{load0[0]:.2f} before, {load1[0]:.2f} after)\n")
  print("| recipe | data | " + " | ".join(cols) + " |")
  print("|---|---|" + "---:|" * len(cols))
  for r in rows:
    print(f"| {r['recipe']} | {r['data']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
  if args.json:
    with open(args.json, "w") as f:
      for r in rows:
        f.write(json.dumps(dict(r, load_before=load0[0], load_after=load1[0])) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
