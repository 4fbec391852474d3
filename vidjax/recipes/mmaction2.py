"""MMAction2's recognition recipes (the 1.2.0 model-zoo configs) as tables, shared by
configs/c2d_r50.py, i3d_r50.py and slowonly_r50.py; each config's docstring gives its
commands, variant parts and the zoo's accuracies.

A recipe is the registry's recognizer3d (ResNet3d-50 + I3DHead, ImageNet mean/std) and
the optimiser's defaults, changed by one row of `MODELS` (the model's base config) and
one of its `PARTS` (a model variant); the sampling (`clip_len x frame_interval x 1`), the
training crop, the batch and the schedule are data too. What every MMAction2 recipe
shares: SGD with momentum 0.9 and weight decay 1e-4 on every parameter (no paramwise
options upstream: BN and biases decay too), gradient clipping at global norm 40,
horizontal flip, the Kinetics-400 video lists, evaluation on 1 centred clip (short side
256, centre crop 224) and the 30-view test (`test30`: 10 clips spread by MMAction2 1.x's
3D test sampling x ThreeCrop, softmax averaged: `average_clips='prob'`).

mmengine schedulers in these files count epochs and start at their `begin`: a
MultiStepLR beginning at epoch 10 with milestones [90, 130] decays at epochs 100 and 140,
as written here. Upstream steps warm-up and cosine per epoch; vidjax per step
(vidjax/train/optim.py).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from vidjax import config_defaults, models
from vidjax.models.backbones.resnet3d import fit_pattern
from vidjax.recipes import datasets, omnisource, protocols, set_fields, variant
from vidjax.train import optim

I3D_INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
I3D_NON_LOCAL = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))
SLOWONLY_NON_LOCAL = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))

# MMAction2's MultiScaleCrop with random_crop=False: its 5 fixed positions, width and
# height scales at most `max_wh_scale_gap` apart; then a resize to 224.
_MULTI_SCALE = {"data.train_crop": "multi_scale", "data.fix_crop": True,
                "data.more_fix_crop": False}
_STEP_100E = {"optim.epochs": 100.0, "optim.schedule": "step", "optim.lr_steps": (40, 80)}

# Model -> its base config (the zoo file of the config's default), as changes on the
# registry's recognizer3d and the optimiser's defaults; `sampling`: clip_len x interval;
# `test`: the protocol of the `test30` part.
MODELS: dict[str, dict[str, Any]] = {
    # c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb
    "c2d_r50": dict(sampling=(8, 8), test="mmaction2_c2d_test30", fields={
        "model.backbone.name": "c2d",
        **_MULTI_SCALE, "data.scales": (1.0, 0.875, 0.75, 0.66), "data.max_distort": 1,
        "batch_size": 256, "optim.lr": 0.01, **_STEP_100E}),
    # i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb
    "i3d_r50": dict(sampling=(32, 2), test="mmaction2_test30", fields={
        "model.backbone.conv1_kernel": (5, 7, 7), "model.backbone.conv1_stride_t": 2,
        "model.backbone.pool1_stride_t": 2, "model.backbone.inflate": I3D_INFLATE,
        "model.backbone.zero_init_residual": False,
        **_MULTI_SCALE, "data.scales": (1.0, 0.8), "data.max_distort": 0,
        "batch_size": 64, "optim.lr": 0.01, **_STEP_100E}),
    # slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb (from scratch)
    "slowonly_r50": dict(sampling=(4, 16), test="mmaction2_test30", fields={
        "model.backbone.conv1_kernel": (1, 7, 7), "model.backbone.inflate": (0, 0, 1, 1),
        "model.backbone.with_pool2": False,
        "data.train_crop": "random_resized",
        "batch_size": 128, "optim.lr": 0.2, "optim.epochs": 256.0, "optim.schedule": "cosine",
        "optim.warmup_epochs": 34.0, "optim.warmup_start_factor": 0.1}),
}

# Model variant parts of each model, as changes on its base config.
PARTS: dict[str, dict[str, dict[str, Any]]] = {
    "c2d_r50": {
        # c2d_r50-in1k-pre-nopool_...: TSN-R50 on the 8 frames (Recognizer2D, TSNHead with
        # dropout 0.4); its head averages every frame of every view before the fc, so the
        # views' logits are averaged.
        "nopool": {"model.name": "recognizer2d", "model.backbone.name": "resnet",
                   "model.head.name": "tsn", "model.head.dropout_rate": 0.4,
                   "model.head.fc_init_std": 0.01, "eval.fusion": "mean_logits"},
    },
    "i3d_r50": {
        # i3d_imagenet-pretrained-r50-heavy_8xb8-32x2x1-100e: every block inflated, no
        # temporal stride in the stem.
        "heavy": {"model.backbone.inflate": (1, 1, 1, 1), "model.backbone.conv1_stride_t": 1,
                  "model.backbone.pool1_stride_t": 1},
        **{f"nl_{mode}": {"model.backbone.non_local": I3D_NON_LOCAL,
                          "model.backbone.non_local_cfg.mode": mode}
           for mode in ("embedded_gaussian", "gaussian", "dot_product")},
    },
    "slowonly_r50": {
        # slowonly_r101_8xb16-8x8x1-196e (with the 8x8 part): 196 epochs, cosine after the
        # 34-epoch warm-up.
        "r101": {"model.backbone.depth": 101, "optim.epochs": 196.0},
        # slowonly_r50-in1k-pre-nl-embedded-gaussian_8xb16-{4x16x1,8x8x1}-steplr-150e:
        # ImageNet-initialised, lr 0.01, 10 warm-up epochs from 0.1, steps at 100 and 140.
        # 150 epochs as the name, the schedule's end and the imagenet-pretrained twin say
        # (the 1.x file leaves max_epochs at its base's 256).
        "nl": {"model.backbone.non_local": SLOWONLY_NON_LOCAL,
               "model.backbone.non_local_cfg.use_scale": True,
               "model.backbone.zero_init_residual": False,
               "optim.lr": 0.01, "optim.epochs": 150.0, "optim.schedule": "step",
               "optim.lr_steps": (100, 140), "optim.warmup_epochs": 10.0},
    },
}

# Sampling parts (clip_len x frame_interval) each model accepts besides its default.
SAMPLINGS: dict[str, dict[str, tuple[int, int]]] = {
    "c2d_r50": {}, "i3d_r50": {},
    "slowonly_r50": {"4x16": (4, 16), "8x8": (8, 8)},
}
# Parts that only exist with a sampling part: SlowOnly-R101 is published as 8x8 only.
NEEDS_SAMPLING = {("slowonly_r50", "r101"): "8x8"}

# Test parts -> protocols (vidjax/recipes/protocols.py); test30 is the model's own. A
# model with other test parts names them in its MODELS row (`tests`).
TESTS = ("test1", "test30")
# (model, model part) -> {test part: protocol}, where they differ from MMAction2's 3D
# protocols; ("model", "") is every part's default.
TEST_PROTOCOLS: dict[tuple[str, str], dict[str, str]] = {}

# Frames of the demo and smoke clips: enough for the model's temporal strides (I3D: T / 8).
DEMO_FRAMES = {"c2d_r50": 8, "i3d_r50": 8, "slowonly_r50": 4}

# --- SlowFast (configs/slowfast_r50.py) -----------------------------------------------------
# slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb, from scratch: the data is 32 frames 2
# apart for every SlowFast; '4x16' and '8x8' name the pathways' frame rates (slow: every
# tau-th frame, fast: every (tau / alpha)-th), so its sampling parts change the model.
MODELS["slowfast_r50"] = dict(sampling=(32, 2), test="mmaction2_test30", fields={
    "model.backbone.name": "slowfast", "model.head.name": "slowfast",
    "data.train_crop": "random_resized",
    "batch_size": 64, "optim.lr": 0.1, "optim.epochs": 256.0, "optim.schedule": "cosine",
    "optim.warmup_epochs": 34.0, "optim.warmup_start_factor": 0.1})
PARTS["slowfast_r50"] = {
    # slowfast_r101_8xb8-8x8x1-256e (with the 8x8 part): both pathways ResNet3d-101.
    "r101": {"model.backbone.slow_pathway.depth": 101,
             "model.backbone.fast_pathway.depth": 101},
}
SAMPLINGS["slowfast_r50"] = {"4x16": (32, 2), "8x8": (32, 2)}
NEEDS_SAMPLING[("slowfast_r50", "r101")] = "8x8"
# Model changes of a sampling part, where the sampling names the model's frame rates.
SAMPLING_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    # slowfast_r50_8xb8-8x8x1-256e: tau 4, alpha 4, fusion kernel 7.
    ("slowfast_r50", "8x8"): {"model.backbone.resample_rate": 4,
                              "model.backbone.speed_ratio": 4,
                              "model.backbone.slow_pathway.fusion_kernel": 7},
}
# Fast-pathway frames (the slow pathway sees 1 / 8 of them).
DEMO_FRAMES["slowfast_r50"] = 16


def base_config(model: str) -> ml_collections.ConfigDict:
  """The model's base recipe on Kinetics-400 (no variant)."""
  recipe = MODELS[model]
  clip_len, interval = recipe["sampling"]
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=clip_len, sampler="dense",
                                            frame_interval=interval)
  config.model = models.default_config("recognizer", "recognizer3d")
  datasets.apply(config, recipe.get("dataset", "k400"))
  protocols.apply(config, test_protocol(model, "", "test1"))
  config.optim = optim.default_config()
  config.optim.update(lr=0.01, momentum=0.9, weight_decay=1e-4, clip_grad_norm=40.0,
                      no_decay=())
  _set_model_fields(config, recipe["fields"])
  return config


