r"""Audio TSN-ResNet-18 (MMAction2's tsn_r18_64x1x1_100e_kinetics400_audio_feature), Kinetics-400
audio: log-mel features of the videos' sound.

Parts: recognizer_audio (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py) with one input channel, head audio_tsn
(vidjax/models/heads/audio_tsn.py). Recipe: `build_audio` in vidjax/recipes/mmaction2.py;
data set k400_audio (vidjax/recipes/datasets.py), eval protocol mmaction2_val
(vidjax/recipes/protocols.py); features and clips: vidjax/data/audio.py.

Model (reference/mmaction2_cost.md sections 9, 10, 17): the features [B, T, F] (T rows of
16 ms, F = 80 mel bins, values in [0, 1], not normalised) become one-channel images
[B, T, F, 1] for MMAction2's 2D ResNet-18 (conv1 7x7/2 with 1 input channel, max-pool,
four stages of BasicBlocks), then AudioTSNHead: global average pool, dropout 0.5, fc
512 -> 400. Data: `path num_frames label` lists of `.npy` features; a clip is 64
consecutive video frames (a random start in training, the centred one at test) read as
the 128 feature rows they span (zero-padded when shorter). Recipe: SGD momentum 0.9, lr
0.1 for batch 2560, weight decay 1e-4 on every parameter, gradient clipping at norm 40,
cosine to 0 over 100 epochs, from scratch. Eval: 1 centred clip, softmax.

Prepare the features (MMAction2's extraction parameters: 16 kHz mono, 512-sample frames
every 256, 80 mel bins from 125 Hz to 7.6 kHz, dB scaled to [0, 1]), one list per split:
  python scripts/extract_audio_features.py --src ~/data/kinetics400 \
      --list ~/data/kinetics400/kinetics400_train_list_videos.txt \
      --out ~/data/kinetics400/audio_features \
      --out-list ~/data/kinetics400/audio_features/kinetics400_train_list_audio_features.txt
  (the same with the val list and kinetics400_val_list_audio_features.txt), then
  python -m vidjax.main --config configs/audio_tsn_r18.py --workdir /tmp/audio_tsn_r18

A released MMAction2 checkpoint converts and tests:
  python -m converters --source mmaction2 --config configs/audio_tsn_r18.py \
      --checkpoint tsn_r18_8xb320-64x1x1-100e_kinetics400-audio-feature_20201012-bf34df6c.pth \
      --output ~/ckpt/audio_tsn_r18
  python -m vidjax.main --config configs/audio_tsn_r18.py --mode eval \
      --workdir /tmp/audio_eval --config.init_from=~/ckpt/audio_tsn_r18
Its scores fuse with an RGB model's of the same eval videos (rows matched by the path
without its extension): python scripts/fuse_scores.py RGB_scores.npz AUDIO_scores.npz.

Expected top-1 (MMAction2 model zoo, Kinetics-400 val, 1 clip): 19.7 (top-5 35.75). The
zoo's table gives n_fft 1024 for that checkpoint; MMAction2's extraction script, and ours
by default, use 512 (`--n-fft` changes it; the table names no hop).

Variants (`configs/audio_tsn_r18.py:VARIANT`):
  demo   the same model on the audio demo data set (generated sounds as features, 6
         classes, CPU), AdamW from scratch, one epoch:
           python -m vidjax.main --config configs/audio_tsn_r18.py:demo --workdir /tmp/audio_demo
         expected: eval/top1 near 100% (the six sounds differ in their spectra, and the
         two chirps in the order of their rows).
  smoke  the tiniest member for tests: clips of 16 video frames as 32 feature rows.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_audio(arg, __file__)
