r"""TSM-ResNet-101, 8 segments: the TSM recipe of configs/tsm_r50.py on ResNet-101.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py) at depth 101, head tsn (vidjax/models/heads/tsn.py),
temporal shift (vidjax/models/temporal/shift.py). Recipe: vidjax/recipes/tsm.py; data
sets vidjax/recipes/datasets.py; test protocols vidjax/recipes/protocols.py.

The shift sits on the residual branch of blocks 0, 2, 4, ... of every stage (upstream's
n_round = 2 once layer3 has >= 23 blocks; `model.shift.n_round=0` picks it). Released:
Something-Something V1 and V2, 8 frames (reference/tsm_gc.md 1.9):

  python -m converters --source tsm --config configs/tsm_r101.py:sthv2 \
      --checkpoint TSM_somethingv2_RGB_resnet101_shift8_blockres_avg_segment8_e45.pth \
      --output ~/ckpt/tsm_r101_sthv2
  python -m vidjax.main --config configs/tsm_r101.py:sthv2_test2x3 --mode eval \
      --workdir /tmp/tsm_r101_eval --config.init_from=~/ckpt/tsm_r101_sthv2

Expected top-1: Sth-V1 46.9 (1 clip, 1 crop) / 48.7 (test2x3); Sth-V2 63.3 (test2x3).
Training: `python -m vidjax.main --config configs/tsm_r101.py:sthv1 --workdir DIR
--config.init_from=IMAGENET_R101` (lr 0.01, batch 64, steps 20/40, 50 epochs).

Variants: the parts of configs/tsm_r50.py (data set, 16f, dense, test
protocol); without a data set the Kinetics-400 recipe (no released R101 K400 model).
  demo   ResNet-101 + shift on the embedded demo data set (slower than the R50 demo).
  smoke  the tiniest member: ResNet-18 + shift, 4 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import tsm


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return tsm.tsm_config(arg, __file__, depth=101)
