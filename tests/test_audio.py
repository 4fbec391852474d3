"""MMAction2's audio recognizer end to end: log-mel features from real mp4 audio tracks
(scripts/extract_audio_features.py, vidjax/data/audio.py), the clips MMAction2's
AudioFeatureSelector cuts from them, the grain pipelines over a feature list, one training
step of configs/audio_tsn_r18.py:smoke on those files, and its scores fused with an RGB
model's. Parity with the PyTorch reference: tests/test_parity.py (row audio_tsn_r18)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, load_config, subprocess_env
from vidjax import models
from vidjax.data import audio, decode, demo_audio, pipeline
from vidjax.train import eval_outputs, trainer

TONES = {"tone_500.mp4": 500.0, "tone_2500.mp4": 2500.0}
_SR = 44100            # the files' audio rate; the features resample to 16 kHz
_TONE_SECONDS = 1.5


def _run(*args):
  return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
  """Real mp4 files with AAC audio tracks (two pure tones, the six audio demo classes),
  one without an audio stream and one that is no video, through the script as a user
  runs it. Returns (videos dir, features dir, the script's process)."""
  root = tmp_path_factory.mktemp("audio")
  src, out = root / "videos", root / "features"
  demo_audio.write_video_files(str(src), split="val", num_examples=6, seed=0)
  black = np.zeros((int(_TONE_SECONDS * 30), 32, 32, 3), np.uint8)
  t = np.arange(int(_TONE_SECONDS * _SR)) / _SR
  lines = (src / "val_list.txt").read_text()
  for i, (name, hz) in enumerate(TONES.items()):
    demo_audio.write_av_file(str(src / name), black, 30, 0.5 * np.sin(2 * np.pi * hz * t), _SR)
    lines += f"{name} {i}\n"
  demo_audio.write_av_file(str(src / "silent.mp4"), black[:10], 30, None, _SR)
  (src / "broken.mp4").write_bytes(b"not a video")
  (src / "list.txt").write_text(lines + "silent.mp4 0\nbroken.mp4 1\n")
  proc = _run("scripts/extract_audio_features.py", "--src", src, "--out", out,
              "--list", src / "list.txt", "--out-list", out / "list.txt", "--processes", 2)
  return src, out, proc


def test_script_writes_a_feature_list_and_names_each_bad_file(extracted):
  src, out, proc = extracted
  assert proc.returncode == 1, proc.stderr   # two videos failed
  failed = [l for l in proc.stderr.splitlines() if l.startswith("failed: ")]
  assert len(failed) == 2
  assert "silent.mp4" in failed[1] and "has no audio stream" in failed[1]
  assert "broken.mp4" in failed[0]
  assert "audio features: 100%" in proc.stderr and "10/10" in proc.stderr   # progress, ETA
  assert "8 of 10 videos" in proc.stdout
  entries = {}
  for line in (out / "list.txt").read_text().splitlines():
    path, frames, label = line.rsplit(" ", 2)
    entries[path] = (int(frames), int(label))
  assert len(entries) == 8 and "silent.npy" not in entries
  for rel, label in (("tone_2500.npy", 1), ("val/beeps/000004.npy", 4)):
    video = str(src / rel.replace(".npy", ".mp4"))
    assert entries[rel] == (decode.video_num_frames(video), label)
    np.testing.assert_array_equal(np.load(out / rel), audio.video_features(video))
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]   # atomic writes
  # A second run keeps the files it finds (a stopped run resumes).
  stamp = os.stat(out / "tone_500.npy").st_mtime_ns
  again = _run("scripts/extract_audio_features.py", "--src", src, "--out", out,
               "--list", src / "list.txt", "--processes", 1)
  assert again.returncode == 1 and os.stat(out / "tone_500.npy").st_mtime_ns == stamp
  bad = _run("scripts/extract_audio_features.py", "--src", src / "none", "--out", out)
  assert bad.returncode == 2 and bad.stderr.startswith("error: --src ")
  bad = _run("scripts/extract_audio_features.py", "--src", src, "--out", out, "--out-list",
             out / "x.txt")
  assert bad.returncode == 2 and bad.stderr.startswith("error: --out-list needs --list")


def test_missing_features_say_how_to_make_them(tmp_path):
  config = load_config("audio_tsn_r18", "", **{"data.root": str(tmp_path)})
  with pytest.raises(pipeline.DataNotFoundError) as e:
    pipeline.num_eval_examples(config.data)
  message = str(e.value)
  assert "kinetics400_val_list_audio_features.txt" in message
  assert "scripts/extract_audio_features.py" in message
  assert "configs/audio_tsn_r18.py:demo" in message