def _set_model_fields(config: ml_collections.ConfigDict, fields: dict[str, Any]) -> None:
  """set_fields, where a new `model.name` / `model.backbone.name` / `model.head.name`
  first brings that part's registry defaults (the recipe then changes them)."""
  for dotted in ("model.name", "model.backbone.name", "model.head.name"):
    if dotted not in fields:
      continue
    value = fields[dotted]
    if dotted == "model.name":
      num_classes = config.model.num_classes
      config.model = models.default_config("recognizer", value)
      config.model.num_classes = num_classes
    else:
      kind = dotted.split(".")[1]
      config.model[kind] = models.default_config(kind, value)
  set_fields(config, {k: v for k, v in fields.items()
                      if k not in ("model.name", "model.backbone.name", "model.head.name")})


def build(arg: str, file: str, model: str) -> ml_collections.ConfigDict:
  """The config of `model` (a key of MODELS) for variant `arg` of config file `file`."""
  v = variant.parse(arg, file, model=tuple(PARTS[model]), sampling=tuple(SAMPLINGS[model]),
                    test=MODELS[model].get("tests", TESTS), run=variant.RUNS,
                    dataset=tuple(DATA_PARTS.get(model, ())))
  needed = NEEDS_SAMPLING.get((model, v.model))
  if needed and v.sampling != needed and not v.run:
    raise v.error(f"{v.model!r} is published as {needed} only: use '{v.model}_{needed}'.")
  config = base_config(model)
  _set_model_fields(config, PARTS[model].get(v.model, {}))
  if v.sampling:
    clip_len, interval = SAMPLINGS[model][v.sampling]
    config.data.update(num_frames=clip_len, frame_interval=interval)
    _set_model_fields(config, SAMPLING_FIELDS.get((model, v.sampling), {}))
  if v.run:
    _small(config, model, v.run)
  elif v.test or (model, v.model) in TEST_PROTOCOLS:
    protocols.apply(config, test_protocol(model, v.model, v.test or "test1"))
  if v.dataset:
    DATA_PARTS[model][v.dataset](config)
  return config


