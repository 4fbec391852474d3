r"""TimeSformer (Bertasius et al., ICML 2021; MMAction2's TimeSformer), ViT-B/16 with divided
space-time attention, 8x32x1, Kinetics-400; `:jointst` and `:spaceonly` for the other
attention types.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone timesformer
(vidjax/models/backbones/timesformer.py), head timesformer
(vidjax/models/heads/timesformer.py). Recipe: `MODELS["timesformer"]` and
`PARTS["timesformer"]` in vidjax/recipes/mmaction2.py; data set k400
(vidjax/recipes/datasets.py); test protocols mmaction2_val and
mmaction2_timesformer_test3 (vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb): 16 x 16
patches of each 224 px frame (196 a frame) embedded to 768 channels, a class token,
position and time embeddings; 12 layers of 12 heads, each layer a temporal attention
over each patch's 8 frames (with its own projection `temporal_fc`), a spatial attention
over each frame's patches and the class token, and an MLP of 3072 (GELU); LayerNorm eps
1e-6; TimeSformerHead: fc on the class token, no dropout; mean and std 127.5 inside the
model. `jointst` attends over all 1 + 196 x 8 tokens at once; `spaceonly` runs the ViT on
each frame and averages the frames' tokens before the last LayerNorm (no time embedding,
blind to the frames' order). The embeddings are built for 8 frames of 224 px
(`model.backbone.num_frames`, `img_size`). Recipe: 8 frames 32 apart, short side
rescaled to 256..320, a random 224 crop, flip; SGD with Nesterov momentum 0.9, lr 0.005
for batch 64 (8 GPUs x 8), weight decay 1e-4 except on the class token and the position
and time embeddings, gradient clipping at norm 40, 15 epochs, lr x0.1 at epochs 5 and
10, stochastic depth up to 0.1. Upstream starts from ImageNet-21K ViT-B/16 weights
(MMAction2's vit_base_patch16_224.pth), which no converter here reads: without them this
recipe trains from scratch. Eval: 1 centred clip, short side 256, centre crop 224.

  python -m vidjax.main --config configs/timesformer.py --workdir /tmp/timesformer \
      --config.data.root=~/data/kinetics400

A released MMAction2 TimeSformer checkpoint converts and tests with the 3-crop protocol:
  python -m converters --source mmaction2 --config configs/timesformer.py \
      --checkpoint timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb_20220815-a4d0d01f.pth \
      --output ~/ckpt/timesformer
  python -m vidjax.main --config configs/timesformer.py:test3 --mode eval \
      --workdir /tmp/timesformer_eval --config.init_from=~/ckpt/timesformer
(`configs/timesformer.py:jointst_test3` with ..._jointST_..._20220815-8022d1c0.pth,
`configs/timesformer.py:spaceonly_test3` with ..._spaceOnly_..._20220815-78f05367.pth; the
0.x checkpoints have the same keys.)

Expected top-1 (MMAction2 model zoo, 1 clip x 3 crops): 77.69 (divided), 76.95 (joint),
76.93 (space-only).
Parameters (400 classes): 121,566,352 (divided: 249 tensors, upstream's state_dict
entries); 86,112,400 (joint); 86,106,256 (space-only, without the time embedding).

Variants (`configs/timesformer.py:VARIANT`, parts joined by ',' or '_'):
  model:  jointst    joint space-time attention (the pre-norm ViT block over all tokens).
          spaceonly  space-only attention: each frame alone, tokens averaged over T.
  test:   test1  1 centred clip, centre crop 224 after short side 256 (the default eval).
          test3  1 centred clip x ThreeCrop(224) after short side 224, softmax averaged
                 (MMAction2's test).
  demo    the same structure at toy size (2 layers of 64 channels, 4 heads, 8 x 8
          patches) on the embedded demo data set, 8 frames of 32x32, AdamW from scratch,
          4 epochs (CPU, minutes):
            python -m vidjax.main --config configs/timesformer.py:demo \
                --workdir /tmp/timesformer_demo
          expected: a ViT from scratch learns slowly: well above chance (the axis of
          motion, some shapes), not yet the direction within a pair.
  smoke   the toy model for tests, on 32 clips: 8 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_timesformer(arg, __file__)
