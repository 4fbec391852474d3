r"""GC-TSM-ResNet-50 (Group Contextualization, CVPR 2022), 8 segments, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal ecal
(vidjax/models/temporal/gc.py), temporal shift (vidjax/models/temporal/shift.py). Recipe:
vidjax/recipes/gc.py; data sets vidjax/recipes/datasets.py; test protocols
vidjax/recipes/protocols.py.

Architecture (reference/tsm_gc.md 2.4): GC-TSN (ECal-L/T/S/G after bn2 of every
bottleneck, cdiv 4) plus TSM's temporal shift on the residual branch before conv1
(`blockres`, 1/8 of the channels each way; `model.shift`). GC-TSM checkpoints have the
same keys as GC-TSN: the shift comes from this config, not from the file.

  python -m converters --source gc --config configs/gc_tsm_r50.py \
      --checkpoint TSM_M4_resnet50_..._ef4_....pth --output ~/ckpt/gc_tsm
  python -m vidjax.main --config configs/gc_tsm_r50.py --workdir /tmp/gc_tsm_sth1 \
      --config.init_from=~/ckpt/imagenet_r50 --config.data.root=~/data/sthv1/frames

Recipe: GC's scripts/train_tsm.sh, the same as configs/gc_tsn_r50.py (lr 0.01, batch 32,
wd 1e-4, steps 20/40, 50 epochs, dropout 0.5, gd 20, npb, ef_lr5, flip with the
Something label swap) plus `--shift --shift_div 8 --shift_place blockres`.

Expected (GC README, top-1): Sth-V1 8x1x2 51.1, 16x1x2 53.1; Sth-V2 8x1x2 63.0, 16x1x2
64.9; K400 8x1x10 75.4, 16x1x10 76.7, 16x3x10 77.1; Diving48 16x1x1 87.2. The released
K400 16-frame weights (GC issue #2) convert with `:k400_16f` (and test with
`:k400_16f_test` / `:k400_16f_test3`).

Variants: as configs/gc_tsn_r50.py (data set sthv1 | sthv2 | k400 | diving48, 16f,
test | test3, joined by ',' or '_'; demo; smoke).

Note for ResNet-101 (not a config here): upstream GC-TSM shifts only the blocks that
carry calibrators (layer3: even blocks), while TSM's rule shifts even blocks of every
stage; for ResNet-50 both shift all 16 blocks.
"""

import ml_collections

from vidjax.recipes import gc


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return gc.build(arg, file=__file__, shift=True)
