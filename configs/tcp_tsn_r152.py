r"""TCP TSN pre-activation ResNet-152 (TCPNet, NeurIPS 2021), 8 segments, Kinetics-400.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone preact_resnet
(vidjax/models/backbones/preact_resnet.py), head tcp (vidjax/models/heads/tcp.py). Recipe:
vidjax/recipes/tcpnet.py (`ARCHS["tsn_r152"]`); data sets vidjax/recipes/datasets.py; test
protocols vidjax/recipes/protocols.py.

Recipe (official script/K400/train_TSN_8f_R152.sh, reference/tcpnet.md 2.2, 4.1-4.2): the
MXNet-origin pre-activation ResNet-152 (`model.backbone.name=preact_resnet`: bn_data on
raw 0..255 pixels, so `model.pixel_mean`/`pixel_std` are None; every BatchNorm eps
2e-5; layer4 stride 1), the TCP head (dim 128, 8256 features), dropout 0.5; SGD momentum
0.9, lr 0.0008125 for batch 52, weight decay 1e-4, lr x0.1 at epochs 20 and 30, 40
epochs, gradient clipping at global norm 60, every BatchNorm training (`--npb`). New
layers learn faster (`lr_x_factor` 50): attention and fc weight x50, fc bias x100. Init:
the ImageNet-11K/1K GCP model:

  python -m converters --source tcpnet --config configs/tcp_tsn_r152.py \
      --checkpoint ImgeNet11K_1K_preact_R152_GCP.pth.tar --output ~/ckpt/gcp_r152_t8
  python -m vidjax.main --config configs/tcp_tsn_r152.py --workdir /tmp/tcp_r152 \
      --config.init_from=~/ckpt/gcp_r152_t8 --config.data.root=~/data/kinetics400

Expected (README of the official repo, 1 centre clip / 30 views): 75.7 / 78.3 top-1.

Variants (`configs/tcp_tsn_r152.py:VARIANT`), parts joined by ',' or '_' in any
order (`16f_test30`); `k400` names the default data set:
  16f       16 segments (conv_1d kernel 9): lr 0.0002, batch 26; 77.2 / 79.3. The
            official 16f script passes --num_segments 8 by a copy-paste error.
  test30    the 30-view test: --mode eval --config.init_from=DIR (3 full-resolution
            256 crops x ten clips, softmax, max over views).
  test30_16f  the same for the 16f model.
  demo      the same architecture on the embedded demo data set (4 frames of 32x32,
            AdamW from scratch, CPU):
            python -m vidjax.main --config configs/tcp_tsn_r152.py:demo --workdir /tmp/r152_demo
  smoke     the smallest member for tests: pre-activation ResNet-50 (same blocks, bn_data,
            eps 2e-5) with a TCP head of 64 -> 32 channels, 4 frames of 32x32.

No HMDB or Mini-Kinetics recipe: upstream publishes none for R152.
"""

import ml_collections

from vidjax.recipes import tcpnet


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return tcpnet.tcpnet_config("tsn_r152", arg)
