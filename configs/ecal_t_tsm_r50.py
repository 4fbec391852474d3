r"""ECal-T-TSM-ResNet-50 (GC paper's single temporal calibrator on TSM), 8 segments, Sth V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal ecal
(vidjax/models/temporal/gc.py), temporal shift (vidjax/models/temporal/shift.py). Recipe:
vidjax/recipes/gc.py; data sets vidjax/recipes/datasets.py; test protocols
vidjax/recipes/protocols.py.

Architecture (reference/tsm_gc.md 2.4): TSM-R50 (blockres shift, 1/8 + 1/8 of the
channels) with one ECal-T (spatial mean -> Conv1d k=3 over time -> BN -> sigmoid, a gate
per frame and channel) after bn2 of every bottleneck, on the first `width // cdiv`
channels. ASSUMPTION: the upstream module (`nets/ECal_TSM_S.py`) was never published;
this is the only reconstruction consistent with the published code: GC_TSM's block
(inline shift, keys without `.net`) with ECal_TSN's single `eft`
(`layerS.B.eft.conv.weight (c,c,3)`, `eft.bn1.*`). A real checkpoint may differ.

  python -m converters --source gc --config configs/ecal_t_tsm_r50.py \
      --checkpoint ECAL_T_TSM.pth --output ~/ckpt/ecal_t_tsm
  python -m vidjax.main --config configs/ecal_t_tsm_r50.py --workdir /tmp/ecal_t_tsm \
      --config.init_from=~/ckpt/imagenet_r50 --config.data.root=~/data/sthv1/frames

Recipe: GC's TSM Something recipe (configs/gc_tsm_r50.py) with a single ECal-T, cdiv 4.
Expected: no published number or weights in the GC README (paper ablation only).
`r16` reads a table's "r = 16" as cdiv 16 (see configs/ecal_l_tsn_r50.py).

Variants: as configs/gc_tsn_r50.py (data set sthv1 | sthv2 | k400 | diving48, 16f,
test | test3, joined by ',' or '_'; demo; smoke), plus the model part `r16`.
"""

import ml_collections

from vidjax.recipes import gc


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return gc.build(arg, file=__file__, calibrators=("T",), shift=True,
                  model_parts=gc.CDIV_PARTS)
