r"""SlowFast-ResNet-50 (Feichtenhofer et al., ICCV 2019), 4x16x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone slowfast
(vidjax/models/backbones/slowfast.py) of two ResNet3d pathways
(vidjax/models/backbones/resnet3d.py), head slowfast (vidjax/models/heads/slowfast.py).
Recipe: `MODELS["slowfast_r50"]`, `PARTS["slowfast_r50"]` and `SAMPLING_FIELDS` in
vidjax/recipes/mmaction2.py; data set k400 (vidjax/recipes/datasets.py); test protocols
mmaction2_val / mmaction2_test30 (vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb): the clip's 32
frames feed a fast pathway (all 32 frames; ResNet3d-50 with 8 base channels, conv1
(5, 7, 7), every block inflated) and a slow pathway (every 8th frame: 4; ResNet3d-50,
conv1 (1, 7, 7), layer3 and layer4 inflated); after the stems and layers 1-3 a lateral
conv (kernel (5, 1, 1), temporal stride 8, no BN) carries the fast features onto the slow
ones' channels. SlowFastHead: each pathway averaged over T, H, W, concatenated fast
(256) then slow (2048), dropout 0.5, fc. `config.data.num_frames` is the fast pathway's
frame count. Trained from scratch: the last BN of each block starts at zero gain.
Recipe: 32 frames 2 apart, short side 256, RandomResizedCrop to 224, flip; SGD momentum
0.9, lr 0.1 for batch 64 (8 GPUs x 8), weight decay 1e-4 on every parameter, gradient
clipping at norm 40, 256 epochs: 34 warm-up epochs from lr x0.1, then cosine to 0.
Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/slowfast_r50.py --workdir /tmp/slowfast_r50 \
      --config.data.root=~/data/kinetics400

Released checkpoints convert with the matching variant and test with it plus `test30`:
  python -m converters --source mmaction2 --config configs/slowfast_r50.py \
      --checkpoint slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb_20220901-701b0f6f.pth \
      --output ~/ckpt/slowfast_r50
  python -m vidjax.main --config configs/slowfast_r50.py:test30 --mode eval \
      --workdir /tmp/slowfast_eval --config.init_from=~/ckpt/slowfast_r50
(`configs/slowfast_r50.py:8x8_test30` for the 8x8 model, `:r101_8x8_test30` for R101.)

Expected top-1 (MMAction2 model zoo, test30): 75.55 (4x16); 8x8 76.80; r101_8x8 78.65.

Variants (`configs/slowfast_r50.py:VARIANT`, parts joined by ',' or '_'):
  sampling: 4x16   the default, named: slow 4 frames 16 apart, fast 32 frames 2 apart
                   (resample_rate tau 8, speed_ratio alpha 8, fusion kernel 5).
            8x8    slow 8 frames 8 apart, fast 32 (tau 4, alpha 4, fusion kernel 7;
                   slowfast_r50_8xb8-8x8x1-256e). The data is 32x2x1 in both.
  model:    r101   both pathways ResNet3d-101 (slowfast_r101_8xb8-8x8x1-256e; published
                   8x8 only: `r101_8x8`).
  test:     test1  1 centred clip, centre crop 224 (the default eval).
            test30 10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                   short side 256, softmax averaged.
  demo      the same architecture on the embedded demo data set (CPU, a few minutes): 16
            frames of 32x32 (the slow pathway sees 2), AdamW from scratch, one epoch:
              python -m vidjax.main --config configs/slowfast_r50.py:demo --workdir /tmp/sf_demo
  smoke     the tiniest member for tests: ResNet3d-18 pathways, 16 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "slowfast_r50")