def test_protocol(model: str, part: str, test: str) -> str:
  """The protocol of test part `test` (test1: the per-epoch eval) for a model variant:
  TEST_PROTOCOLS where the model or its part has its own, else MMAction2's 3D ones."""
  own = TEST_PROTOCOLS.get((model, part)) or TEST_PROTOCOLS.get((model, ""), {})
  if test in own:
    return own[test]
  return MODELS[model]["test"] if test == "test30" else "mmaction2_val"


def _small(config: ml_collections.ConfigDict, model: str, run: str) -> None:
  """The demo and smoke variants: the demo data set, dense clips of DEMO_FRAMES frames
  one apart, MMAction2's 3D test sampling; smoke on a ResNet-18 whose per-block patterns
  are cut to its blocks."""
  frames = DEMO_FRAMES[model]
  if run == "demo":
    config_defaults.use_demo(config)
    config.optim.no_decay = ("bias", "scale")
    config.data.update(num_frames=frames, source_frames=max(8, frames))
  else:
    config_defaults.use_smoke(config, num_frames=frames, source_frames=max(8, frames))
    config.optim.warmup_epochs = 0.0   # a recipe's warm-up (SlowOnly: 34) outlasts 3 epochs
    set_fields(config, SMOKE_FIELDS.get(model, {}))
    backbone = config.model.backbone
    if "inflate" in backbone:
      backbone.inflate = fit_pattern(backbone.inflate, (2, 2, 2, 2))
      backbone.non_local = fit_pattern(backbone.non_local, (2, 2, 2, 2))
    if "slow_pathway" in backbone:   # SlowFast: the smoke depth is each pathway's
      depth = backbone.depth
      del backbone["depth"]
      for pathway in (backbone.slow_pathway, backbone.fast_pathway):
        pathway.depth = depth
        pathway.inflate = fit_pattern(pathway.inflate, (2, 2, 2, 2))
        pathway.non_local = fit_pattern(pathway.non_local, (2, 2, 2, 2))
    if "depth" in backbone and "depth" not in models.default_config("backbone", backbone.name):
      del backbone["depth"]   # use_smoke's ResNet depth (C3D, X3D have none)
  config.data.update(sampler="dense", frame_interval=1, test_sampling="mmaction2_3d")
  if "input_size" in config.model.backbone:   # a backbone tied to its clip size (C3D)
    config.model.backbone.input_size = (frames, config.data.image_size,
                                        config.data.image_size)


