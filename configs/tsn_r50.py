r"""TSN-ResNet-50, 8 segments, Kinetics-400 (the TSM code base's TSN recipe).

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

Variants:
  demo   the same architecture on the embedded demo data set (CPU, a few minutes):
         python -m vidjax.main --config configs/tsn_r50.py:demo --workdir /tmp/tsn_demo
         expected: eval/top1 well above chance (1/6) but below temporal models, since a
         bag of frames cannot tell the direction classes apart.
  smoke  the tiniest model of the family (ResNet-18, 2 frames of 32x32), for tests.
"""

import ml_collections

from vidjax import config_defaults
from vidjax.data import demo


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(
      num_frames=8, image_size=224, sampler="segments", train_resize=256,
      train_crop="multi_scale", flip=True, test_scale=256, test_crop="center", test_clips=1)
  config.model = ml_collections.ConfigDict(dict(
      name="tsn",
      num_classes=400,
      dropout_rate=0.5,
      pixel_mean=(123.675, 116.28, 103.53),
      pixel_std=(58.395, 57.12, 57.375),
      fc_init_std=0.001,
      consensus="avg",
      dtype="float32",
      backbone=ml_collections.ConfigDict(dict(
          name="resnet", depth=50, strides=(1, 2, 2, 2), frozen_stages=-1,
          norm_eval=False, partial_bn=False, bn_eps=1e-5, bn_momentum=0.9)),
  ))
  config.batch_size = 128
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.02, momentum=0.9, nesterov=False, weight_decay=1e-4,
      epochs=50.0, schedule="step", lr_steps=(20, 40), lr_decay=0.1,
      warmup_epochs=0.0, warmup_start_factor=0.0, min_lr=0.0, clip_grad_norm=20.0,
      param_groups=(
          {"regex": r"fc/kernel$", "lr_mult": 5.0, "decay_mult": 1.0},
          {"regex": r"fc/bias$", "lr_mult": 10.0, "decay_mult": 0.0},
      ),
      no_decay=(r"bias$", r"scale$"),
  ))
  config.eval.batch_size = 64

  if arg == "demo":
    config.data = config_defaults.demo_data()
    config.model.num_classes = len(demo.CLASS_NAMES)
    config.batch_size = 16
    config.eval.batch_size = 64
    # From scratch (no ImageNet weights here), AdamW learns the demo in one epoch where
    # the recipe's SGD needs ImageNet initialisation.
    config.optim.update(name="adamw", lr=1e-3, weight_decay=0.05, epochs=1.0,
                        schedule="cosine", warmup_epochs=0.15)
    config.optim.param_groups = ()
    config.log_every_steps = 20
    config.checkpoint_every_steps = 60
  elif arg == "smoke":
    config.data = config_defaults.demo_data(num_frames=2, image_size=32, source_frames=4,
                                            train_examples=32, eval_examples=20)
    config.model.num_classes = len(demo.CLASS_NAMES)
    config.model.backbone.depth = 18
    config.batch_size = 8
    config.eval.batch_size = 8
    config.optim.update(lr=0.01, epochs=3.0, schedule="cosine")
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
  elif arg:
    raise ValueError(f"configs/tsn_r50.py: unknown variant {arg!r}; expected '', 'demo' or "
                     "'smoke'.")
  return config
