r"""TSM-MobileNetV2, 8 dense frames, Kinetics-400 (the TSM code base).

Parts: recognizer2d (vidjax/models/recognizers.py), backbone mobilenet_v2
(vidjax/models/backbones/mobilenet_v2.py), head tsn (vidjax/models/heads/tsn.py), temporal
shift (vidjax/models/temporal/shift.py). Recipe: `build` in vidjax/recipes/tsm.py (the
dense Kinetics recipe); data set k400 (vidjax/recipes/datasets.py); test protocols
vidjax/recipes/protocols.py.

Model (reference/tsm_gc.md 1.7): TSM's MobileNetV2 (width 1.0; archs/mobilenet_v2.py
layout) with the shift (shift_div 8) on the residual branch of the 10 inverted-residual
blocks that have an expansion layer and a residual connection (features 3, 5, 6, 8, 9,
10, 12, 13, 15, 16), mean pooling, dropout 0.5, new fc (1280 -> K), average consensus.
Recipe: the Kinetics dense recipe of configs/tsm_r50.py:dense (dense clips 64 // T frames
apart, 100 epochs, SGD lr 0.02 for batch 128, wd 1e-4, clip 20, fc x5/x10), from
ImageNet MobileNetV2 weights (`--config.init_from`). Upstream publishes no separate
MobileNetV2 training command; this is the R50 dense recipe, an assumption.

  python -m converters --source tsm --config configs/tsm_mobilenetv2.py \
      --checkpoint TSM_kinetics_RGB_mobilenetv2_shift8_blockres_avg_segment8_e100_dense.pth \
      --output ~/ckpt/tsm_mbv2
  python -m vidjax.main --config configs/tsm_mobilenetv2.py:test30 --mode eval \
      --workdir /tmp/tsm_mbv2_eval --config.init_from=~/ckpt/tsm_mbv2

Expected top-1 (TSM README): 69.5 with 10 dense clips x 3 full-res crops (test30);
MMAction2's conversion of the same checkpoint reports 69.54. The converter accepts the
final Linear as `new_fc.*` or `base_model.classifier.*`.

Variants:
  test1, test30  the test protocols of configs/tsm_r50.py.
  demo   the same architecture on the embedded demo data set (4 frames of 32x32, AdamW
         from scratch, lr 3e-3, 2 epochs: the demo's lr 1e-3 for one epoch learns far
         less on this net):
           python -m vidjax.main --config configs/tsm_mobilenetv2.py:demo --workdir /tmp/mbv2
         expected: eval/top1 well above chance (1/6) (README, demo table).
  smoke  the same MobileNetV2 (the family's smallest member), 2 frames of 32x32.
"""

import ml_collections

from vidjax import models
from vidjax.recipes import tsm, variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = variant.parse(arg, __file__, test=("test1", "test30"), run=variant.RUNS)
  config = tsm.build(v, dense=True)
  config.model.backbone = models.default_config("backbone", "mobilenet_v2")
  if v.run == "smoke":
    config.data.num_frames = 2
  elif v.run == "demo":
    config.optim.update(lr=3e-3, epochs=2.0)
  return config