@pytest.mark.parametrize("name", sorted(TONES))
def test_a_pure_tone_peaks_in_its_mel_bin(extracted, name):
  _, out, _ = extracted
  features = np.load(out / name.replace(".mp4", ".npy"))
  # One row per 256 samples at 16 kHz (AAC adds up to two frames of padding).
  expected = audio.num_stft_frames(int(_TONE_SECONDS * audio.SAMPLE_RATE))
  assert features.dtype == np.float32 and features.shape[1] == audio.NUM_MELS
  assert expected <= features.shape[0] <= expected + 9
  assert 0.0 <= features.min() and features.max() <= 1.0
  centres = audio.mel_centres()[1:-1]
  steady = features[10:-10].mean(axis=0)
  assert int(np.argmax(steady)) == int(np.argmin(np.abs(centres - TONES[name])))
  # Far from the tone the spectrum sits near the floor.
  far = np.abs(np.log(centres / TONES[name])) > 1.0
  assert steady[far].max() < steady.max() - 0.3


def test_lws_framing_rms_scale_and_mel_filters():
  rng = np.random.default_rng(0)
  for n in (16000, 16128, 300):   # a multiple of the hop, not one, shorter than a frame
    pad = audio.N_FFT - audio.HOP
    total = n + 2 * pad
    frames = (total - audio.N_FFT) // audio.HOP + (1 if total % audio.HOP == 0 else 2)
    assert audio.log_mel(rng.standard_normal(n)).shape == (frames, audio.NUM_MELS)
  wave = rng.standard_normal(8000)
  np.testing.assert_allclose(audio.log_mel(audio.normalize_rms(0.01 * wave)),
                             audio.log_mel(audio.normalize_rms(wave)), atol=1e-6)
  assert audio.log_mel(audio.normalize_rms(np.zeros(4000))).max() == 0.0   # silence: floor
  bank = audio.mel_filterbank()
  freqs = np.linspace(0, audio.SAMPLE_RATE / 2, audio.N_FFT // 2 + 1)
  edges = audio.mel_centres()
  wide = np.diff(edges)[1:] > 4 * freqs[1]   # filters spanning several FFT bins
  area = bank.sum(axis=1) * freqs[1]          # Slaney normalisation: unit area in Hz
  np.testing.assert_allclose(area[wide], 1.0, rtol=0.1)
  assert np.all(np.abs(freqs[bank.argmax(axis=1)] - edges[1:-1]) <= freqs[1])


def test_clips_are_mmaction2_feature_selector_rows():
  features = np.arange(208 * 3, dtype=np.float32).reshape(208, 3)   # row r holds 3r..3r+2
  frames = 100
  clip = np.arange(10, 74)                       # 64 video frames
  got = audio.select_rows(features, clip, frames, 128)
  start = int(round((clip[0] + 1) / frames * 208))
  assert got.shape == (128, 3)
  np.testing.assert_array_equal(got[:, 0] / 3, np.arange(start, start + 128))
  short = audio.select_rows(features, np.arange(10, 20), frames, 128)
  span = int(round(20 / frames * 208)) - int(round(11 / frames * 208))
  assert np.all(short[:span, 0] > 0) and np.all(short[span:] == 0)   # zero-padded
  wrapped = np.arange(90, 154) % frames          # a clip looped past the end: no span
  assert np.all(audio.select_rows(features, wrapped, frames, 128) == 0)
  views = audio.select_rows(features, np.stack([clip, clip + 20]), frames, 16)
  assert views.shape == (2, 16, 3) and views[1, 0, 0] > views[0, 0, 0]


def test_demo_sounds_are_features_and_chirps_run_both_ways():
  source = demo_audio.DemoAudioSource(split="train", num_examples=12, seed=0)
  assert source.labels.tolist() == [i % 6 for i in range(12)]
  centroid = {}
  for i in (0, 1, 6, 7):
    record = source[i]
    features = record["audio_features"]
    assert features.dtype == np.float32 and features.shape[1] == 80
    assert record["num_frames"] >= 64   # longer than the recipe's clip
    power = 10 ** (4 * features) - 1
    middle = power[len(power) // 4: 3 * len(power) // 4]
    track = (middle * np.arange(80)).sum(1) / middle.sum(1)
    centroid[i] = np.polyfit(np.arange(len(track)), track, 1)[0]
  assert centroid[0] > 0 and centroid[6] > 0 and centroid[1] < 0 and centroid[7] < 0


def test_audio_recognizer_shapes_and_input_checks():
  config = load_config("audio_tsn_r18", "", **{"model.num_classes": 5})
  model = models.build_model(config.model)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 128, 80)))
  assert variables["params"]["backbone"]["conv1"]["kernel"].shape == (7, 7, 1, 64)
  assert variables["params"]["head"]["fc"]["kernel"].shape == (512, 5)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, jnp.zeros((3, 64, 80)))
  assert out.shape == (3, 5)
  with pytest.raises(ValueError, match=r"log-mel features \[B, T, F\]"):
    jax.eval_shape(lambda v, x: model.apply(v, x), variables, jnp.zeros((1, 2, 32, 32, 3)))
  config.model.backbone.in_channels = 3
  with pytest.raises(ValueError, match="model.backbone.in_channels=3"):
    models.build_model(config.model)
  rgb = models.build_model(load_config("tsn_r50", "smoke", **{
      "model.backbone.in_channels": 1}).model)
  with pytest.raises(ValueError, match=r"in_channels=1 \(model.backbone.in_channels\)"):
    jax.eval_shape(rgb.init, jax.random.key(0), jnp.zeros((1, 2, 32, 32, 3), jnp.uint8))


