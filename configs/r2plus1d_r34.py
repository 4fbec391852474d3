r"""R(2+1)D-34 (Tran et al., CVPR 2018; MMAction2's ResNet2Plus1d), 8x8x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone r2plus1d
(vidjax/models/backbones/r2plus1d.py), on resnet3d.py, head i3d
(vidjax/models/heads/i3d.py). Recipe: `MODELS["r2plus1d_r34"]` and
`SAMPLINGS["r2plus1d_r34"]` in vidjax/recipes/mmaction2.py; data set k400
(vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30
(vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb): ResNet3d-34 whose
every conv (3, 3, 3) is factorised into a spatial (1, 3, 3) conv to
floor(3 C_in C_out 9 / (9 C_in + 3 C_out)) channels, BN (eps 1e-5), ReLU and a temporal
(3, 1, 1) conv, followed by the block's BN (eps 1e-3); the stem (3, 7, 7) and the
downsamples factorised the same way; temporal strides (1, 2, 2, 2), no pool2; I3DHead
(512 -> K, dropout 0.5); ImageNet mean/std inside the model. Recipe (from scratch): 8
frames 8 apart, short side 256, RandomResizedCrop to 224, flip; SGD momentum 0.9, lr 0.01
for batch 64 (8 GPUs x 8), weight decay 1e-4 on every parameter, gradient clipping at
norm 40, 180 epochs of cosine decay to 0. Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/r2plus1d_r34.py --workdir /tmp/r2plus1d \
      --config.data.root=~/data/kinetics400

A released MMAction2 checkpoint converts and tests with the 30-view protocol:
  python -m converters --source mmaction2 --config configs/r2plus1d_r34.py \
      --checkpoint r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb_20220812-47cfe041.pth \
      --output ~/ckpt/r2plus1d
  python -m vidjax.main --config configs/r2plus1d_r34.py:test30 --mode eval \
      --workdir /tmp/r2plus1d_eval --config.init_from=~/ckpt/r2plus1d
(`configs/r2plus1d_r34.py:32x2_test30` for the 32x2 model.)

Expected top-1 (MMAction2 model zoo, test30): 69.76 (8x8); 32x2 75.46. Parameters (400
classes): 63.8M.

Variants (`configs/r2plus1d_r34.py:VARIANT`, parts joined by ',' or '_'):
  sampling: 32x2   32 frames 2 apart (r2plus1d_r34_8xb8-32x2x1-180e).
            8x8    the default, named.
  test:     test1  1 centred clip, centre crop 224 (the default eval).
            test30 10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                   short side 256, softmax averaged.
  demo      the same architecture on the embedded demo data set (CPU): 8 frames of 32x32,
            AdamW from scratch, one epoch:
              python -m vidjax.main --config configs/r2plus1d_r34.py:demo --workdir /tmp/r21d_demo
  smoke     the tiniest member for tests: R(2+1)D-18 at a quarter of the widths (16
            base channels), 8 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "r2plus1d_r34")
