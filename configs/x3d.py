r"""X3D-M (Feichtenhofer, CVPR 2020; MMAction2's X3D, converted from PySlowFast), 16x5x1,
Kinetics-400; `:s` for X3D-S (13x6x1).

Parts: recognizer3d (vidjax/models/recognizers.py), backbone x3d
(vidjax/models/backbones/x3d.py), head x3d (vidjax/models/heads/x3d.py). Recipe:
`MODELS["x3d"]` and `PARTS["x3d"]` in vidjax/recipes/mmaction2.py; data set k400
(vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30 (M) and
mmaction2_x3d_s_val / mmaction2_x3d_s_test30 (S) (vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 x3d_m_16x5x1_facebook-kinetics400-rgb and x3d_s_13x6x1_...): one
network for S and M (gamma_w 1, gamma_b 2.25, gamma_d 2.2): a (1, 3, 3) stem conv and a
depthwise (5, 1, 1) conv, four stages of 3, 5, 11, 7 bottlenecks (widths 24, 48, 96, 192,
inner 54, 108, 216, 432) with a depthwise 3x3x3 conv, squeeze-excitation on every other
block and Swish, conv5 to 432; X3DHead: average pool, fc1 432 -> 2048 without bias, ReLU,
dropout 0.5, fc2; mean 114.75, std 57.38 inside the model. S and M differ in their
clips: M 16 frames 5 apart, trained at 224 px; S 13 frames 6 apart, trained at 160 px.

MMAction2 ships X3D for testing only. Training here is our recipe after PySlowFast's X3D
configs (not a published MMAction2 recipe, not run at scale): random resized crops of 224
(S: 160) after short side 256 (S: 182), flip; SGD momentum 0.9, lr 0.1 for batch 128,
weight decay 5e-5 (none on BN and biases), cosine over 300 epochs after 35 warm-up
epochs from lr x0.1. Eval: 1 centred clip, centre crop 224 after short side 256 (S: 160
after 182).

  python -m vidjax.main --config configs/x3d.py --workdir /tmp/x3d \
      --config.data.root=~/data/kinetics400

A released MMAction2 checkpoint converts and tests with the 30-view protocol:
  python -m converters --source mmaction2 --config configs/x3d.py \
      --checkpoint x3d_m_facebook_16x5x1_kinetics400_rgb_20201027-3f42382a.pth \
      --output ~/ckpt/x3d_m
  python -m vidjax.main --config configs/x3d.py:test30 --mode eval \
      --workdir /tmp/x3d_eval --config.init_from=~/ckpt/x3d_m
(`configs/x3d.py:s_test30` with x3d_s_facebook_13x6x1_kinetics400_rgb_20201027-623825a0.pth.)
MMAction2 1.x also resamples test videos to 30 fps (`target_fps`); vidjax samples them at
their own rate.

Expected top-1 (MMAction2 model zoo, 10 clips x 3 crops): 75.6 (M); 73.2 (S).
Parameters (400 classes, both): 3,794,322.

Variants (`configs/x3d.py:VARIANT`, parts joined by ',' or '_'):
  model:  s      X3D-S: 13 frames 6 apart, 160 px training crops, its test protocols.
  test:   test1  1 centred clip, centre crop 224 after short side 256 (S: 160 after 182;
                 the default eval).
          test30 10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                 short side 256 (S: ThreeCrop(182) after 182), softmax averaged.
  demo    the same architecture on the embedded demo data set (CPU): 8 frames of 32x32,
          AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/x3d.py:demo --workdir /tmp/x3d_demo
  smoke   the tiniest member for tests: gamma_d 0.5 (1, 1, 3, 2 blocks), fc1 of 64, 8
          frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "x3d")
