r"""C2D-ResNet-50 (Wang et al., CVPR 2018's baseline; MMAction2 1.x's C2D), 8x8x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone c2d
(vidjax/models/backbones/resnet3d.py), head i3d (vidjax/models/heads/i3d.py); the
`nopool` variant: recognizer2d, backbone resnet (vidjax/models/backbones/resnet.py), head
tsn (vidjax/models/heads/tsn.py). Recipe: `MODELS["c2d_r50"]` and `PARTS["c2d_r50"]` in
vidjax/recipes/mmaction2.py; data set k400 (vidjax/recipes/datasets.py); test protocols
mmaction2_val / mmaction2_c2d_test30 (vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb): ResNet-50
applied per frame (2D kernels), an unpadded (1, 3, 3) max-pool after conv1 (112 -> 55
px) and a (2, 1, 1) max-pool after layer1 (T halves); I3DHead (average over T, H, W,
dropout 0.5, fc). Recipe: 8 frames 8 apart, short side 256, MultiScaleCrop (scales 1,
.875, .75, .66, one step of aspect, 5 fixed positions) to 224, flip; SGD momentum 0.9, lr
0.01 for batch 256 (8 GPUs x 32), weight decay 1e-4 on every parameter, gradient
clipping at norm 40, 100 epochs, lr x0.1 at epochs 40 and 80; ImageNet ResNet-50
initialisation upstream (`--config.init_from=DIR`). Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/c2d_r50.py --workdir /tmp/c2d_r50 \
      --config.data.root=~/data/kinetics400

Released checkpoints convert with `python -m converters --source mmaction2 --config
configs/c2d_r50.py[:nopool] --checkpoint FILE.pth --output DIR` (their 4-D kernels gain
a time axis); test with `configs/c2d_r50.py:test30` and `--config.init_from=DIR`.

Expected top-1 (MMAction2 model zoo, test30): 73.89; nopool 73.44.

Variants (`configs/c2d_r50.py:VARIANT`):
  model:  nopool   MMAction2's c2d ... nopool: TSN-ResNet-50 on the 8 frames (no temporal
                   pooling, TSNHead with dropout 0.4 averaging every frame's logits; the
                   views' logits are averaged, as its head averages all frames of all
                   views before the fc).
  test:   test1    1 centred clip, centre crop 224 (the default eval).
          test30   10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(224) after
                   short side 224.
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 8
          frames of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/c2d_r50.py:demo --workdir /tmp/c2d_demo
          C2D pools time away like TSN's average, so it should not tell the direction
          classes apart (configs/i3d_r50.py:demo can).
  smoke   the tiniest member for tests: C2D on a ResNet-18, 8 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "c2d_r50")
