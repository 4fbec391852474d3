"""The TSM code base's recipes (reference/tsm_gc.md 1.9) as tables, shared by
configs/tsn_r50.py, tsm_r50.py, tsm_r101.py, nl_tsm_r50.py and tsm_mobilenetv2.py (GC's
recipes start from `tsn_config` too); each config's docstring gives its commands, variant
parts and expected accuracies.
"""

from __future__ import annotations

import ml_collections

from vidjax import config_defaults, models
from vidjax.recipes import datasets, protocols, set_fields, variant
from vidjax.train import optim

DATASETS = ("k400", "sthv1", "sthv2", "jester", "ucf101", "hmdb51", "diving48")
TESTS = ("test1", "test2x3", "test30")

_SOMETHING = {"batch_size": 64, "optim.lr": 0.01, "optim.weight_decay": 5e-4}
_FINETUNE = {"model.head.dropout_rate": 0.8, "model.backbone.partial_bn": True,
             "batch_size": 64, "optim.lr": 0.001, "optim.lr_steps": (10, 20),
             "optim.epochs": 25.0}
# Data set -> how its recipe differs from the Kinetics one.
RECIPES = {
    "k400": {},
    # The README command omits --wd (the paper says 1e-4). TSM does not flip Something;
    # `--config.data.flip=True` gives GC's flip with the label swap.
    "sthv1": {**_SOMETHING, "data.flip": False},
    "sthv2": {**_SOMETHING, "data.flip": False},
    # No published Jester command: the Something recipe, an assumption.
    "jester": _SOMETHING,
    # The README's UCF101 fine-tuning from a Kinetics TSM; HMDB51 the same, an assumption.
    "ucf101": _FINETUNE,
    "hmdb51": _FINETUNE,
    # No TSM recipe upstream: GC's reading (the Something lr with flip, 16 frames).
    "diving48": {"data.num_frames": 16, "batch_size": 64, "optim.lr": 0.01},
}


def tsn_config(depth: int = 50, num_frames: int = 8,
               dataset: str = "k400") -> ml_collections.ConfigDict:
  """TSN on a ResNet of `depth`: TSM's Kinetics recipe, as changes to the registry's
  recognizer2d (ResNet-50, TSN head, ImageNet mean/std) and the optimiser's SGD."""
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=num_frames)
  config.model = models.default_config("recognizer", "recognizer2d")
  config.model.backbone.depth = depth
  datasets.apply(config, dataset)
  protocols.apply(config, "test1")
  config.batch_size = 128
  config.optim = optim.default_config()
  config.optim.update(
      lr=0.02, clip_grad_norm=20.0,
      # TSM's new fc learns at lr x5 (weight) and x10 (bias).
      param_groups=(
          {"regex": r"fc/kernel$", "lr_mult": 5.0, "decay_mult": 1.0},
          {"regex": r"fc/bias$", "lr_mult": 10.0, "decay_mult": 0.0},
      ),
      no_decay=(r"bias$", r"scale$"))
  return config


def dense_sampling(config: ml_collections.ConfigDict) -> None:
  """I3D-style dense clips: T consecutive frames 64 // T apart (MMAction2's sampler)."""
  config.data.update(sampler="dense", frame_interval=64 // config.data.num_frames)


def tsm_config(arg: str, file: str, depth: int = 50) -> ml_collections.ConfigDict:
  """The TSM recipe on a ResNet of `depth`, with the variant parts of configs/tsm_r50.py."""
  return build(variant.parse(arg, file, dataset=DATASETS, frames=("16f",),
                             sampling=("dense",), test=TESTS, run=variant.RUNS), depth)


def build(v: variant.Variant, depth: int = 50, *,
          dense: bool = False) -> ml_collections.ConfigDict:
  """The TSM config of parsed variant `v`; `dense`: Kinetics' dense clips without the part
  (the released NL and MobileNetV2 models are dense)."""
  dataset = v.dataset or "k400"
  dense = dense or v.sampling == "dense"
  if dense and dataset != "k400":
    raise v.error(f"'dense' is the Kinetics recipe, not for {dataset!r}.")
  config = tsn_config(depth, dataset=dataset)
  config.model.shift.enabled = True   # the shift's defaults: blockres, 1/8 each way
  if v.run == "demo":
    config_defaults.use_demo(config)
    return config
  if v.run == "smoke":
    config_defaults.use_smoke(config)
    return config
  set_fields(config, RECIPES[dataset])
  config.data.num_frames = v.num_frames(config.data.num_frames)
  if dense:
    dense_sampling(config)
    # Upstream gives no lr steps for the 100-epoch dense recipe: 40/80, an assumption.
    config.optim.update(epochs=100.0, lr_steps=(40, 80))
  if v.test:
    protocols.apply(config, v.test)
  return config
