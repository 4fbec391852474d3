r"""TPN-TSM-ResNet-50 (Yang et al., CVPR 2020; MMAction2's TPN), 1x1x8, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py) returning layer3 and layer4, temporal shift shift
(vidjax/models/temporal/shift.py), neck tpn (vidjax/models/necks/tpn.py), head i3d
(vidjax/models/heads/i3d.py) as MMAction2's TPNHead. Recipe: `MODELS["tpn_tsm_r50"]` in
vidjax/recipes/mmaction2.py; data set sthv1 (vidjax/recipes/datasets.py); test protocols
test1 / mmaction2_sth_test2x3 (vidjax/recipes/protocols.py).

Model (MMAction2 tpn-tsm_imagenet-pretrained-r50_8xb8-1x1x8-150e_sthv1-rgb): TSM-ResNet-50
(1/8 of the channels shifted each way in every block's residual branch) whose res4 and
res5 feed the temporal pyramid: spatial modulation of res4 to res5's size and width,
temporal modulation (a grouped temporal conv and a max-pool of the 8 frames to 1),
top-down and bottom-up flows, each fused over the levels, and their fusion; TPNHead
(global average pool, dropout 0.5, fc). An auxiliary head on res4 adds half its
cross-entropy to the training loss. Recipe: 8 TSN segments, RandomResizedCrop to 224,
flip with the data set's label pairs; SGD with Nesterov momentum 0.9, lr 0.01 for batch
64 (8 GPUs x 8), weight decay 5e-4 on every parameter, gradient clipping at norm 20, lr
x0.1 at epochs 75 and 125, 150 epochs; ImageNet ResNet-50 initialisation upstream
(`--config.init_from=DIR`). Upstream's clip-level ColorJitter is not reproduced.

  python -m vidjax.main --config configs/tpn_tsm_r50.py --workdir /tmp/tpn_tsm_r50 \
      --config.data.root=~/data/sthv1/frames

Released checkpoints (their auxiliary head included) convert with `python -m converters
--source mmaction2 --config configs/tpn_tsm_r50.py --checkpoint FILE.pth --output DIR`;
test with `configs/tpn_tsm_r50.py:test2x3 --mode eval --config.init_from=DIR`.

Expected top-1 (MMAction2 model zoo, sthv1, from a TSM model): 51.50.

Variants (`configs/tpn_tsm_r50.py:VARIANT`):
  test:   test1    1 centred clip, centre crop 224 (the default eval).
          test2x3  MMAction2's test: twice sample (2 clips of 8 segments) x ThreeCrop(256)
                   after short side 256, softmax averaged (6 views).
  demo    the same architecture on the embedded demo data set (CPU; not timed): 4
          segments of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/tpn_tsm_r50.py:demo --workdir /tmp/tpn_demo
  smoke   the tiniest member for tests: TSM-ResNet-18 and the pyramid at its widths
          (256 / 512 channels), 4 segments of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_2d(arg, __file__, "tpn_tsm_r50")
