r"""TSN-ResNet-50, 8 segments, Kinetics-400 (the TSM code base's TSN recipe).

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py). Recipe:
`tsn_config` in vidjax/recipes/tsm.py; data set k400 (vidjax/recipes/datasets.py), eval
protocol test1 (vidjax/recipes/protocols.py).

Recipe (TSM repo, Kinetics TSN/TSM): SGD momentum 0.9, lr 0.02 for batch 128, weight
decay 1e-4 (none on BatchNorm and biases), lr x0.1 at epochs 20 and 40, 50 epochs,
dropout 0.5, gradient clipping at global norm 20, new fc at lr x5 (weight) and x10 (bias),
ImageNet initialisation through `--config.init_from=DIR`. Data: a `path label` video list
(or `--config.data.format=frames` for TSM's frame lists); training clips take one random
frame per segment, short side 256, TSN multi-scale crop to 224 (scales 1, .875, .75, .66,
13 fixed positions), horizontal flip. Eval: 1 centre clip (segment centres, short side
256, centre crop 224).

  python -m vidjax.main --config configs/tsn_r50.py --workdir /tmp/tsn_r50 \
      --config.data.root=~/data/kinetics400

Expected: no upstream figure is recorded here for this exact recipe (the model is verified
by parity, README model zoo); configs/tsm_r50.py, the same recipe plus the shift,
expects 71.2 top-1.

Variants:
  omnisource  OmniSource (Duan et al., ECCV 2020; vidjax/recipes/omnisource.py): the
         released TSN-R50's recipe, MMAction2's TSN (3 segments, multi-scale crop with
         its 5 fixed positions, dropout 0.4, SGD lr 0.01 for 256 clips, weight decay 1e-4
         on every parameter, clipping at norm 40, lr x0.1 at epochs 40 and 80, 100
         epochs, ImageNet init), trained on Kinetics-400 and web data at once: every
         batch holds 2/5 Kinetics clips and 1/5 each of web images (an image repeated as
         3 frames), Instagram clips and clips of the untrimmed Kinetics videos
         (`data.sources`; the lists `train_list.txt` under ~/data/omnisource/webimage,
         insvideo and kinetics_raw, `path label` lines with Kinetics labels): batch 640,
         lr 0.025. An epoch is one pass over Kinetics. Each source's root, list, share
         and label map are fields of `data.sources` (config_defaults.data_config,
         vidjax/data/mixture.py), e.g. `--config.data.sources="({'kind': 'videos',
         'share': 0.5}, {'kind': 'images', 'root': '~/web', 'share': 0.5})"`.
         The released checkpoint (Kinetics-400 top-1 73.6 on its test, 25 segments x
         TenCrop with the features averaged; the IG-1B-pretrained release, 75.7, is the
         same TSN-R50) converts onto it; `--mode eval` reads the eval list only:
    python -m converters --source mmaction2 --config configs/tsn_r50.py:omnisource \
      --checkpoint tsn_imagenet_pretrained_r50_omni_1x1x3_kinetics400_rgb_20200926-54192355.pth \
      --output ~/ckpt/tsn_r50_omni
    python -m vidjax.main --config configs/tsn_r50.py:omnisource --mode eval \
      --workdir /tmp/tsn_omni_eval --config.init_from=~/ckpt/tsn_r50_omni \
      --config.data.num_frames=25 --config.data.test_crop=ten_crop \
      --config.eval.num_views=10 --config.eval.fusion=mean_logits
  demo   the same architecture on the embedded demo data set (CPU, a few minutes):
         python -m vidjax.main --config configs/tsn_r50.py:demo --workdir /tmp/tsn_demo
         expected: eval/top1 well above chance (1/6) but below the temporal models, since
         a bag of frames cannot tell the direction classes apart (README, demo table).
  smoke  the tiniest model of the family (ResNet-18, 2 frames of 32x32), for tests.
"""

import ml_collections

from vidjax import config_defaults
from vidjax.recipes import omnisource, tsm, variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = variant.parse(arg, __file__, dataset=("omnisource",), run=variant.RUNS)
  config = tsm.tsn_config()
  if v.run == "demo":
    config_defaults.use_demo(config)
  elif v.run == "smoke":
    config_defaults.use_smoke(config, num_frames=2, source_frames=4)
  elif v.dataset == "omnisource":
    omnisource.tsn(config)
  return config
