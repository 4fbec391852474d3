r"""ir-CSN-152 (Tran et al., ICCV 2019: channel-separated networks; MMAction2's
ResNet3dCSN), 32x2x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone csn
(vidjax/models/backbones/csn.py), on resnet3d.py, head i3d (vidjax/models/heads/i3d.py).
Recipe: `MODELS["csn_r152"]` and `PARTS["csn_r152"]` in vidjax/recipes/mmaction2.py; data
set k400 (vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30
(vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb):
ResNet3d-152 whose bottlenecks have a depthwise 3x3x3 conv2 (interaction-reduced), conv1
(3, 7, 7), temporal strides (1, 2, 2, 2), no pool2, every BN at eps 1e-3; I3DHead
(dropout 0.5); ImageNet mean/std inside the model. Recipe: 32 frames 2 apart, short side
256, RandomResizedCrop to 224, flip; SGD momentum 0.9, lr 5e-4 for batch 96 (8 GPUs x
12), weight decay 1e-4 on every parameter, gradient clipping at norm 40, 58 epochs: 16
warm-up epochs from lr x0.1, lr x0.1 at epochs 32 and 48. Upstream starts from IG65M
weights (`--config.init_from=DIR` takes converted ones). Eval: 1 centred clip, centre
crop 224.

  python -m vidjax.main --config configs/csn_r152.py --workdir /tmp/csn_r152 \
      --config.data.root=~/data/kinetics400

A released MMAction2 checkpoint converts with the matching variant and tests with it
plus `test30`:
  python -m converters --source mmaction2 --config configs/csn_r152.py \
      --checkpoint ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb_20220811-c7a3cc5b.pth \
      --output ~/ckpt/csn_r152
  python -m vidjax.main --config configs/csn_r152.py:test30 --mode eval \
      --workdir /tmp/csn_eval --config.init_from=~/ckpt/csn_r152
(`configs/csn_r152.py:ip_test30` for ip-CSN-152, `:r50_test30` for ir-CSN-50.)

Expected top-1 (MMAction2 model zoo, test30): 82.87; ip 82.68; r50 79.44.
Parameters (400 classes): 29.70M; ip 33.02M; r50 13.13M.

Variants (`configs/csn_r152.py:VARIANT`, parts joined by ',' or '_'):
  model:  ip     ip-CSN-152: conv2 is a 1x1x1 conv + BN (no ReLU) before the depthwise
                 conv; BN frozen (ipcsn_ig65m-pretrained-r152-bnfrozen_32x2x1-58e).
          r50    ir-CSN-50 with BN frozen: every BN in eval mode during training and its
                 scale and bias not updated
                 (ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e).
  test:   test1  1 centred clip, centre crop 224 (the default eval).
          test30 10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after short
                 side 256, softmax averaged.
  demo    the same architecture on the embedded demo data set (CPU): 8 frames of 32x32,
          AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/csn_r152.py:demo --workdir /tmp/csn_demo
  smoke   the tiniest member for tests: ir-CSN-50 at a quarter of the widths (16 base
          channels), 8 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "csn_r152")