@pytest.fixture(scope="module")
def trained(extracted, tmp_path_factory):
  """configs/audio_tsn_r18.py:smoke on the extracted files, one step (a narrow trunk:
  compiling is most of the cost), evaluated on the same list."""
  _, out, _ = extracted
  workdir = str(tmp_path_factory.mktemp("audio_run"))
  config = load_config("audio_tsn_r18", "smoke", **{
      "data.root": str(out), "data.train_list": "list.txt", "data.eval_list": "list.txt",
      "total_steps": 1, "batch_size": 4, "eval.batch_size": 4,
      "model.backbone.base_channels": 8})
  results = trainer.run(config, workdir)
  return config, workdir, results


@pytest.mark.slow   # the `trained` fixture: one trainer.run (compiles)
def test_pipelines_read_feature_clips(trained):
  config, _, _ = trained
  d = config.data
  assert d.format == "audio_features" and config.model.num_classes == 6
  batch = next(pipeline.train_iterator(d, 4, seed=0))
  assert batch["clip"].shape == (4, d.audio_length, 80) and batch["clip"].dtype == np.float32
  assert batch["clip"].max() > 0.3   # real rows, not padding
  batch = next(iter(pipeline.eval_iterator(d, 3, num_views=1)))
  assert batch["clip"].shape == (3, d.audio_length, 80)
  d2 = d.copy_and_resolve_references()
  d2.test_clips = 2
  views = next(iter(pipeline.eval_iterator(d2, 3, num_views=2)))
  assert views["clip"].shape == (3, 2, d.audio_length, 80)


@pytest.mark.slow   # the `trained` fixture: one trainer.run (compiles)
def test_feature_file_with_other_mel_bins_is_skipped_with_one_warning(trained, tmp_path,
                                                                        caplog):
  config, _, _ = trained
  d = config.data.copy_and_resolve_references()
  np.save(tmp_path / "odd.npy", np.zeros((200, 64), np.float32))
  (tmp_path / "list.txt").write_text(f"{tmp_path / 'odd.npy'} 90 0\n" + "".join(
      f"{os.path.join(d.root, l)}\n" for l in open(os.path.join(d.root, "list.txt"))
      .read().splitlines()))
  d.update(root="", train_list=str(tmp_path / "list.txt"))
  iterator = pipeline.train_iterator(d, 8, seed=0)
  next(iterator), next(iterator)   # 16 examples: every one of the 9 files read
  assert iterator.skipped_files == 1
  warned = [r.getMessage() for r in caplog.records if "odd.npy" in r.getMessage()]
  assert len(warned) == 1 and "has 64 mel bins per row; expected 80" in warned[0]


@pytest.mark.slow   # the `trained` fixture: one trainer.run (compiles)
def test_one_training_step_and_fusion_with_rgb_scores(trained, tmp_path):
  config, workdir, results = trained
  assert np.isfinite(results["eval/loss"]) and results["eval/skipped_files"] == 0
  (path,) = [os.path.join(workdir, "eval", f) for f in os.listdir(os.path.join(workdir, "eval"))
             if f.endswith(eval_outputs.SCORES_SUFFIX)]
  scores = eval_outputs.load_scores(path)
  files, labels = scores["files"].tolist(), scores["labels"]
  assert len(files) == 8 and all(f.endswith(".npy") for f in files)
  # An RGB model's scores of the same videos (the .mp4 names, another order), sure of
  # every label: fused with weight 2 they decide.
  order = np.random.default_rng(0).permutation(len(files))
  rgb = np.eye(config.model.num_classes, dtype=np.float32)[labels[order]]
  eval_outputs.save_scores(str(tmp_path / "rgb_scores.npz"),
                           files=[files[i][:-4] + ".mp4" for i in order],
                           labels=labels[order], scores=rgb)
  proc = _run("scripts/fuse_scores.py", path, tmp_path / "rgb_scores.npz", "--weights", 1, 2,
              "--output", tmp_path / "fused.npz")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[-1].startswith("fused: top1=1.0000")
  with np.load(tmp_path / "fused.npz") as z:
    assert z["files"].tolist() == files
    np.testing.assert_allclose(z["scores"], scores["scores"] + 2 * np.eye(
        config.model.num_classes)[labels], rtol=1e-6, atol=1e-6)
  # Videos that the other file lacks are still an error naming it.
  eval_outputs.save_scores(str(tmp_path / "short.npz"), files=[f[:-4] + ".mp4" for f in files[1:]],
                           labels=labels[1:], scores=rgb[1:])
  proc = _run("scripts/fuse_scores.py", path, tmp_path / "short.npz")
  assert proc.returncode == 2 and "short.npz covers other videos" in proc.stderr