# --- CSN and R(2+1)D (configs/csn_r152.py, configs/r2plus1d_r34.py) ----------------------

# ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb: IG65M-pretrained upstream
# (`--config.init_from=DIR`), lr 5e-4 for batch 96 (8 GPUs x 12), 16 warm-up epochs from
# x0.1, lr x0.1 at epochs 32 and 48, 58 epochs. The ResNet3dCSN file leaves BN training
# (norm_eval False); MMAction2 1.2.0's copy of this config inherits norm_eval and
# bn_frozen from its bnfrozen twin, which is `r50`'s and `ip`'s setting here.
_BN_FROZEN = {"model.backbone.norm_eval": True, "model.backbone.bn_frozen": True}
MODELS["csn_r152"] = dict(sampling=(32, 2), test="mmaction2_test30", fields={
    "model.backbone.name": "csn", "data.train_crop": "random_resized",
    "batch_size": 96, "optim.lr": 5e-4, "optim.epochs": 58.0, "optim.schedule": "step",
    "optim.lr_steps": (32, 48), "optim.warmup_epochs": 16.0,
    "optim.warmup_start_factor": 0.1})
PARTS["csn_r152"] = {
    # ipcsn_ig65m-pretrained-r152-bnfrozen_32x2x1-58e: the ip bottleneck, BN frozen.
    "ip": {"model.backbone.bottleneck_mode": "ip", **_BN_FROZEN},
    # ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e: ir-CSN-50, BN frozen.
    "r50": {"model.backbone.depth": 50, **_BN_FROZEN},
}
SAMPLINGS["csn_r152"] = {}
DEMO_FRAMES["csn_r152"] = 8   # T / 8 after the temporal strides of layer2..4

# r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb (from scratch): lr 0.01 for batch 64 (8
# GPUs x 8), cosine over 180 epochs without warm-up; `32x2`: r2plus1d_r34_8xb8-32x2x1-180e.
MODELS["r2plus1d_r34"] = dict(sampling=(8, 8), test="mmaction2_test30", fields={
    "model.backbone.name": "r2plus1d", "data.train_crop": "random_resized",
    "batch_size": 64, "optim.lr": 0.01, "optim.epochs": 180.0, "optim.schedule": "cosine"})
PARTS["r2plus1d_r34"] = {}
SAMPLINGS["r2plus1d_r34"] = {"8x8": (8, 8), "32x2": (32, 2)}
DEMO_FRAMES["r2plus1d_r34"] = 8

# The smoke models' changes after use_smoke's ResNet-18, at a quarter of the widths
# (R(2+1)D-18's full widths hold 33M parameters); CSN has bottleneck depths only.
SMOKE_FIELDS: dict[str, dict[str, Any]] = {
    "csn_r152": {"model.backbone.depth": 50, "model.backbone.base_channels": 16},
    "r2plus1d_r34": {"model.backbone.base_channels": 16},
}

# --- C3D and X3D (configs/c3d.py, configs/x3d.py) ------------------------------------------

# c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb: Sports-1M-pretrained upstream
# (`--config.init_from=DIR`); UCF101 split 1; its own mean (104, 117, 128) and std 1;
# I3DHead on the fc7 vector (no pooling); short side 128, a random 112 crop (MultiScaleCrop
# with the one scale 112 / 128 at a random place), flip; SGD lr 1e-3 for batch 240 (8 GPUs
# x 30), weight decay 5e-4, lr x0.1 at epochs 20 and 40, 45 epochs. Test: 10 clips x the
# centre crop (`test10`), softmax averaged (1.x; 0.x averaged logits).
MODELS["c3d"] = dict(sampling=(16, 1), dataset="ucf101", tests=("test1", "test10"), fields={
    "model.backbone.name": "c3d", "model.head.spatial_type": "none",
    "model.pixel_mean": (104.0, 117.0, 128.0), "model.pixel_std": (1.0, 1.0, 1.0),
    "data.train_resize": 128, "data.train_crop": "multi_scale", "data.scales": (0.875,),
    "data.max_distort": 0, "data.fix_crop": False,
    "batch_size": 240, "optim.lr": 1e-3, "optim.weight_decay": 5e-4, "optim.epochs": 45.0,
    "optim.schedule": "step", "optim.lr_steps": (20, 40)})
PARTS["c3d"] = {}
SAMPLINGS["c3d"] = {}
TEST_PROTOCOLS[("c3d", "")] = {"test1": "mmaction2_c3d_val", "test10": "mmaction2_c3d_test10"}
DEMO_FRAMES["c3d"] = 16   # four temporal pools before pool5's 2-frame window

