r"""TCP TEA-Res2Net-50 (TCPNet, NeurIPS 2021), 8 segments, Kinetics-400.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone tea_res2net
(vidjax/models/backbones/res2net_tea.py), head tcp (vidjax/models/heads/tcp.py). Recipe:
vidjax/recipes/tcpnet.py (`ARCHS["tea_r50"]`); data sets vidjax/recipes/datasets.py; test
protocols vidjax/recipes/protocols.py.

Recipe (official script/K400/train_TEA_8f_R50.sh, reference/tcpnet.md 4.1-4.2): the TEA
backbone (Res2Net-50 26w x 4s with motion excitation and learned temporal shifts, layer4
stride 1, `model.backbone.name=tea_res2net`), the TCP head (dim 128, 8256-d covariance
vector), dropout 0.5, new fc; SGD momentum 0.9, lr 0.01 for batch 32, weight decay 1e-4,
lr x0.1 at epochs 20 and 30, 40 epochs, gradient clipping at global norm 20, every
BatchNorm training (`--npb`). New layers learn faster (`lr_x_factor` 10): the attention
module and the fc weight at lr x10, the fc bias at x20 (the same groups as
configs/tcp_tsn_r50.py). The backbone and reduction layers start from the ImageNet
Res2Net GCP model:

  python -m converters --source tcpnet --config configs/tcp_tea_r50.py \
      --checkpoint ImageNet1K_Res2Net50_GCP_R50.pth.tar --output ~/ckpt/gcp_tea_t8
  python -m vidjax.main --config configs/tcp_tea_r50.py --workdir /tmp/tcp_tea \
      --config.init_from=~/ckpt/gcp_tea_t8 --config.data.root=~/data/kinetics400

Expected (README of the official repo, 1 centre clip / 30 views): 73.9 / 76.8 top-1.
The released K400 model converts with the same command (either key layout).

Variants (`configs/tcp_tea_r50.py:VARIANT`), parts joined by ',' or '_' in any
order (`16f_test30`); `k400` names the default data set:
  16f       16 segments (conv_1d kernel 9): lr 0.0025, steps 20 40, 50 epochs; 75.3 / 77.2.
  hmdb      HMDB51 fine-tuning from the K400 TCP model (`--config.init_from` = its
            converted variables; the fc is dropped): lr 0.001, steps 5 10, 15 epochs,
            batch 32, dropout 0.5, partial BN; weight decay 5e-4 (opts.py's default: the
            script sets none).
  test30    the 30-view test: --mode eval --config.init_from=DIR. Short side 256, 3
            full-resolution 256x256 crops x TCPNet's ten clips, softmax per view, max
            over the 30 views.
  test30_16f  the same for the 16f model.
  demo      the same architecture on the embedded demo data set (4 frames of 32x32,
            AdamW from scratch, one epoch, CPU):
            python -m vidjax.main --config configs/tcp_tea_r50.py:demo --workdir /tmp/tea_demo
  smoke     the smallest member for tests: TEA-Res2Net-50 with a TCP head of 64 -> 32
            channels (528 features), 4 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import tcpnet


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return tcpnet.tcpnet_config("tea_r50", arg)
