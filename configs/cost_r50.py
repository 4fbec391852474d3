r"""CoST(b)-ResNet-50 (Li et al., Collaborative Spatiotemporal Feature Learning, CVPR 2019), 8x8x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone cost
(vidjax/models/backbones/cost.py), head i3d (vidjax/models/heads/i3d.py). Recipe:
`BASE` and `PARTS` in vidjax/recipes/cost.py; data set k400 (vidjax/recipes/datasets.py);
test protocols mmaction2_val / mmaction2_test30 (vidjax/recipes/protocols.py).

Model (the release's costb_r50_8x8x1_160e_kinetics400_rgb): ResNet3dCoST-50 with conv1
(1, 7, 7), a padded (1, 3, 3) stem max-pool, pool2 after layer1, and the collaborative
spatiotemporal conv (one 3x3 kernel on the H-W, T-W and T-H views, summed with
coefficients from an fc on the max-pooled views) as conv2 of every other block
((0,1,0),(1,0,1,0),(1,0,1,0,1,0),(1,0,1)); I3DHead (average over T, H, W, dropout 0.5,
fc); ImageNet mean/std inside the model. Recipe: 8 frames 8 apart, short side 256, a
random 224 crop (upstream jitters the short side in 256..320 first), flip; SGD momentum
0.9, lr 0.01 for batch 64 (8 GPUs x 8), weight decay 1e-4 on every parameter, gradient
clipping at norm 40, 160 epochs, lr x0.1 at epochs 80 and 120. Upstream initialises from
ImageNet ResNet-50 (`--config.init_from=DIR` takes converted weights). Eval: 1 centred
clip, centre crop 224.

  python -m vidjax.main --config configs/cost_r50.py --workdir /tmp/cost_r50 \
      --config.data.root=~/data/kinetics400

A checkpoint trained with the release converts and tests with the 30-view protocol (the
release publishes no weights):
  python -m converters --source cost --config configs/cost_r50.py \
      --checkpoint work_dirs/costb_r50_8x8x1_160e_kinetics400_rgb/latest.pth \
      --output ~/ckpt/cost_r50
  python -m vidjax.main --config configs/cost_r50.py:test30 --mode eval \
      --workdir /tmp/cost_eval --config.init_from=~/ckpt/cost_r50

Expected top-1 on Kinetics-400 val, 10 clips (the release's README, paper in brackets):
CoST(b) 73.85 (74.1); CoST(a) 72.89 (73.6); C2D 72.28 (71.5); I3D 73.40 (73.3). 1 clip:
66.90, 66.20, 66.03, 66.86.

Variants (`configs/cost_r50.py:VARIANT`, parts joined by ',' or '_'):
  model:  a          CoST(a): per-channel coefficients learned as parameters (softmax
                     over the three views), the same for every clip.
          c2d        CoST's C2D baseline: no block inflated (2D kernels per frame, the
                     padded stem pool and pool2).
          i3d        CoST's I3D baseline: the same blocks inflated as (3, 1, 1) conv1.
          r101_32f   CoST(b)-ResNet-101 on 32 frames 2 apart: conv1 (5, 7, 7) with
                     temporal stride 2, a (2, 3, 3) stem max-pool with temporal stride 2.
  test:   test1      1 centred clip, centre crop 224 (the default eval).
          test30     10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                     short side 256, softmax averaged.
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 8
          frames of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/cost_r50.py:demo --workdir /tmp/cost_demo
  smoke   the tiniest member for tests: CoST(b)-ResNet-50 of base width 8, 8 frames of
          32x32.
"""

import ml_collections

from vidjax.recipes import cost


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return cost.build(arg, __file__)
