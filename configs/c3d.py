r"""C3D (Tran et al., ICCV 2015; MMAction2's C3D), 16x1x1, UCF101 split 1, from Sports-1M.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone c3d
(vidjax/models/backbones/c3d.py), head i3d (vidjax/models/heads/i3d.py), without pooling.
Recipe: `MODELS["c3d"]` in vidjax/recipes/mmaction2.py; data set ucf101
(vidjax/recipes/datasets.py); test protocols mmaction2_c3d_val / mmaction2_c3d_test10
(vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb): eight 3x3x3
convs with bias and ReLU (no BatchNorm), max-pools (pool5 padded (0, 1, 1)), fc6 and fc7
(4096, ReLU, dropout 0.5 between them) on the pool5 features flattened in PyTorch's
(C, T, H, W) order; I3DHead on the 4096-d vector (dropout 0.5, fc 4096 -> 101); mean
(104, 117, 128), std 1 inside the model. The model takes 16x112x112 clips only (fc6 is
built for them: `model.backbone.input_size`). Recipe: 16 consecutive frames, short side
128, a random 112 crop, flip; SGD momentum 0.9, lr 1e-3 for batch 240 (8 GPUs x 30),
weight decay 5e-4 on every parameter, gradient clipping at norm 40, 45 epochs, lr x0.1
at epochs 20 and 40. Upstream starts from Sports-1M weights (`--config.init_from=DIR`
takes converted ones). Eval: 1 centred clip, short side 128, centre crop 112.

  python -m vidjax.main --config configs/c3d.py --workdir /tmp/c3d \
      --config.data.root=~/data/ucf101 --config.init_from=~/ckpt/c3d_sports1m

A released MMAction2 checkpoint converts and tests with the 10-clip protocol:
  python -m converters --source mmaction2 --config configs/c3d.py \
      --checkpoint c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb_20220811-31723200.pth \
      --output ~/ckpt/c3d
  python -m vidjax.main --config configs/c3d.py:test10 --mode eval \
      --workdir /tmp/c3d_eval --config.init_from=~/ckpt/c3d

Expected top-1 (MMAction2 model zoo, UCF101 split 1, test10): 82.92. Parameters (101
classes): 78,409,573.

Variants (`configs/c3d.py:VARIANT`, parts joined by ',' or '_'):
  test:   test1  1 centred clip, centre crop 112 after short side 128 (the default eval).
          test10 10 clips (MMAction2 1.x's 3D test sampling) x the centre crop 112,
                 softmax averaged (MMAction2 0.x averaged the logits).
  demo    the same architecture on the embedded demo data set (CPU): 16 frames of 32x32
          (fc6 built for them), AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/c3d.py:demo --workdir /tmp/c3d_demo
  smoke   the tiniest member for tests: 8 base channels, fc6 / fc7 of 64, 16 frames of
          32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "c3d")
