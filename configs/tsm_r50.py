r"""TSM-ResNet-50 (Lin et al., ICCV 2019), 8 segments, Kinetics-400: the TSM code base's recipe.

Parts: recognizer2d (vidjax/models/recognizers.py), backbone resnet
(vidjax/models/backbones/resnet.py), head tsn (vidjax/models/heads/tsn.py), temporal shift
(vidjax/models/temporal/shift.py). Recipe: vidjax/recipes/tsm.py (`RECIPES`: one row per
data set); data sets vidjax/recipes/datasets.py; test protocols vidjax/recipes/protocols.py.

Model: TSN-ResNet-50 with the temporal shift on the residual branch of every block
(shift_div 8, 'blockres'), dropout 0.5, new fc, average consensus; ImageNet mean/std.
Recipe (reference/tsm_gc.md 1.9): SGD momentum 0.9, lr 0.02 for batch 128, weight decay
1e-4 (none on BatchNorm and biases), lr x0.1 at epochs 20 and 40, 50 epochs, gradient
clipping at global norm 20, all BatchNorms training (`--npb`), new fc at lr x5 (weight)
and x10 (bias), ImageNet initialisation (`--config.init_from=DIR`, e.g. torchvision's R50
converted). Data: TSN segments, multi-scale crop to 224 + horizontal flip; eval 1 centre
clip (short side 256, centre crop 224).

  python -m vidjax.main --config configs/tsm_r50.py --workdir /tmp/tsm_r50 \
      --config.data.root=~/data/kinetics400

Released checkpoints convert with the matching variant, e.g.
  python -m converters --source tsm --config configs/tsm_r50.py:dense \
      --checkpoint TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e100_dense.pth \
      --output ~/ckpt/tsm_r50_dense
  python -m vidjax.main --config configs/tsm_r50.py:dense_test30 --mode eval \
      --workdir /tmp/tsm_eval --config.init_from=~/ckpt/tsm_r50_dense

Expected top-1 (TSM README): 71.2 (8f, 1 clip, 1 crop).

Variants: parts joined by commas or underscores, e.g. `configs/tsm_r50.py:sthv2_16f_test2x3`.
  data set (one): (none or k400) Kinetics-400.
            sthv1   Something-Something V1 (174 classes, frame folders): lr 0.01 for
                    batch 64, weight decay 5e-4 (the README command omits --wd; the paper
                    says 1e-4), steps 20/40, 50 epochs (released files say e45), no flip
                    (TSM does not flip Something; `data.flip_label_map` holds the
                    left/right label pairs GC swaps, so `--config.data.flip=True` gives
                    GC's flip). Expected 45.6 (8f, 1 clip 1 crop), 47.2 (test2x3).
            sthv2   Something-Something V2, the same recipe: 61.2 (8f, test2x3).
            jester  Jester (27 classes, frame folders, no flip): the Something recipe (an
                    assumption: upstream publishes no Jester command).
            hmdb51  as ucf101 with 51 classes (an assumption: the README gives UCF101's).
            diving48  48 classes, 16 frames, the Something lr with flip (GC's reading; no
                    TSM recipe upstream).
            ucf101  fine-tuning from a Kinetics TSM (`--config.init_from`; the 400-way fc
                    is dropped): lr 0.001, steps 10/20, 25 epochs, batch 64, dropout 0.8,
                    partial BN; no accuracy is given upstream.
  frames:   16f     16 segments (K400: 72.6; sthv1: 47.2 / 48.4; sthv2: 63.1).
  sampling: dense   I3D-style dense clips: T frames 64 // T apart (MMAction2 dense
                    sampler, frame_interval 8 for 8f), 100 epochs (K400 only; upstream
                    gives no lr steps for it: 40/80 here, an assumption). 74.1 with test30.
  test protocol (eval, `--mode eval --config.init_from=DIR`):
            test1   1 clip, short side 256, centre crop 224 (the default eval).
            test2x3 TSM's twice sample (2 clips) x 3 full-resolution 256x256 crops
                    (left/centre/right of the 256 short side), logits averaged (6 views).
                    The README's Something command omits --full_res (crops of 224); use
                    `--config.data.image_size=224 --config.data.test_crop=three_crop` for it.
            test30  10 clips x 3 full-resolution crops (30 views; with `dense`: 10 dense
                    clips spread evenly, TSM's --dense_sample; MMAction2 rounds the starts
                    where TSM floors them, at most one frame apart).
  demo      the same architecture on the embedded demo data set (CPU, a few minutes):
              python -m vidjax.main --config configs/tsm_r50.py:demo --workdir /tmp/tsm_demo
            4 frames of 32x32, AdamW from scratch, one epoch. The shift lets frames
            exchange information, so the direction classes become learnable: expected
            well above configs/tsn_r50.py:demo, the same net without shift (README, demo
            table).
  smoke     the tiniest member for tests: ResNet-18 + shift, 4 frames of 32x32.
"""

import ml_collections

from vidjax.recipes import tsm


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return tsm.tsm_config(arg, __file__, depth=50)