# X3D-M (x3d_m_16x5x1_facebook-kinetics400-rgb) and X3D-S (`s`: x3d_s_13x6x1_facebook-...):
# MMAction2 ships them test-only (converted from PySlowFast), mean 114.75 and std 57.38.
# Test: 10 clips x ThreeCrop after the short side (M 256, S 182), softmax averaged.
# Training here is our recipe after PySlowFast's X3D configs, not a published MMAction2
# one: SGD momentum 0.9, lr 0.1 for batch 128, weight decay 5e-5 off BN and biases,
# cosine over 300 epochs after 35 warm-up epochs from x0.1; random resized crops of 224
# (S: 160) after short side 256 (S: 182) stand in for PySlowFast's scale jitter.
MODELS["x3d"] = dict(sampling=(16, 5), test="mmaction2_test30", fields={
    "model.backbone.name": "x3d", "model.head.name": "x3d",
    "model.pixel_mean": (114.75,) * 3, "model.pixel_std": (57.38,) * 3,
    "data.train_crop": "random_resized",
    "batch_size": 128, "optim.lr": 0.1, "optim.weight_decay": 5e-5,
    "optim.no_decay": ("bias", "scale"), "optim.clip_grad_norm": 0.0, "optim.epochs": 300.0,
    "optim.schedule": "cosine", "optim.warmup_epochs": 35.0,
    "optim.warmup_start_factor": 0.1})
PARTS["x3d"] = {
    # X3D-S: the same network on 13 frames 6 apart, trained at 160 px.
    "s": {"data.num_frames": 13, "data.frame_interval": 6, "data.train_resize": 182},
}
SAMPLINGS["x3d"] = {}
TEST_PROTOCOLS[("x3d", "s")] = {"test1": "mmaction2_x3d_s_val",
                                "test30": "mmaction2_x3d_s_test30"}
DEMO_FRAMES["x3d"] = 8

SMOKE_FIELDS["c3d"] = {"model.backbone.base_channels": 8, "model.backbone.hidden_dim": 64}
SMOKE_FIELDS["x3d"] = {"model.backbone.gamma_d": 0.5, "model.head.hidden_dim": 64}

# --- TIN, TANet and TRN (configs/tin_r50.py, tanet_r50.py, trn_r50.py) ---------------------
# MMAction2's 2D temporal models on Something-Something V1 (frame folders), 8 segments of
# one frame (1x1x8: TSN segments, centred ones at test), MultiScaleCrop (scales 1, .875,
# .75, .66, one step of aspect, 13 fixed positions) to 224, flip (the data set's label
# pairs), ResNet-50 (Recognizer2D), SGD momentum 0.9 with gradient clipping at norm 20.
# TIN and TANet use TSMOptimWrapperConstructor with fc_lr5: the fc at lr x5 (weight) and
# x10 (bias, no decay), no decay on BatchNorm and biases.
_TSM_FC_LR5 = (
    {"regex": r"fc/kernel$", "lr_mult": 5.0, "decay_mult": 1.0},
    {"regex": r"fc/bias$", "lr_mult": 10.0, "decay_mult": 0.0},
)
_STH_2D = {
    "model.name": "recognizer2d", "model.backbone.name": "resnet", "model.head.name": "tsn",
    "data.sampler": "segments", "data.train_crop": "multi_scale",
    "data.scales": (1.0, 0.875, 0.75, 0.66), "data.max_distort": 1, "data.fix_crop": True,
    "data.more_fix_crop": True, "data.flip": True, "optim.clip_grad_norm": 20.0}
_FC_LR5 = {"optim.param_groups": _TSM_FC_LR5, "optim.no_decay": (r"bias$", r"scale$")}
# tin_imagenet-pretrained-r50_8xb6-1x1x8-40e_sthv1-rgb: TIN (shift_div 4) on every block,
# TSMHead with dropout 0.8; lr 0.02 for batch 48 (8 GPUs x 6), weight decay 5e-4, 1 linear
# warm-up epoch from x0.1, then cosine to half the lr (mmcv's min_lr_ratio 0.5) at 40
# epochs. Test: 1 centred clip, centre crop 224 after short side 256 (the val pipeline).
MODELS["tin_r50"] = dict(sampling=(8, 1), dataset="sthv1", tests=("test1",), fields={
    **_STH_2D, **_FC_LR5, "model.tin.enabled": True, "model.head.dropout_rate": 0.8,
    "batch_size": 48, "optim.lr": 0.02, "optim.weight_decay": 5e-4, "optim.epochs": 40.0,
    "optim.schedule": "cosine", "optim.warmup_epochs": 1.0, "optim.warmup_start_factor": 0.1,
    "optim.min_lr": 0.01})
