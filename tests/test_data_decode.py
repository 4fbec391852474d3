"""Real video files (4 containers/codecs) and frame folders: every sampler gets exactly
the frames it asks for; unreadable files raise DecodeError naming them."""

import os

import numpy as np
import pytest

import data_fixtures as fx
from vidjax.data import decode, sampling

NUM_FRAMES = 40


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  return {ext: fx.write_video(str(root / f"v.{ext}"), NUM_FRAMES, codec, pix_fmt)
          for ext, codec, pix_fmt in fx.FORMATS}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("frames")
  return {
      ("img_{:05d}.jpg", 1): fx.write_frame_folder(str(root / "a"), NUM_FRAMES),
      ("{:05d}.jpg", 0): fx.write_frame_folder(str(root / "b"), NUM_FRAMES, "{:05d}.jpg", 0),
  }


def _samplers():
  """(name, select(num_frames) -> indices) for every sampler and protocol."""
  rng = np.random.default_rng(0)
  seg = sampling.Sampler("segments", num_frames=8)
  dense = sampling.Sampler("dense", num_frames=8, frame_interval=2)
  return [
      ("segments/train", lambda n: seg.train(n, rng)),
      ("segments/test3", lambda n: seg.test(n, 3)),
      ("segments/twice",
       lambda n: sampling.Sampler("segments", 8, test_sampling="twice").test(n, 2)),
      ("segments/ten_clips", lambda n: sampling.Sampler("segments", 8,
                                                        test_sampling="ten_clips").test(n, 10)),
      ("dense/train", lambda n: dense.train(n, rng)),
      ("dense/test3", lambda n: dense.test(n, 3)),
      ("dense/train_long", lambda n: sampling.Sampler("dense", 4, 3).train(n, rng)),
      ("dense/short_loop", lambda n: sampling.Sampler("dense", 32, 2).train(n, rng)),
      ("dense/short_repeat", lambda n: sampling.Sampler(
          "dense", 32, 2, out_of_bound="repeat_last").test(n, 1)),
  ]


def _check(read, name):
  asked = []

  def select(n):
    assert n == NUM_FRAMES, f"{name}: frame count {n}"
    asked.append(np.asarray(sel(n)))
    return asked[-1]

  for label, sel in _samplers():
    frames = read(select)
    assert frames.dtype == np.uint8 and frames.shape[-3:] == (48, 64, 3)
    np.testing.assert_array_equal(fx.clip_indices(frames), asked[-1], err_msg=f"{name} {label}")


@pytest.mark.parametrize("ext", [f[0] for f in fx.FORMATS])
def test_video_samplers_get_their_frames(videos, ext):
  _check(lambda select: decode.decode_video(videos[ext], select), ext)
  # Without seeking (decode from the start) the frames are the same.
  frames = decode.decode_video(videos[ext], lambda n: np.array([[30, 33], [35, 39]]), seek=False)
  np.testing.assert_array_equal(fx.clip_indices(frames), [[30, 33], [35, 39]])


def test_video_bytes_and_reader_records(videos):
  with open(videos["mp4"], "rb") as f:
    data = f.read()
  frames = decode.Reader()({"video": data}, lambda n: np.arange(0, n, 5))
  np.testing.assert_array_equal(fx.clip_indices(frames), np.arange(0, NUM_FRAMES, 5))


@pytest.mark.parametrize("backend", ["cv2", "pil"])
def test_frame_folder_samplers_get_their_frames(folders, backend):
  for (tmpl, start), directory in folders.items():
    reader = decode.Reader(filename_tmpl=tmpl, start_index=start, jpeg_backend=backend)
    _check(lambda select: reader({"frame_dir": directory, "num_frames": NUM_FRAMES}, select),
           f"{tmpl} {backend}")


def _truncate(src, dst, fraction):
  with open(src, "rb") as f:
    data = f.read()
  with open(dst, "wb") as f:
    f.write(data[:int(len(data) * fraction)])
  return dst


def test_bad_videos_raise_decode_error_naming_the_file(videos, tmp_path):
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  junk = tmp_path / "junk.mp4"
  junk.write_bytes(np.random.default_rng(0).bytes(5000))
  truncated = _truncate(videos["mp4"], str(tmp_path / "trunc.mp4"), 0.5)
  truncated_mkv = _truncate(videos["mkv"], str(tmp_path / "trunc.mkv"), 0.3)
  cases = {str(tmp_path / "missing.mp4"): "no such file", str(empty): "empty",
           str(junk): "cannot open", truncated: "cannot open", truncated_mkv: "truncated"}
  for path, reason in cases.items():
    with pytest.raises(decode.DecodeError, match=reason) as e:
      # A truncated mkv keeps its early frames: ask for the last one.
      decode.decode_video(path, lambda n: np.array([n - 1, NUM_FRAMES - 1]))
    assert e.value.path == path


def test_bad_frame_folders_raise_decode_error(folders, tmp_path):
  src = folders[("img_{:05d}.jpg", 1)]
  bad = tmp_path / "bad"
  bad.mkdir()
  for i in range(1, 5):
    with open(os.path.join(src, f"img_{i:05d}.jpg"), "rb") as f:
      (bad / f"img_{i:05d}.jpg").write_bytes(f.read())
  _truncate(str(bad / "img_00002.jpg"), str(bad / "img_00002.jpg"), 0.6)
  (bad / "img_00003.jpg").write_bytes(b"")
  (bad / "img_00004.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
  reader = decode.Reader()
  for frame, reason in [(1, "truncated"), (2, "empty"), (3, "not a decodable"),
                        (7, "cannot read")]:
    for backend in ("cv2", "pil"):
      with pytest.raises(decode.DecodeError, match=reason):
        decode.Reader(jpeg_backend=backend)({"frame_dir": str(bad), "num_frames": 8},
                                            lambda n, f=frame: np.array([0, f]))
  with pytest.raises(decode.DecodeError, match="no such frame folder"):
    reader({"frame_dir": str(tmp_path / "nope"), "num_frames": 8}, lambda n: np.arange(2))
  with pytest.raises(decode.DecodeError, match="0 frames"):
    reader({"frame_dir": str(bad), "num_frames": 0}, lambda n: np.arange(2))
