"""The embedded demo data set's audio form: generated sounds, as log-mel features.

Every example is generated from `(seed, split, index)` alone with numpy: a mono waveform
at 16 kHz, then MMAction2's log-mel features of it (vidjax/data/audio.py), so the demo
variants of the audio configs train on the features the real pipeline reads, with no
download. `write_video_files` writes the same sounds as the audio track of real mp4
files, for scripts/extract_audio_features.py and the tests of the real path.

Classes (`CLASS_NAMES`, label = `index % 6`, so every split is balanced), each a sound
event over most of the clip on a background of white noise (10-25 dB below it):

  0 `rising_chirp`   a tone sweeping up, 250-600 Hz to 2-4.5 kHz (log-linear in time),
  1 `falling_chirp`  the same sound played backwards (an exact time reversal),
  2 `low_hum`        a steady 100-250 Hz tone with its 2nd and 3rd harmonics,
  3 `high_whistle`   a steady 2.5-5 kHz tone with a slight vibrato,
  4 `beeps`          a 0.7-1.5 kHz tone switched on and off 3-6 times a second,
  5 `noise_burst`    white noise at the event's level.

Per example, independent of the label: the duration (2.5 to 3.5 s; its "video" has
`round(duration * FPS)` frames, the count an annotation list gives), the event's start and
end, its level and the background's. The chirp pair needs the order of the rows (a
pooled spectrum cannot tell them apart), the others only the spectrum.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from vidjax.data import audio, demo

CLASS_NAMES: tuple[str, ...] = (
    "rising_chirp", "falling_chirp", "low_hum", "high_whistle", "beeps", "noise_burst")
NUM_CLASSES: int = len(CLASS_NAMES)
REVERSAL_PAIRS: tuple[tuple[int, int], ...] = ((0, 1),)
FPS = 30                       # the nominal frame rate of the examples' videos
_DURATION_RANGE = (2.5, 3.5)   # seconds: 75..105 frames, more than a 64-frame clip
_SNR_DB_RANGE = (10.0, 25.0)
_FADE_S = 0.02                 # event fade in and out
_STREAM = 0xA0D10              # keeps these draws apart from the video demo's


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), demo.split_id(split), int(index), _STREAM])


def label_of(index: int) -> int:
  return int(index) % NUM_CLASSES


def _event(rng: np.random.Generator, label: int, t: np.ndarray) -> np.ndarray:
  """The class's sound at times `t` (seconds from the event's start), amplitude ~1."""
  length = max(float(t[-1]), 1e-3) if len(t) else 1e-3
  if label in (0, 1):   # the falling chirp is the rising one reversed (in make_wave)
    f0, f1 = rng.uniform(250.0, 600.0), rng.uniform(2000.0, 4500.0)
    ratio = f1 / f0
    phase = 2 * np.pi * f0 * length / np.log(ratio) * (ratio ** (t / length) - 1.0)
    return np.sin(phase)
  if label == 2:
    f = rng.uniform(100.0, 250.0)
    return sum(a * np.sin(2 * np.pi * k * f * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
  if label == 3:
    f, rate = rng.uniform(2500.0, 5000.0), rng.uniform(4.0, 6.0)
    vibrato = 0.02 * f / rate * np.sin(2 * np.pi * rate * t)   # +-2% of f
    return np.sin(2 * np.pi * f * t + vibrato)
  if label == 4:
    f, rate = rng.uniform(700.0, 1500.0), rng.uniform(3.0, 6.0)
    gate = (np.mod(t * rate, 1.0) < 0.5).astype(np.float64)
    return np.sin(2 * np.pi * f * t) * gate
  return rng.standard_normal(len(t))


def make_wave(index: int, *, seed: int, split: str,
              sample_rate: int = audio.SAMPLE_RATE) -> tuple[np.ndarray, int, int]:
  """One example's sound.

  Returns:
    (wave float32 [samples] at `sample_rate`, its video's frame count, label).
  """
  if index < 0:
    raise ValueError(f"index must be >= 0, got {index}.")
  label = label_of(index)
  rng = _rng(seed, split, index)
  duration = rng.uniform(*_DURATION_RANGE)
  n = int(round(duration * sample_rate))
  start = int(rng.uniform(0.0, 0.15) * n)
  end = n - int(rng.uniform(0.0, 0.15) * n)
  t = np.arange(end - start) / sample_rate
  event = _event(rng, label, t)
  fade = np.clip(np.minimum(t, t[::-1]) / _FADE_S, 0.0, 1.0) if len(t) else t
  level = rng.uniform(0.3, 1.0)
  wave = level * 10 ** (-rng.uniform(*_SNR_DB_RANGE) / 20) * rng.standard_normal(n)
  wave[start:end] += level * fade * event / max(1e-9, float(np.sqrt(np.mean(event ** 2))))
  if label == 1:
    wave = wave[::-1]
  return wave.astype(np.float32), int(round(duration * FPS)), label


def make_features(index: int, *, seed: int, split: str) -> tuple[np.ndarray, int, int]:
  """(float32 log-mel features [rows, 80], video frame count, label) of one example."""
  wave, frames, label = make_wave(index, seed=seed, split=split)
  return audio.log_mel(audio.normalize_rms(wave)), frames, label


class DemoAudioSource:
  """The audio demo data set as a grain random-access source (cheap to pickle)."""

  def __init__(self, *, split: str = "train", num_examples: int, seed: int = 0):
    if num_examples < 0:
      raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    demo.split_id(split)   # fail early on an empty name
    self.split, self.num_examples, self.seed = split, int(num_examples), int(seed)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """{"audio_features": float32 [rows, 80], "num_frames": int, "label": int32 [],
    "index": int32 []}."""
    index = int(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples.")
    features, frames, label = make_features(index, seed=self.seed, split=self.split)
    return {"audio_features": features, "num_frames": frames, "label": np.int32(label),
            "index": np.int32(index)}

  @property
  def labels(self) -> np.ndarray:
    return (np.arange(self.num_examples) % NUM_CLASSES).astype(np.int32)

  def __repr__(self) -> str:
    return (f"DemoAudioSource(split={self.split!r}, num_examples={self.num_examples}, "
            f"seed={self.seed})")


# ------------------------------------------------------------------------- video files
def write_av_file(path: str, frames: np.ndarray, fps: int, wave: Optional[np.ndarray],
                  sample_rate: int) -> None:
  """Writes an mp4 of uint8 RGB frames [T, H, W, 3] (even H and W) at `fps` with `wave`
  (mono float samples in [-1, 1] at `sample_rate`) as its AAC audio track (None: no
  audio stream)."""
  import av  # pylint: disable=g-import-not-at-top
  codec = demo._video_codec()  # pylint: disable=protected-access
  with av.open(path, mode="w") as container:
    video = container.add_stream(codec, rate=fps)
    video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    sound = None
    if wave is not None:
      sound = container.add_stream("aac", rate=sample_rate, layout="mono")
    for frame in frames:
      for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in video.encode():
      container.mux(packet)
    if sound is not None:
      samples = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)[None]
      frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                         layout="mono")
      frame.sample_rate, frame.pts = sample_rate, 0
      for packet in sound.encode(frame):
        container.mux(packet)
      for packet in sound.encode():
        container.mux(packet)


def write_video_files(directory: str, *, split: str, num_examples: int, seed: int,
                      image_size: int = 32, sample_rate: int = 44100) -> str:
  """Writes the audio demo split as mp4 files with the sounds as their audio track.

  Layout under `directory`: `{split}/{class_name}/{index:06d}.mp4` (the video demo's clip
  of the same index as pictures, at FPS frames per second, as many frames as the
  example's video has; the sound at `sample_rate`, peak-scaled to 0.5), the list
  `{split}_list.txt` of `path label` lines and `label_names.txt`. Returns the list's path.
  """
  directory = os.path.abspath(os.path.expanduser(directory))
  lines = []
  for index in range(num_examples):
    wave, frames, label = make_wave(index, seed=seed, split=split, sample_rate=sample_rate)
    clip, _ = demo.make_clip(index, seed=seed, split=split, num_frames=frames,
                             image_size=image_size)
    rel = f"{split}/{CLASS_NAMES[label]}/{index:06d}.mp4"
    os.makedirs(os.path.dirname(os.path.join(directory, rel)), exist_ok=True)
    write_av_file(os.path.join(directory, rel), clip, FPS,
                  0.5 * wave / max(1e-9, float(np.abs(wave).max())), sample_rate)
    lines.append(f"{rel} {label}\n")
  return demo.write_list_files(directory, split, lines, CLASS_NAMES)
