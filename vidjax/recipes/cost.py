"""CoST's recipes (hikvision-research/cost, Kinetics-400 configs of its release) as tables,
for configs/cost_r50.py; its docstring gives the commands, the variant parts and the
accuracies.

Every model of the release shares one recipe (`BASE`): the 'cost' backbone
(vidjax/models/backbones/cost.py) with I3DHead (dropout 0.5) and ImageNet mean/std; 8
frames 8 apart; SGD momentum 0.9, lr 0.01 for batch 64 (8 GPUs x 8), weight decay 1e-4 on
every parameter, gradient clipping at global norm 40; 160 epochs with lr x0.1 at epochs 80
and 120; ImageNet-initialised 2D weights upstream (`--config.init_from=DIR`). Eval: 1
centred clip, short side 256, centre crop 224; test (`test30`): 10 clips x ThreeCrop(256)
after short side 256, softmax averaged.

Upstream trains on RandomRescale(short side 256..320) + RandomCrop(224) + flip; vidjax has
no scale-jittered random crop, so the recipe takes the range's lower end: short side 256,
a uniformly placed 224 crop (multi_scale with the one scale 0.875, random offsets), flip.
The release runs on MMAction2 0.24.1, whose test clips sit at the centres of 10 equal
chunks; `test30` uses MMAction2 1.x's 3D test sampling (vidjax/data/sampling.py), as the
MMAction2 recipes do.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from vidjax import config_defaults, models
from vidjax.models.backbones.cost import COST_INFLATE
from vidjax.models.backbones.resnet3d import fit_pattern
from vidjax.recipes import datasets, protocols, set_fields, variant
from vidjax.train import optim

# costb_r50_8x8x1_160e_kinetics400_rgb (and its base model i3d_r50_8f with 'costb').
BASE: dict[str, Any] = {
    "model.backbone.conv1_kernel": (1, 7, 7), "model.backbone.inflate": COST_INFLATE,
    "model.backbone.inflate_style": "costb", "model.backbone.zero_init_residual": False,
    "data.train_resize": 256, "data.train_crop": "multi_scale", "data.scales": (0.875,),
    "data.max_distort": 0, "data.fix_crop": False, "data.more_fix_crop": False,
    "batch_size": 64, "optim.lr": 0.01, "optim.epochs": 160.0, "optim.schedule": "step",
    "optim.lr_steps": (80, 120),
}
SAMPLING = (8, 8)   # clip_len x frame_interval

# Model variant parts: changes on BASE (and the sampling of the 32-frame model).
PARTS: dict[str, dict[str, Any]] = {
    # costa_r50_8x8x1_160e_kinetics400_rgb
    "a": {"model.backbone.inflate_style": "costa"},
    # c2d_r50_8x8x1_160e_kinetics400_rgb (c2d_r50_8f): no block inflated.
    "c2d": {"model.backbone.inflate": (0, 0, 0, 0)},
    # i3d_r50_8x8x1_160e_kinetics400_rgb (i3d_r50_8f): CoST's pattern, 3x1x1 conv1.
    "i3d": {"model.backbone.inflate_style": "3x1x1"},
    # costb_r101_32f (a base model file; no Kinetics config ships with it): conv1 (5, 7,
    # 7) with temporal stride 2, stem pool stride 2 (its (2, 3, 3) window), every other
    # block inflated from block 1 of layer1. 32 frames 2 apart, as MMAction2's 32-frame
    # I3D samples them.
    "r101_32f": {"model.backbone.depth": 101, "model.backbone.conv1_kernel": (5, 7, 7),
                 "model.backbone.conv1_stride_t": 2, "model.backbone.pool1_stride_t": 2,
                 "model.backbone.inflate": ((0, 1, 0), (1, 0, 1, 0), (1, 0) * 11 + (1,),
                                            (0, 1, 0)),
                 "data.num_frames": 32, "data.frame_interval": 2},
}
TESTS = ("test1", "test30")
DEMO_FRAMES = 8   # the 32-frame model: enough for conv1's and the stem pool's strides too


def base_config() -> ml_collections.ConfigDict:
  """CoST(b)-R50 on Kinetics-400 (no variant)."""
  clip_len, interval = SAMPLING
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=clip_len, sampler="dense",
                                            frame_interval=interval)
  config.model = models.default_config("recognizer", "recognizer3d")
  config.model.backbone = models.default_config("backbone", "cost")
  datasets.apply(config, "k400")
  protocols.apply(config, "mmaction2_val")
  config.optim = optim.default_config()
  config.optim.update(momentum=0.9, weight_decay=1e-4, clip_grad_norm=40.0, no_decay=())
  set_fields(config, BASE)
  return config


def build(arg: str, file: str) -> ml_collections.ConfigDict:
  """The config of variant `arg` of `file` (configs/cost_r50.py's `__file__`)."""
  v = variant.parse(arg, file, model=tuple(PARTS), test=TESTS, run=variant.RUNS)
  config = base_config()
  set_fields(config, PARTS.get(v.model, {}))
  if v.run:
    _small(config, v.run)
  elif v.test:
    protocols.apply(config, "mmaction2_test30" if v.test == "test30" else "mmaction2_val")
  return config


def _small(config: ml_collections.ConfigDict, run: str) -> None:
  """demo: the same architecture on the demo data set; smoke: a CoST-R50 of base width 8
  (the release has no smaller trunk than ResNet-50)."""
  if run == "demo":
    config_defaults.use_demo(config)
    config.optim.no_decay = ("bias", "scale")
    config.data.update(num_frames=DEMO_FRAMES, source_frames=8)
  else:
    backbone = config.model.backbone
    inflate = backbone.inflate
    config_defaults.use_smoke(config, num_frames=DEMO_FRAMES, source_frames=8, depth=50)
    backbone.inflate = fit_pattern(inflate, (3, 4, 6, 3))
    backbone.base_channels = 8
  config.data.update(sampler="dense", frame_interval=1, test_sampling="mmaction2_3d")