PARTS["tin_r50"] = {}
SAMPLINGS["tin_r50"] = {}
TEST_PROTOCOLS[("tin_r50", "")] = {"test1": "test1"}
DEMO_FRAMES["tin_r50"] = 4
# tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb: TAM in every block, TSMHead with
# dropout 0.6; lr 0.01 for batch 64 (8 GPUs x 8), weight decay 1e-3, lr x0.1 at epochs 30,
# 40 and 45, 50 epochs. Test: twice sample x ThreeCrop(256), softmax averaged.
MODELS["tanet_r50"] = dict(sampling=(8, 1), dataset="sthv1", tests=("test1", "test2x3"),
                           fields={
    **_STH_2D, **_FC_LR5, "model.tam.enabled": True, "model.head.dropout_rate": 0.6,
    "batch_size": 64, "optim.lr": 0.01, "optim.weight_decay": 1e-3, "optim.epochs": 50.0,
    "optim.schedule": "step", "optim.lr_steps": (30, 40, 45)})
PARTS["tanet_r50"] = {}
SAMPLINGS["tanet_r50"] = {}
_STH_TESTS = {"test1": "test1", "test2x3": "mmaction2_sth_test2x3"}
TEST_PROTOCOLS[("tanet_r50", "")] = _STH_TESTS
DEMO_FRAMES["tanet_r50"] = 4


def build_2d(arg: str, file: str, model: str) -> ml_collections.ConfigDict:
  """`build` for the 2D models above: TSN segments (the demo and smoke variants too, where
  `build` gives the 3D models dense clips) and the temporal modules built for the
  config's frame count."""
  config = build(arg, file, model)
  if config.data.name == "demo":
    config.data.update(sampler="segments", test_sampling="uniform")
    config.optim.param_groups = ()
  for field in ("tin", "tam"):
    if config.model[field].enabled:
      config.model[field].num_segments = config.data.num_frames
  return config


# --- OmniSource (configs/slowonly_r50.py:omnisource) -------------------------------------
# Training-data parts (variant kind "data set") of a model: functions that change its
# built config. OmniSource's SlowOnly releases (R50 4x16, R101 8x8) are the zoo recipes
# trained on Kinetics-400 and web data at once (vidjax/recipes/omnisource.py).
DATA_PARTS: dict[str, dict[str, Any]] = {
    "slowonly_r50": {"omnisource": omnisource.add_web_sources},
}


# --- Audio TSN-R18 (configs/audio_tsn_r18.py) -----------------------------------------------
# tsn_r18_64x1x1_100e_kinetics400_audio_feature (1.x: tsn_r18_8xb320-64x1x1-100e_kinetics400-
# audio-feature): MMAction2's audio recognizer (registry 'recognizer_audio': a ResNet-18
# on one input channel, BN trained, AudioTSNHead with dropout 0.5 and fc init std 0.01) on
# log-mel features; 64 consecutive video frames (SampleFrames 64x1x1, a random start) read
# as 128 feature rows (AudioFeatureSelector), no augmentation. SGD momentum 0.9, lr 0.1
# for batch 2560 (8 GPUs x 320), weight decay 1e-4 on every parameter, gradient clipping
# at norm 40, cosine to 0 over 100 epochs, no warm-up. Test: 1 centred clip (the zoo
# config's test pipeline), softmax. (The 1.x file trains on the val list: a typo; the 0.x
# one on the train list, as here.)
AUDIO_FIELDS: dict[str, Any] = {
    "batch_size": 2560, "optim.lr": 0.1, "optim.weight_decay": 1e-4,
    "optim.clip_grad_norm": 40.0, "optim.no_decay": (), "optim.epochs": 100.0,
    "optim.schedule": "cosine"}


def build_audio(arg: str, file: str) -> ml_collections.ConfigDict:
  """The audio TSN-R18 config for variant `arg` of config file `file` (its run variants:
  the audio demo data set, vidjax/data/demo_audio.py)."""
  v = variant.parse(arg, file, run=variant.RUNS)
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.audio_data()
  config.model = models.default_config("recognizer", "recognizer_audio")
  datasets.apply(config, "k400_audio")
  protocols.apply(config, "mmaction2_val")
  config.optim = optim.default_config()
  set_fields(config, AUDIO_FIELDS)
  if v.run == "demo":
    config_defaults.use_audio_demo(config)
  elif v.run == "smoke":
    config_defaults.use_audio_smoke(config)
  return config


