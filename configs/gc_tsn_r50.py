r"""GC-TSN-ResNet-50 (Group Contextualization, CVPR 2022), 8 segments, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal ecal
(vidjax/models/temporal/gc.py). Recipe: vidjax/recipes/gc.py; data sets
vidjax/recipes/datasets.py; test protocols vidjax/recipes/protocols.py.

Architecture (reference/tsm_gc.md 2.2-2.4): TSN-R50 with the four calibrators ECal-L,
ECal-T, ECal-S, ECal-G after bn2 of every bottleneck, each on a quarter of the channels
(`model.ecal`, cdiv 4); no temporal shift. Converts from the GC code base:

  python -m converters --source gc --config configs/gc_tsn_r50.py \
      --checkpoint TSN_M4_resnet50_something_RGB_..._ef4_....pth --output ~/ckpt/gc_tsn_sth1

Recipe (GC's scripts/train_tsn.sh, reference/tsm_gc.md 2.6): ImageNet init
(`--config.init_from=DIR`), SGD momentum 0.9, lr 0.01 for batch 32, weight decay 1e-4,
lr x0.1 at epochs 20 and 40, 50 epochs, dropout 0.5, gradient clipping at norm 20, every
BN training (`--npb`); `--ef_lr5`: calibrator weights at lr x5, their BN affines x5 without
decay; biases x2 without decay, BN without decay (TSM's policies; GC disables fc_lr5).
Something is trained WITH horizontal flip and the left/right labels 86<->87, 93<->94,
166<->167 swapped (`data.flip_label_map`). Eval each epoch: 1 centre clip, centre crop.
The data sets are the same entries as the TSM configs' (frame folders with TSM's
`*_videofolder.txt` lists for Something).

  python -m vidjax.main --config configs/gc_tsn_r50.py --workdir /tmp/gc_tsn_sth1 \
      --config.init_from=~/ckpt/imagenet_r50 --config.data.root=~/data/sthv1/frames

Expected (GC README, "frames x views x clips", top-1): Sth-V1 8x1x2 49.7, 16x1x2 51.3;
Sth-V2 8x1x2 62.4, 16x1x2 64.8; K400 8x1x10 75.2; Diving48 16x1x1 86.8.

Variants (`configs/gc_tsn_r50.py:VARIANT`), parts joined by ',' or '_' (e.g.
`sthv2_16f_test`):
  data set (none or sthv1) Something-Something V1 | sthv2 | k400 | diving48 (16 frames
           by default)
  16f      16 segments (same hyperparameters, as upstream)
  test     the data set's test protocol, for `--mode eval --config.init_from=DIR`:
           Something: TSM's twice sample (2 clips) x 1 full-resolution 256x256 centre
           crop (short side 256), logits averaged (protocol gc_test2); Kinetics: 10 dense
           clips (I3D style, stride 64 // T) x 1 full-res crop (gc_test10); Diving48:
           1 clip x 1 centre crop 224 (test1).
  test3    Kinetics: 10 dense clips x 3 full-resolution 256 crops (30 views; "16x3x10";
           test30).
  demo     the same architecture on the embedded demo data set (4 frames of 32x32, AdamW
           from scratch, one epoch, a few minutes on CPU):
           python -m vidjax.main --config configs/gc_tsn_r50.py:demo --workdir /tmp/gc_demo
           expected: eval/top1 well above chance (1/6).
  smoke    the tiniest member for tests: ResNet-18 with ECal (after bn1 of each
           BasicBlock, the block's 3x3-conv BN), 4 frames of 32x32.

Kinetics and Diving48: GC's README publishes no training command for them; these variants
use the TSM code base's Kinetics recipe (lr 0.02 for batch 128, 50 epochs, steps 20/40,
dense sampling as the dense test needs) and GC's Something recipe for Diving48 (48
classes, with flip, no label swap). Both are our reading, not a published script.
"""

import ml_collections

from vidjax.recipes import gc


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return gc.build(arg, file=__file__)
