r"""I3D-ResNet-50 (Carreira and Zisserman, CVPR 2017; MMAction2's ResNet3d), 32x2x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone resnet3d
(vidjax/models/backbones/resnet3d.py), head i3d (vidjax/models/heads/i3d.py). Recipe:
`MODELS["i3d_r50"]` and `PARTS["i3d_r50"]` in vidjax/recipes/mmaction2.py; data set k400
(vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30
(vidjax/recipes/protocols.py); sampling vidjax/data/sampling.py.

Model (MMAction2 1.2.0 i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb):
ResNet3d-50 with conv1 (5, 7, 7) and temporal stride 2 in conv1 and the stem max-pool,
pool2 after layer1, inflate ((1,1,1),(1,0,1,0),(1,0,1,0,1,0),(0,1,0)) in the 3x1x1 style;
I3DHead (average over T, H, W, dropout 0.5, fc); ImageNet mean/std inside the model.
Recipe: 32 frames 2 apart (data.sampler dense), short side 256, MultiScaleCrop (scales 1
and 0.8, square, 5 fixed positions) to 224, flip; SGD momentum 0.9, lr 0.01 for batch 64
(8 GPUs x 8), weight decay 1e-4 on every parameter, gradient clipping at norm 40, 100
epochs, lr x0.1 at epochs 40 and 80. Upstream initialises from ImageNet ResNet-50 inflated
to 3D; vidjax has no inflating converter yet: `--config.init_from=DIR` takes converted
3D weights. Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/i3d_r50.py --workdir /tmp/i3d_r50 \
      --config.data.root=~/data/kinetics400

A released MMAction2 checkpoint converts and tests with the 30-view protocol:
  CKPT=i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth
  python -m converters --source mmaction2 --config configs/i3d_r50.py \
      --checkpoint $CKPT --output ~/ckpt/i3d_r50
  python -m vidjax.main --config configs/i3d_r50.py:test30 --mode eval \
      --workdir /tmp/i3d_eval --config.init_from=~/ckpt/i3d_r50

Expected top-1 (MMAction2 model zoo, test30): 73.47; heavy 76.21; NL embedded Gaussian
74.73, Gaussian 73.97, dot product 74.80.

Variants (`configs/i3d_r50.py:VARIANT`, parts joined by ',' or '_'):
  model:  heavy        every block inflated, no temporal stride in the stem (MMAction2's
                       i3d ... r50-heavy 32x2x1).
          nl_embedded_gaussian, nl_gaussian, nl_dot_product
                       non-local blocks after blocks 1 and 3 of layer2 and 1, 3, 5 of
                       layer3 (mmcv NonLocal3d, sub-sampled, no scale).
  test:   test1        1 centred clip, centre crop 224 (the default eval).
          test30       10 clips (MMAction2 1.x's 3D test sampling: first at 0, last at
                       the end) x ThreeCrop(256) after short side 256, softmax averaged.
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 8
          frames of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/i3d_r50.py:demo --workdir /tmp/i3d_demo
  smoke   the tiniest member for tests: ResNet3d-18 with the I3D stem, 8 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "i3d_r50")
