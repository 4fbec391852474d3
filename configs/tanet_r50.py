r"""TANet-ResNet-50 (Liu et al., ICCV 2021; MMAction2's TANet), 1x1x8, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), temporal adaptive module tam
(vidjax/models/temporal/tam.py) in the blocks' `inner` slot, head tsn
(vidjax/models/heads/tsn.py), MMAction2's TSMHead: fc per frame, then the mean. Recipe:
`MODELS["tanet_r50"]` in vidjax/recipes/mmaction2.py; data set sthv1
(vidjax/recipes/datasets.py); test protocols test1 / mmaction2_sth_test2x3
(vidjax/recipes/protocols.py).

Model (MMAction2 tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb): ResNet-50 with a
TAM between the first conv (after its BN and ReLU) and the 3x3 conv of every block: a
learned local temporal attention and a per-clip, per-channel 3-tap temporal kernel;
TSMHead with dropout 0.6; ImageNet mean/std. Recipe: 8 TSN segments, MultiScaleCrop to
224, flip with the data set's label pairs; SGD momentum 0.9, lr 0.01 for batch 64 (8 GPUs
x 8), weight decay 1e-3 (none on BatchNorm and biases), fc at lr x5 / x10, gradient
clipping at norm 20, lr x0.1 at epochs 30, 40 and 45, 50 epochs; ImageNet ResNet-50
initialisation upstream (`--config.init_from=DIR`). Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/tanet_r50.py --workdir /tmp/tanet_r50 \
      --config.data.root=~/data/sthv1/frames

Released checkpoints convert with `python -m converters --source mmaction2 --config
configs/tanet_r50.py --checkpoint FILE.pth --output DIR`; test with
`configs/tanet_r50.py:test2x3 --mode eval --config.init_from=DIR`.

Variants (`configs/tanet_r50.py:VARIANT`):
  test:   test1    1 centred clip, centre crop 224 (the default eval).
          test2x3  MMAction2's test: twice sample (2 clips of 8 segments) x ThreeCrop(256)
                   after short side 256, softmax averaged (6 views).
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 4
          segments of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/tanet_r50.py:demo --workdir /tmp/tanet_demo
          TAM mixes neighbouring frames, so the direction classes are learnable
          (configs/tsn_r50.py:demo, without it, cannot tell them apart).
  smoke   the tiniest member for tests: ResNet-18 + TAM (after the first 3x3 conv of each
          BasicBlock; upstream has TAM on Bottlenecks only), 4 segments of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_2d(arg, __file__, "tanet_r50")
