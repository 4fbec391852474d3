"""The TSM code base's recipes (reference/tsm_gc.md 1.9), shared by configs/tsm_r50.py,
tsm_r101.py, nl_tsm_r50.py and tsm_mobilenetv2.py; each config file's docstring gives its
commands, variant parts and expected accuracies.
"""

from __future__ import annotations

import re

import ml_collections

from vidjax import config_defaults

DATASETS = ("sthv1", "sthv2", "jester", "ucf101", "hmdb51", "diving48")
TESTS = ("test1", "test2x3", "test30")
_PARTS = DATASETS + TESTS + ("16f", "dense", "demo", "smoke")
# Something-Something: left/right label pairs a horizontal flip swaps (GC's train scripts).
STH_FLIP_PAIRS = ((86, 87), (93, 94), (166, 167))


def parse_variant(arg: str, name: str, parts: tuple = _PARTS) -> set[str]:
  """'sthv2,16f' (or 'sthv2_16f') -> {'sthv2', '16f'}; a clear error for unknown or
  clashing parts."""
  chosen = {p.strip() for p in re.split(r"[,_]", arg) if p.strip()}
  unknown = sorted(chosen - set(parts))
  if unknown:
    raise ValueError(f"configs/{name}: unknown variant part(s) {unknown}; expected "
                     f"comma-separated parts from {', '.join(parts)}.")
  for group, title in ((DATASETS, "data set"), (TESTS, "test protocol"),
                       (("demo", "smoke"), "demo/smoke")):
    if len(chosen & set(group)) > 1:
      raise ValueError(f"configs/{name}: variant {arg!r} names more than one "
                       f"{title}: {sorted(chosen & set(group))}")
  if chosen & {"demo", "smoke"} and len(chosen) > 1:
    raise ValueError(f"configs/{name}: 'demo' and 'smoke' stand alone, got {arg!r}")
  if "dense" in chosen and chosen & set(DATASETS):
    raise ValueError(f"configs/{name}: 'dense' is the Kinetics recipe, not for "
                     f"{sorted(chosen & set(DATASETS))}")
  return chosen


def tsn_config(depth: int = 50, num_frames: int = 8) -> ml_collections.ConfigDict:
  """The TSM code base's TSN recipe on a ResNet of `depth` (Kinetics-400): the base that
  configs/tsn_r50.py, TSM and GC start from.

  SGD momentum 0.9, lr 0.02 for batch 128, weight decay 1e-4 (none on BatchNorm and
  biases), lr x0.1 at epochs 20 and 40 of 50, dropout 0.5, gradient clipping at global
  norm 20, new fc at lr x5 (weight) and x10 (bias); segment sampling, multi-scale crop
  and flip for training, 1 centre clip for eval.
  """
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(
      num_frames=num_frames, image_size=224, sampler="segments", train_resize=256,
      train_crop="multi_scale", flip=True, test_scale=256, test_crop="center", test_clips=1)
  config.model = ml_collections.ConfigDict(dict(
      name="recognizer2d",
      num_classes=400,
      pixel_mean=(123.675, 116.28, 103.53),
      pixel_std=(58.395, 57.12, 57.375),
      dtype="float32",
      backbone=ml_collections.ConfigDict(dict(
          name="resnet", depth=depth, strides=(1, 2, 2, 2), frozen_stages=-1,
          norm_eval=False, partial_bn=False, bn_eps=1e-5, bn_momentum=0.9, remat=False)),
      head=ml_collections.ConfigDict(dict(
          name="tsn", dropout_rate=0.5, fc_init_std=0.001, consensus="avg")),
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
  return config


def tsm_config(arg: str, name: str, depth: int = 50) -> ml_collections.ConfigDict:
  """The TSM recipe on a ResNet of `depth`, with the variant parts of this docstring."""
  parts = parse_variant(arg, name)
  config = tsn_config(depth)
  config.model.shift = ml_collections.ConfigDict(dict(enabled=True, n_div=8,
                                                      place="blockres", n_round=0))

  if "demo" in parts:
    config_defaults.use_demo(config)
    return config
  if "smoke" in parts:
    config_defaults.use_smoke(config)
    return config

  if "sthv1" in parts or "sthv2" in parts:
    v2 = "sthv2" in parts
    root = "~/data/sthv2" if v2 else "~/data/sthv1"
    config.data.update(
        name="somethingv2" if v2 else "somethingv1", format="frames", root=root + "/frames",
        train_list=root + "/train_videofolder.txt", eval_list=root + "/val_videofolder.txt",
        num_classes=174, filename_tmpl="{:06d}.jpg" if v2 else "{:05d}.jpg", start_index=1,
        flip=False, flip_label_map=STH_FLIP_PAIRS)
    config.model.num_classes = 174
    config.batch_size = 64
    config.optim.update(lr=0.01, weight_decay=5e-4)
  elif "jester" in parts:
    # TSM's code base reads Jester like Something (frame folders, no flip: gestures are
    # directional); the Something recipe, an assumption (no published Jester command).
    config.data.update(
        name="jester", format="frames", root="~/data/jester/frames",
        train_list="~/data/jester/train_videofolder.txt",
        eval_list="~/data/jester/val_videofolder.txt", num_classes=27,
        filename_tmpl="{:05d}.jpg", start_index=1, flip=False)
    config.model.num_classes = 27
    config.batch_size = 64
    config.optim.update(lr=0.01, weight_decay=5e-4)
  elif "ucf101" in parts or "hmdb51" in parts:
    # UCF101: the TSM README's fine-tuning recipe; HMDB51: the same, an assumption.
    name, classes = ("ucf101", 101) if "ucf101" in parts else ("hmdb51", 51)
    config.data.update(name=name, root=f"~/data/{name}",
                       train_list=f"~/data/{name}/{name}_train_split_1_videos.txt",
                       eval_list=f"~/data/{name}/{name}_val_split_1_videos.txt",
                       num_classes=classes)
    config.model.num_classes = classes
    config.model.head.dropout_rate = 0.8
    config.model.backbone.partial_bn = True
    config.batch_size = 64
    config.optim.update(lr=0.001, lr_steps=(10, 20), epochs=25.0)
  elif "diving48" in parts:
    # No TSM recipe upstream: GC's reading (the Something recipe, flip allowed, 16 frames).
    config.data.update(name="diving48", root="~/data/diving48",
                       train_list="~/data/diving48/train_videos.txt",
                       eval_list="~/data/diving48/test_videos.txt", num_classes=48,
                       num_frames=16)
    config.model.num_classes = 48
    config.batch_size = 64
    config.optim.update(lr=0.01)
  if "16f" in parts:
    config.data.num_frames = 16
  if "dense" in parts:
    t = config.data.num_frames
    config.data.update(sampler="dense", frame_interval=64 // t)
    config.optim.update(epochs=100.0, lr_steps=(40, 80))
  if "test2x3" in parts:
    config.data.update(image_size=256, test_scale=256, test_clips=2, test_sampling="twice",
                       test_crop="full_res_three")
    config.eval.num_views = 6
  elif "test30" in parts:
    config.data.update(image_size=256, test_scale=256, test_clips=10, test_sampling="uniform",
                       test_crop="full_res_three")
    config.eval.num_views = 30
  if parts & {"test2x3", "test30"}:
    config.eval.fusion = "mean_logits"   # TSM averages logits over views
    config.eval.batch_size = 4
  return config