# --- TimeSformer (configs/timesformer.py) --------------------------------------------------
# timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb: ViT-B/16 with divided space-time
# attention on 8 frames 32 apart, mean and std 127.5 (pixels to [-1, 1]); upstream starts
# from ImageNet-21K ViT-B/16 weights (no converter here reads them). Train:
# RandomRescale of the short side to 256..320, a random 224 crop, flip; written here as
# a multi-scale crop of the same geometry: short side 256, a square of 224 / s of it (s in
# 256..320) at a random place, resized to 224. SGD with Nesterov momentum 0.9, lr 0.005 for
# batch 64 (8 GPUs x 8), weight decay 1e-4 on everything but the class token and the
# position and time embeddings (decay_mult 0), gradient clipping at norm 40, 15 epochs,
# lr x0.1 at epochs 5 and 10. Test: 1 centred clip x ThreeCrop(224) after short side 224,
# softmax averaged (`test3`); the per-epoch eval is MMAction2's val pipeline.
# `jointst` / `spaceonly`: timesformer_jointST_... / timesformer_spaceOnly_..., the same
# recipe.
_TIMESFORMER_EMBEDDINGS = (r"cls_token$", r"pos_embed$", r"time_embed$")
MODELS["timesformer"] = dict(sampling=(8, 32), tests=("test1", "test3"), fields={
    "model.backbone.name": "timesformer", "model.head.name": "timesformer",
    "model.pixel_mean": (127.5,) * 3, "model.pixel_std": (127.5,) * 3,
    "data.train_crop": "multi_scale", "data.scales": tuple(224 / s for s in range(256, 321)),
    "data.max_distort": 0, "data.fix_crop": False,
    "batch_size": 64, "optim.lr": 0.005, "optim.nesterov": True,
    "optim.no_decay": _TIMESFORMER_EMBEDDINGS, "optim.epochs": 15.0,
    "optim.schedule": "step", "optim.lr_steps": (5, 10)})
PARTS["timesformer"] = {
    "jointst": {"model.backbone.attention_type": "joint_space_time"},
    "spaceonly": {"model.backbone.attention_type": "space_only"},
}
SAMPLINGS["timesformer"] = {}
TEST_PROTOCOLS[("timesformer", "")] = {"test1": "mmaction2_val",
                                       "test3": "mmaction2_timesformer_test3"}
DEMO_FRAMES["timesformer"] = 8
# The demo and smoke models: the same structure at toy size, 2 layers of 64 channels, 4
# heads of 16, 8 x 8 patches (16 a frame): ViT-B/16 takes many times the demo's CPU
# minutes per epoch, and trained from scratch it learns slowly. The demo trains for 4
# epochs (a ViT from scratch needs more than the CNNs' one).
SMOKE_FIELDS["timesformer"] = {
    "model.backbone.embed_dims": 64, "model.backbone.num_heads": 4,
    "model.backbone.num_layers": 2, "model.backbone.patch_size": 8}
_TIMESFORMER_DEMO = {**SMOKE_FIELDS["timesformer"], "optim.epochs": 4.0}


def build_timesformer(arg: str, file: str) -> ml_collections.ConfigDict:
  """`build` for TimeSformer: its embeddings are built for the config's clips
  (data.num_frames x data.image_size); the demo run is at toy size and keeps the
  embeddings out of weight decay too."""
  v = variant.parse(arg, file, model=tuple(PARTS["timesformer"]),
                    test=MODELS["timesformer"]["tests"], run=variant.RUNS)
  config = build(arg, file, "timesformer")
  if v.run == "demo":
    set_fields(config, _TIMESFORMER_DEMO)
  config.model.backbone.update(num_frames=config.data.num_frames,
                               img_size=config.data.image_size)
  no_decay = tuple(config.optim.no_decay)
  config.optim.no_decay = no_decay + tuple(r for r in _TIMESFORMER_EMBEDDINGS
                                           if r not in no_decay)
  return config

# --- TRN and TPN (configs/trn_r50.py, tpn_tsm_r50.py, tpn_slowonly_r50.py) -----------------
# A neck named in a recipe (`model.neck.name`) first brings that neck's registry defaults,
# as the other parts' names do (after a new `model.name`, which resets the model).
_set_model_fields_before_neck = _set_model_fields


def _set_model_fields(config: ml_collections.ConfigDict,   # noqa: F811
                      fields: dict[str, Any]) -> None:
  neck = {k: v for k, v in fields.items() if k.startswith("model.neck.")}
  _set_model_fields_before_neck(config, {k: v for k, v in fields.items() if k not in neck})
  if "model.neck.name" in neck:
    name = neck.pop("model.neck.name")
    config.model.neck = (models.default_config("neck", name) if name
                         else ml_collections.ConfigDict(dict(name="")))
  set_fields(config, neck)


