r"""TPN-SlowOnly-ResNet-50 (Yang et al., CVPR 2020; MMAction2's TPN), 8x8x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone resnet3d
(vidjax/models/backbones/resnet3d.py) returning layer3 and layer4, neck tpn
(vidjax/models/necks/tpn.py), head i3d (vidjax/models/heads/i3d.py) as MMAction2's
TPNHead. Recipe: `MODELS["tpn_slowonly_r50"]` in vidjax/recipes/mmaction2.py; data set
k400 (vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30
(vidjax/recipes/protocols.py).

Model (MMAction2 tpn-slowonly_imagenet-pretrained-r50_8xb8-8x8x1-150e_kinetics400-rgb):
SlowOnly-ResNet3d-50 (conv1 (1, 7, 7), no temporal stride, no pool2, layer3 and layer4
inflated) whose res4 and res5 feed the temporal pyramid: spatial modulation of res4 to
res5's size and width, temporal modulation (a grouped temporal conv and a max-pool of the
8 frames to 1), top-down and bottom-up flows, each fused over the levels, and their
fusion; TPNHead (global average pool, dropout 0.5, fc). An auxiliary head on res4 adds
half its cross-entropy to the training loss. Recipe: 8 frames 8 apart, short side 256,
RandomResizedCrop to 224, flip; SGD with Nesterov momentum 0.9, lr 0.01 for batch 64 (8
GPUs x 8), weight decay 1e-4 on every parameter, gradient clipping at norm 40, lr x0.1 at
epochs 75 and 125, 150 epochs; ImageNet ResNet-50 initialisation upstream
(`--config.init_from=DIR`). Upstream's clip-level ColorJitter is not reproduced. Eval: 1
centred clip, centre crop 224.

  python -m vidjax.main --config configs/tpn_slowonly_r50.py --workdir /tmp/tpn_so_r50 \
      --config.data.root=~/data/kinetics400

Released checkpoints (their auxiliary head included) convert with `python -m converters
--source mmaction2 --config configs/tpn_slowonly_r50.py --checkpoint FILE.pth --output
DIR`; test with `configs/tpn_slowonly_r50.py:test30 --mode eval --config.init_from=DIR`.

Expected top-1 (MMAction2 model zoo, test30): 76.59 (ImageNet-initialised).

Variants (`configs/tpn_slowonly_r50.py:VARIANT`):
  test:   test1    1 centred clip, centre crop 224 (the default eval).
          test30   10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                   short side 256, softmax averaged.
  demo    the same architecture on the embedded demo data set (CPU; not timed): 4
          frames of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/tpn_slowonly_r50.py:demo \
                --workdir /tmp/tpn_so_demo
  smoke   the tiniest member for tests: SlowOnly-ResNet3d-18 and the pyramid at its
          widths (256 / 512 channels), 4 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "tpn_slowonly_r50")
