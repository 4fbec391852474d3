r"""SlowOnly-ResNet-50 (Feichtenhofer et al., ICCV 2019's Slow pathway), 4x16x1, Kinetics-400.

Parts: recognizer3d (vidjax/models/recognizers.py), backbone resnet3d
(vidjax/models/backbones/resnet3d.py), head i3d (vidjax/models/heads/i3d.py). Recipe:
`MODELS["slowonly_r50"]` and `PARTS["slowonly_r50"]` in vidjax/recipes/mmaction2.py; data
set k400 (vidjax/recipes/datasets.py); test protocols mmaction2_val / mmaction2_test30
(vidjax/recipes/protocols.py).

Model (MMAction2 1.2.0 slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb): ResNet3d-50 with
conv1 (1, 7, 7), no temporal stride anywhere, no pool2, layer3 and layer4 inflated (3x1x1
conv1); I3DHead (dropout 0.5). Trained from scratch: the last BN of each block starts at
zero gain. Recipe: 4 frames 16 apart, short side 256, RandomResizedCrop to 224, flip; SGD
momentum 0.9, lr 0.2 for batch 128 (8 GPUs x 16), weight decay 1e-4 on every parameter,
gradient clipping at norm 40, 256 epochs: 34 warm-up epochs from lr x0.1, then cosine to
0. Eval: 1 centred clip, centre crop 224.

  python -m vidjax.main --config configs/slowonly_r50.py --workdir /tmp/slowonly_r50 \
      --config.data.root=~/data/kinetics400

Released checkpoints convert with the matching variant and test with it plus `test30`:
  python -m converters --source mmaction2 --config configs/slowonly_r50.py \
      --checkpoint slowonly_r50_4x16x1_256e_8xb16_kinetics400-rgb_20220901-f6a40d08.pth \
      --output ~/ckpt/slowonly_r50
  python -m vidjax.main --config configs/slowonly_r50.py:test30 --mode eval \
      --workdir /tmp/slowonly_eval --config.init_from=~/ckpt/slowonly_r50
(`configs/slowonly_r50.py:8x8_test30` for the 8x8 model, and so on.)

Expected top-1 (MMAction2 model zoo, test30): 72.68 (4x16); 8x8 74.82; r101_8x8 76.28;
nl 74.84 (4x16), nl_8x8 76.35.

Variants (`configs/slowonly_r50.py:VARIANT`, parts joined by ',' or '_'):
  sampling: 8x8    8 frames 8 apart (slowonly_r50_8xb16-8x8x1-256e).
            4x16   the default, named.
  model:    r101   ResNet3d-101, 196 epochs (slowonly_r101_8xb16-8x8x1-196e; published
                   8x8 only: `r101_8x8`).
            nl     non-local blocks (embedded Gaussian, scaled) after blocks 0 and 2 of
                   layer2 and 0, 2, 4 of layer3, ImageNet-initialised upstream
                   (`--config.init_from=DIR`): lr 0.01, 10 warm-up epochs from x0.1,
                   lr x0.1 at epochs 100 and 140, 150 epochs
                   (slowonly_r50-in1k-pre-nl-embedded-gaussian ... steplr-150e).
  data set: omnisource  OmniSource (Duan et al., ECCV 2020; vidjax/recipes/omnisource.py):
                   the recipe of the other parts trained on Kinetics-400 and web data at
                   once. Every batch holds 2/5 Kinetics clips and 1/5 each of web images
                   (an image repeated as a clip), Instagram clips and clips of the
                   untrimmed Kinetics videos (`data.sources`; lists `train_list.txt`
                   under ~/data/omnisource/webimage, insvideo and kinetics_raw, `path
                   label` lines with Kinetics labels); the recipe's batch is the Kinetics
                   share, so batch 320 and lr 0.5 (x2.5), an epoch one pass over
                   Kinetics. Each source's root, list, share and label map are fields of
                   `data.sources` (config_defaults.data_config, vidjax/data/mixture.py).
                   The releases convert onto `omnisource` (R50 4x16, test30 top-1 76.8:
                   slowonly_r50_omni_4x16x1_kinetics400_rgb_20200926-51b1f7ea.pth) and
                   `r101_8x8_omnisource` (80.4:
                   slowonly_r101_omni_8x8x1_kinetics400_rgb_20200926-b5dbb701.pth);
                   `--mode eval` reads the eval list only, so the web data need not be
                   there.
  test:     test1  1 centred clip, centre crop 224 (the default eval).
            test30 10 clips (MMAction2 1.x's 3D test sampling) x ThreeCrop(256) after
                   short side 256, softmax averaged.
  demo      the same architecture on the embedded demo data set (CPU, a few minutes): 4
            frames of 32x32, AdamW from scratch, one epoch:
              python -m vidjax.main --config configs/slowonly_r50.py:demo --workdir /tmp/so_demo
  smoke     the tiniest member for tests: ResNet3d-18 SlowOnly, 4 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import mmaction2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return mmaction2.build(arg, __file__, "slowonly_r50")
