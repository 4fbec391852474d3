r"""NL-TSM-ResNet-50: TSM-R50 with 5 non-local blocks, 8 dense frames, Kinetics-400.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal shift
(vidjax/models/temporal/shift.py), temporal non_local (vidjax/models/temporal/non_local.py).
Recipe: `build` in vidjax/recipes/tsm.py (the dense Kinetics recipe); data set k400
(vidjax/recipes/datasets.py); test protocols vidjax/recipes/protocols.py.

Model (reference/tsm_gc.md 1.4): TSM-R50 ('blockres' shift in every block) plus TSM's
NL3D ("embedded Gaussian", sub-sampled phi/g, BN after W, no scaling) on the output of
layer2 blocks 0, 2 and layer3 blocks 0, 2, 4, over T x H x W of each clip. Recipe: the
Kinetics script plus `--non_local` (issue #121) on the dense model: dense clips (T frames
64 // T apart), 100 epochs, SGD lr 0.02 for batch 128, wd 1e-4, clip 20, fc x5/x10.

  python -m vidjax.main --config configs/nl_tsm_r50.py --workdir /tmp/nl_tsm_r50 \
      --config.init_from=IMAGENET_R50 --config.data.root=~/data/kinetics400
  python -m converters --source tsm --config configs/nl_tsm_r50.py \
      --checkpoint TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense_nl.pth \
      --output ~/ckpt/nl_tsm_r50
  python -m vidjax.main --config configs/nl_tsm_r50.py:test30 --mode eval \
      --workdir /tmp/nl_eval --config.init_from=~/ckpt/nl_tsm_r50

Expected top-1 (TSM README): 75.6 with 10 dense clips x 3 full-res crops (test30).
MMAction2's NL modes are fields: `--config.model.non_local.mode=gaussian|dot_product`.

Variants:
  test1, test30  the test protocols of configs/tsm_r50.py.
  demo   the same architecture on the embedded demo data set: 4 frames of 32x32 would
         leave 2x2 maps in layer3 (1x1 after the NL pooling), so the demo clips are 64x64.
  smoke  the tiniest member: ResNet-18 + shift + NL after layer2/layer3 block 0, 4 frames
         of 64x64 (NL needs maps of at least 2x2 after its pooling).
"""

import ml_collections

from vidjax import config_defaults
from vidjax.recipes import tsm, variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = variant.parse(arg, __file__, test=("test1", "test30"), run=variant.RUNS)
  config = tsm.build(v, dense=True)
  config.model.non_local.enabled = True   # the non-local defaults are TSM's NL3D
  if v.run == "demo":
    config.data = config_defaults.demo_data(image_size=64)
  elif v.run == "smoke":
    config.data.image_size = 64
    config.model.non_local.positions = ((0, 0), (1, 0), (1, 0), (0, 0))
  return config
