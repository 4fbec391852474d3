"""Audio features: MMAction2's log-mel spectrograms, made from a video's audio track, and
the clips of them that its audio recognizers read.

Features (MMAction2's tools/data/build_audio_features.py, `AudioTools(fft_size=512,
hop_size=256)`, its `lws` spectrogram): the audio decoded to mono at 16 kHz, scaled to an
RMS of 0.1; a short-time Fourier transform with frames of 512 samples (32 ms) every 256
(16 ms), the `lws` package's framing (the signal padded with 512 - 256 zeros on both sides,
frames running past the end padded with zeros) and its window (the square root of a
half-sample-offset Hann window, scaled by sqrt(2 * hop / n_fft)); the magnitude; 80 mel
filters between 125 and 7600 Hz (librosa's default Slaney mel scale and area
normalisation); `20 log10(max(1e-5, x)) - 20` dB, then `(dB + 100) / 100` clipped to
[0, 1]. Stored as float32 [rows, 80] `.npy` files, one row every 16 ms.

Clips (MMAction2's `SampleFrames` + `AudioFeatureSelector`): the annotation list gives
each feature file with its video's frame count; the sampler picks `clip_len` video
frames, and the clip is the feature rows from `round((first + 1) / frames * rows)` to
`round((last + 1) / frames * rows)`, truncated or zero-padded to `fixed_length` rows
(128 upstream: 64 video frames at 30 fps cover about 133 rows).
"""

from __future__ import annotations

import functools
import io
import os
from typing import Callable, Union

import numpy as np

from vidjax.data import decode, prepare
from vidjax.data.decode import DecodeError

SAMPLE_RATE = 16000
N_FFT = 512           # 32 ms frames
HOP = 256             # 16 ms apart
NUM_MELS = 80
FMIN, FMAX = 125.0, 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
TARGET_RMS = 0.1      # the decoded samples are scaled to this RMS (floor 1e-4)
FIXED_LENGTH = 128    # AudioFeatureSelector's rows per clip
FEATURE_SUFFIX = ".npy"

FeatureInput = Union[str, np.ndarray]