# trn_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv1-rgb (the schedule is its sthv2 twin's):
# the plain ResNet-50 with partial BN, TRNHead (per-frame fc to 256, relations of 8 down to
# 2 frames, 3 frame tuples per scale below 8) with dropout 0.8 and fc init std 0.001; lr
# 0.002 for batch 128 (8 GPUs x 16), weight decay 5e-4, TSMOptimWrapperConstructor without
# fc_lr5 (every Linear's bias at lr x2 without decay, no decay on BatchNorm), lr x0.1 at
# epochs 30 and 45, 50 epochs. Test: twice sample x ThreeCrop(256), softmax averaged.
MODELS["trn_r50"] = dict(sampling=(8, 1), dataset="sthv1", tests=("test1", "test2x3"),
                         fields={
    **_STH_2D, "model.head.name": "trn", "model.backbone.partial_bn": True,
    "optim.param_groups": ({"regex": r"^head/.*bias$", "lr_mult": 2.0, "decay_mult": 0.0},),
    "optim.no_decay": (r"bias$", r"scale$"),
    "batch_size": 128, "optim.lr": 0.002, "optim.weight_decay": 5e-4, "optim.epochs": 50.0,
    "optim.schedule": "step", "optim.lr_steps": (30, 45)})
PARTS["trn_r50"] = {}
SAMPLINGS["trn_r50"] = {}
TEST_PROTOCOLS[("trn_r50", "")] = _STH_TESTS
DEMO_FRAMES["trn_r50"] = 4

# TPN on ResNet-50's res4 and res5 (out_indices (2, 3)); TPNHead: global average pool,
# dropout 0.5, fc (fc init std 0.01); its fcn_test applies the same fc to the pooled
# features, so it is I3DHead on the neck's output. SGD with Nesterov momentum 0.9, weight
# decay on every parameter, lr x0.1 at epochs 75 and 125, 150 epochs, batch 64 (8 GPUs x
# 8). Upstream also jitters colour per clip (MMAction2's ColorJitter), which is not here.
_TPN = {"model.neck.name": "tpn", "model.backbone.out_stages": (3, 4),
        "model.head.name": "i3d", "model.head.dropout_rate": 0.5,
        "model.head.fc_init_std": 0.01, "data.train_crop": "random_resized",
        "batch_size": 64, "optim.lr": 0.01, "optim.nesterov": True, "optim.epochs": 150.0,
        "optim.schedule": "step", "optim.lr_steps": (75, 125)}
# tpn-slowonly_imagenet-pretrained-r50_8xb8-8x8x1-150e_kinetics400-rgb: SlowOnly-R50 (8x8),
# weight decay 1e-4, clipping at norm 40. Test: 10 clips x ThreeCrop(256).
MODELS["tpn_slowonly_r50"] = dict(sampling=(8, 8), test="mmaction2_test30", fields={
    "model.backbone.conv1_kernel": (1, 7, 7), "model.backbone.inflate": (0, 0, 1, 1),
    "model.backbone.with_pool2": False, "model.backbone.zero_init_residual": False, **_TPN})
PARTS["tpn_slowonly_r50"] = {}
SAMPLINGS["tpn_slowonly_r50"] = {}
DEMO_FRAMES["tpn_slowonly_r50"] = 4
# tpn-tsm_imagenet-pretrained-r50_8xb8-1x1x8-150e_sthv1-rgb: TSM-R50 (shift 1/8 each way in
# every block's residual branch, 8 segments), RandomResizedCrop, flip with the data set's
# pairs, weight decay 5e-4, clipping at norm 20. Test: twice sample x ThreeCrop(256).
MODELS["tpn_tsm_r50"] = dict(sampling=(8, 1), dataset="sthv1", tests=("test1", "test2x3"),
                             fields={
    "model.name": "recognizer2d", "model.backbone.name": "resnet", "model.shift.enabled": True,
    "data.sampler": "segments", "data.flip": True, **_TPN, "optim.weight_decay": 5e-4,
    "optim.clip_grad_norm": 20.0})
PARTS["tpn_tsm_r50"] = {}
SAMPLINGS["tpn_tsm_r50"] = {}
TEST_PROTOCOLS[("tpn_tsm_r50", "")] = _STH_TESTS
DEMO_FRAMES["tpn_tsm_r50"] = 4
# The smoke TPN on ResNet-18's res4 (256) and res5 (512): the neck at those widths.
SMOKE_FIELDS["tpn_slowonly_r50"] = SMOKE_FIELDS["tpn_tsm_r50"] = {
    "model.neck.out_channels": 256, "model.neck.spatial_channels": 512,
    "model.neck.fusion_channels": 512, "model.neck.pyramid_channels": 512}

_build_2d_before_trn = build_2d


def build_2d(arg: str, file: str, model: str) -> ml_collections.ConfigDict:  # noqa: F811
  """`build_2d`, and TRN's head built for the config's frame count; the demo and smoke
  variants (from scratch) keep every BatchNorm training, where TRN's recipe (from
  ImageNet) freezes all but the first, and their cosine ends at 0 (TIN's recipe ends at
  half its lr, above the demo's)."""
  config = _build_2d_before_trn(arg, file, model)
  if config.model.head.name == "trn":
    config.model.head.num_segments = config.data.num_frames
  if config.data.name == "demo":
    config.model.backbone.partial_bn = False
    config.optim.min_lr = 0.0
  return config
