r"""TIN-ResNet-50 (Shao et al., AAAI 2020; MMAction2's TIN), 1x1x8, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), temporal interlace tin
(vidjax/models/temporal/tin.py), head tsn (vidjax/models/heads/tsn.py), MMAction2's
TSMHead: fc per frame, then the mean. Recipe: `MODELS["tin_r50"]` in
vidjax/recipes/mmaction2.py; data set sthv1 (vidjax/recipes/datasets.py); test protocol
test1 (vidjax/recipes/protocols.py).

Model (MMAction2 tin_imagenet-pretrained-r50_8xb6-1x1x8-40e_sthv1-rgb): ResNet-50 whose
every block interlaces the first quarter of its residual branch's input channels in time
(learned fractional offsets and per-frame weights, shift_div 4), TSMHead with dropout
0.8, ImageNet mean/std. Recipe: 8 TSN segments, MultiScaleCrop to 224, flip; SGD momentum
0.9, lr 0.02 for batch 48 (8 GPUs x 6), weight decay 5e-4 (none on BatchNorm and biases),
fc at lr x5 / x10, gradient clipping at norm 20, 1 warm-up epoch from x0.1 then cosine
to half the lr at 40 epochs; ImageNet ResNet-50 initialisation upstream
(`--config.init_from=DIR`). Eval and test: 1 centred clip (8 segment centres), short
side 256, centre crop 224.

  python -m vidjax.main --config configs/tin_r50.py --workdir /tmp/tin_r50 \
      --config.data.root=~/data/sthv1/frames

Released checkpoints convert with `python -m converters --source mmaction2 --config
configs/tin_r50.py --checkpoint FILE.pth --output DIR` and are tested with `--mode eval
--config.init_from=DIR`.

Variants (`configs/tin_r50.py:VARIANT`):
  test:   test1    1 centred clip, centre crop 224 (the default eval, MMAction2's test).
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 4
          segments of 32x32, AdamW from scratch, one epoch:
            python -m vidjax.main --config configs/tin_r50.py:demo --workdir /tmp/tin_demo
          The interlace moves channels between frames, so the direction classes are
          learnable (configs/tsn_r50.py:demo, without it, cannot tell them apart).
  smoke   the tiniest member for tests: ResNet-18 + TIN, 4 segments of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_2d(arg, __file__, "tin_r50")