# ------------------------------------------------------------------------- mel scale
def hz_to_mel(hz: np.ndarray) -> np.ndarray:
  """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
  hz = np.asarray(hz, np.float64)
  f_sp, min_log_hz = 200.0 / 3.0, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  linear = hz / f_sp
  log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
  return np.where(hz >= min_log_hz, log, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
  """The inverse of `hz_to_mel`."""
  mel = np.asarray(mel, np.float64)
  f_sp, min_log_hz = 200.0 / 3.0, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  linear = f_sp * mel
  log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
  return np.where(mel >= min_log_mel, log, linear)


def mel_centres(num_mels: int = NUM_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
  """float64 [num_mels + 2]: the filters' edge and centre frequencies in Hz; filter i
  rises from entry i to its peak at entry i + 1 and falls to entry i + 2."""
  return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, num_mels: int = NUM_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
  """float64 [num_mels, n_fft // 2 + 1]: triangular filters on the Slaney mel scale, each
  scaled to unit area over its band (2 / bandwidth), as librosa's `filters.mel`."""
  if not 0 <= fmin < fmax <= sample_rate / 2:
    raise ValueError(f"mel filters need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, "
                     f"fmax={fmax}, sample_rate={sample_rate}.")
  freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
  edges = mel_centres(num_mels, fmin, fmax)
  widths = np.diff(edges)
  ramps = edges[:, None] - freqs[None, :]
  rising = -ramps[:-2] / widths[:-1, None]
  falling = ramps[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(rising, falling))
  weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
  weights.setflags(write=False)
  return weights


# ------------------------------------------------------------------------- spectrogram
@functools.lru_cache(maxsize=8)
def analysis_window(n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
  """float64 [n_fft]: lws's default analysis window, sqrt(Hann(k + 1/2) * 2 hop / n_fft)."""
  k = np.arange(n_fft)
  hann = 0.5 * (1.0 - np.cos(2.0 * np.pi * (2 * k + 1) / (2 * n_fft)))
  window = np.sqrt(hann * 2.0 * hop / n_fft)
  window.setflags(write=False)
  return window


def num_stft_frames(num_samples: int, n_fft: int = N_FFT, hop: int = HOP) -> int:
  """Frames of `stft_magnitude` for a signal of `num_samples` (lws's count)."""
  padded = num_samples + 2 * (n_fft - hop)
  full = (padded - n_fft) // hop
  return max(1, full + (1 if padded % hop == 0 else 2))


def stft_magnitude(wave: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
  """float64 [frames, n_fft // 2 + 1]: |STFT| of a mono signal with lws's framing."""
  if n_fft % hop:
    raise ValueError(f"the hop ({hop}) must divide n_fft ({n_fft}), as lws requires.")
  wave = np.asarray(wave, np.float64).reshape(-1)
  frames = num_stft_frames(len(wave), n_fft, hop)
  pad = n_fft - hop
  padded = np.zeros((frames - 1) * hop + n_fft, np.float64)
  padded[pad:pad + len(wave)] = wave
  starts = np.arange(frames) * hop
  segments = padded[starts[:, None] + np.arange(n_fft)[None, :]]
  return np.abs(np.fft.rfft(segments * analysis_window(n_fft, hop), n=n_fft, axis=-1))


def normalize_rms(wave: np.ndarray, target: float = TARGET_RMS, floor: float = 1e-4) -> np.ndarray:
  """The samples scaled to RMS `target` (a near-silent signal by at most target / floor)."""
  wave = np.asarray(wave, np.float64)
  rms = max(floor, float(np.sqrt(np.mean(wave * wave)))) if wave.size else floor
  return wave * (target / rms)


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
            hop: int = HOP, num_mels: int = NUM_MELS, fmin: float = FMIN,
            fmax: float = FMAX) -> np.ndarray:
  """MMAction2's audio feature of a mono signal at `sample_rate` (already RMS-normalised).

  Returns:
    float32 [frames, num_mels] in [0, 1]; frames = `num_stft_frames(len(wave))`.
  """
  mel = stft_magnitude(wave, n_fft, hop) @ mel_filterbank(sample_rate, n_fft, num_mels,
                                                          fmin, fmax).T
  db = 20.0 * np.log10(np.maximum(10.0 ** (MIN_LEVEL_DB / 20.0), mel)) - REF_LEVEL_DB
  return np.clip((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------- video files
def decode_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """float32 [samples]: the first audio stream of a media file, mixed down to mono and
  resampled to `sample_rate` by FFmpeg (PyAV).

  Raises:
    DecodeError: missing or empty file, no audio stream, no samples, undecodable.
  """
  import av  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise DecodeError(path, "no such file")
  if os.path.getsize(path) == 0:
    raise DecodeError(path, "empty file")
  try:
    container = av.open(path, mode="r")
  except (av.FFmpegError, OSError, ValueError) as e:
    raise DecodeError(path, f"cannot open as a media file ({e})") from e
  chunks = []
  try:
    if not container.streams.audio:
      raise DecodeError(path, "has no audio stream")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    for frame in container.decode(container.streams.audio[0]):
      chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  except av.FFmpegError as e:
    raise DecodeError(path, f"decoding the audio failed ({e})") from e
  finally:
    container.close()
  wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
  if wave.size == 0:
    raise DecodeError(path, "its audio stream holds no samples")
  return wave


def video_features(path: str, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                   hop: int = HOP, num_mels: int = NUM_MELS) -> np.ndarray:
  """float32 [frames, num_mels]: the log-mel features of a video's audio track."""
  wave = normalize_rms(decode_audio(path, sample_rate))
  return log_mel(wave, sample_rate, n_fft, hop, num_mels)


def save_features(path: str, features: np.ndarray) -> None:
  """Writes float32 features as a `.npy` file, atomically."""
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(features, np.float32), allow_pickle=False)
  prepare.write_atomic(path, buffer.getvalue())


def extract_to_file(src: str, dst: str, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                    hop: int = HOP, num_mels: int = NUM_MELS, overwrite: bool = False) -> int:
  """Writes the features of video `src` to `dst` (skipped when it exists, unless
  `overwrite`); returns the video's frame count, the number its list line needs."""
  import av  # pylint: disable=g-import-not-at-top
  try:
    with av.open(src) as container:
      has_video = bool(container.streams.video)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise DecodeError(src, f"cannot open as a media file ({e})") from e
  if not has_video:
    raise DecodeError(src, "has no video stream (the feature list gives each video's frame "
                      "count)")
  frames = decode.video_num_frames(src)
  if overwrite or not os.path.exists(dst):
    save_features(dst, video_features(src, sample_rate, n_fft, hop, num_mels))
  return frames


# ------------------------------------------------------------------------- clips
def select_rows(features: np.ndarray, indices: np.ndarray, num_frames: int,
                fixed_length: int = FIXED_LENGTH) -> np.ndarray:
  """MMAction2's AudioFeatureSelector: the rows of each clip of video frames.

  Args:
    features: [rows, F] of one video.
    indices: int [..., clip_len] sampled video frame indices; only each clip's first and
      last frame count (a clip that wrapped around the end gives an empty span: zeros).
    num_frames: the video's frame count (the list's).
    fixed_length: rows per clip; longer spans are truncated, shorter ones zero-padded.

  Returns:
    float32 [..., fixed_length, F].
  """
  features = np.asarray(features, np.float32)
  indices = np.asarray(indices, np.int64)
  rows = features.shape[0]
  flat = indices.reshape(-1, indices.shape[-1])
  out = np.zeros((len(flat), fixed_length, features.shape[1]), np.float32)
  for k, clip in enumerate(flat):
    # np.rint rounds half to even, as Python's round() upstream.
    start = max(0, int(np.rint((clip[0] + 1) / num_frames * rows)))
    end = min(rows, int(np.rint((clip[-1] + 1) / num_frames * rows)))
    span = features[start:max(start, end)][:fixed_length]
    out[k, :len(span)] = span
  return out.reshape(indices.shape[:-1] + out.shape[1:])


def load_features(src: FeatureInput, num_bins: int = 0) -> np.ndarray:
  """float32 [rows, F] of a `.npy` feature file (or an array); `num_bins` > 0 checks F.

  Raises:
    DecodeError: missing or unreadable file, not a 2-D float array with rows, another F.
  """
  name = src if isinstance(src, str) else "<features in memory>"
  if isinstance(src, str):
    if not os.path.exists(src):
      raise DecodeError(name, "no such feature file")
    try:
      features = np.load(src, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
      raise DecodeError(name, f"not a readable .npy feature file ({e})") from e
  else:
    features = src
  if not isinstance(features, np.ndarray) or features.ndim != 2 or features.shape[0] < 1 or \
      not np.issubdtype(features.dtype, np.floating):
    what = (f"a {features.dtype} array of shape {features.shape}"
            if isinstance(features, np.ndarray) else type(features).__name__)
    raise DecodeError(name, f"holds {what}; expected float features [rows, mel bins] "
                      "(scripts/extract_audio_features.py)")
  if num_bins and features.shape[1] != num_bins:
    raise DecodeError(name, f"has {features.shape[1]} mel bins per row; expected {num_bins} "
                      "(data.audio_bins)")
  return features.astype(np.float32, copy=False)


def read_clips(src: FeatureInput, num_frames: int, select: Callable[[int], np.ndarray], *,
               fixed_length: int = FIXED_LENGTH, num_bins: int = 0) -> np.ndarray:
  """float32 [..., fixed_length, F]: the clips `select(num_frames)` picks (video frame
  indices [..., clip_len]) of one feature file."""
  name = src if isinstance(src, str) else "<features in memory>"
  if num_frames < 1:
    raise DecodeError(name, f"the list gives {num_frames} video frames")
  features = load_features(src, num_bins)
  return select_rows(features, select(num_frames), num_frames, fixed_length)
