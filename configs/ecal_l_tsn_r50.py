r"""ECal-L-TSN-ResNet-50 (GC paper's single local calibrator), 8 segments, Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal ecal
(vidjax/models/temporal/gc.py). Recipe: vidjax/recipes/gc.py; data sets
vidjax/recipes/datasets.py; test protocols vidjax/recipes/protocols.py.

Architecture (reference/tsm_gc.md 2.3-2.4, upstream nets/ECal_TSN.py with `--net L33D`):
TSN-R50 with one ECal-L (a (3,1,1) temporal conv over the group's channels -> BN ->
sigmoid gate) after bn2 of every bottleneck, on the first `width // cdiv` channels; the
other channels pass unchanged. Upstream keys `layerS.B.eft.conv.weight (c,c,3,1,1)`,
`eft.bn1.*`.

  python -m converters --source gc --config configs/ecal_l_tsn_r50.py \
      --checkpoint TSN_L33D_resnet50_..._ef4_....pth --output ~/ckpt/ecal_l_tsn
  python -m vidjax.main --config configs/ecal_l_tsn_r50.py --workdir /tmp/ecal_l \
      --config.init_from=~/ckpt/imagenet_r50 --config.data.root=~/data/sthv1/frames

Recipe: GC's Something recipe (configs/gc_tsn_r50.py) with `--net L33D --cdiv 4`.
Expected: the GC README publishes no single-ECal results or weights; the paper's
ablations report them (not reproduced here).

The channel divisor: every released GC script uses cdiv 4 (the default here). A table
that says "r = 16" for a single ECal is read as cdiv = 16 (the code has no reduction
ratio; reference/tsm_gc.md 2.4, an open question): add the model part `r16`.

Variants: as configs/gc_tsn_r50.py (data set sthv1 | sthv2 | k400 | diving48, 16f,
test | test3, joined by ',' or '_'; demo; smoke), plus the model part `r16` (cdiv 16),
e.g. `r16`, `sthv2_r16_test`, `r16_smoke`.
"""

import ml_collections

from vidjax.recipes import gc


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return gc.build(arg, file=__file__, calibrators=("L",), model_parts=gc.CDIV_PARTS)
