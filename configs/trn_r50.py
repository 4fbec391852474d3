r"""TRN-ResNet-50 (Zhou et al., ECCV 2018; MMAction2's TRN), 1x1x8, Something-Something V1.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head trn (vidjax/models/heads/trn.py), MMAction2's
TRNHead. Recipe: `MODELS["trn_r50"]` in vidjax/recipes/mmaction2.py; data set sthv1
(vidjax/recipes/datasets.py); test protocols test1 / mmaction2_sth_test2x3
(vidjax/recipes/protocols.py).

Model (MMAction2 trn_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv1-rgb): the plain
ResNet-50 per frame, then TRNHead: dropout 0.8, a per-frame fc to 256, and multi-scale
temporal relations: an MLP per scale s = 8, 7, ..., 2 on the features of s frames in time
order (all 8 frames; 3 tuples of each smaller scale), their logits summed. Upstream draws
those tuples with NumPy's global RNG at every forward, test time included; here the
evaluation draws them from `model.relation_seed` in upstream's call order (seed S
gives upstream's forward after `np.random.seed(S)`; a fixed seed makes evaluation
deterministic), training draws fresh ones every step. Recipe: 8 TSN segments, MultiScaleCrop
to 224, flip with the data set's label pairs; partial BN; SGD momentum 0.9, lr 0.002 for
batch 128 (8 GPUs x 16), weight decay 5e-4 (none on BatchNorm and biases; biases at lr
x2), gradient clipping at norm 20, lr x0.1 at epochs 30 and 45, 50 epochs; ImageNet
ResNet-50 initialisation upstream (`--config.init_from=DIR`).

  python -m vidjax.main --config configs/trn_r50.py --workdir /tmp/trn_r50 \
      --config.data.root=~/data/sthv1/frames

Released checkpoints convert with `python -m converters --source mmaction2 --config
configs/trn_r50.py --checkpoint FILE.pth --output DIR`; test with
`configs/trn_r50.py:test2x3 --mode eval --config.init_from=DIR`.

Expected top-1 (MMAction2 model zoo, sthv1): 31.62 (1 clip, centre crop) / 33.88 (test2x3).

Variants (`configs/trn_r50.py:VARIANT`):
  test:   test1    1 centred clip, centre crop 224 (the default eval).
          test2x3  MMAction2's test: twice sample (2 clips of 8 segments) x ThreeCrop(256)
                   after short side 256, softmax averaged (6 views).
  demo    the same architecture on the embedded demo data set (CPU, a few minutes): 4
          segments of 32x32 (relations of 4, 3 and 2 frames), AdamW from scratch (every
          BatchNorm training), one epoch:
            python -m vidjax.main --config configs/trn_r50.py:demo --workdir /tmp/trn_demo
          The relations read the frames in order, so the direction classes are learnable
          (configs/tsn_r50.py:demo, a mean over frames, cannot tell them apart).
  smoke   the tiniest member for tests: ResNet-18 + TRNHead, 4 segments of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build_2d(arg, __file__, "trn_r50")
