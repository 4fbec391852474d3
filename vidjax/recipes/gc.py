"""Group contextualization's recipes (reference/tsm_gc.md 2.6), shared by configs/gc_tsn_r50.py,
gc_tsm_r50.py, ecal_l_tsn_r50.py and ecal_t_tsm_r50.py; each config file's docstring gives
its commands, variants and expected accuracies.
"""

from __future__ import annotations

import ml_collections

from vidjax import config_defaults
from vidjax.recipes import tsm

_DATASETS = {
    "sthv1": dict(name="something_v1", root="~/data/sthv1",
                  train_list="~/data/sthv1/train_list_frames.txt",
                  eval_list="~/data/sthv1/val_list_frames.txt", format="frames",
                  filename_tmpl="{:05d}.jpg",
                  num_classes=174),
    "sthv2": dict(name="something_v2", root="~/data/sthv2",
                  train_list="~/data/sthv2/train_list_videos.txt",
                  eval_list="~/data/sthv2/val_list_videos.txt", num_classes=174),
    "k400": dict(name="kinetics400", root="~/data/kinetics400",
                 train_list="~/data/kinetics400/kinetics400_train_list_videos.txt",
                 eval_list="~/data/kinetics400/kinetics400_val_list_videos.txt",
                 num_classes=400),
    "diving48": dict(name="diving48", root="~/data/diving48",
                     train_list="~/data/diving48/train_list_videos.txt",
                     eval_list="~/data/diving48/val_list_videos.txt", num_classes=48),
}
_TOKENS = ("sthv2", "k400", "diving48", "16f", "test", "test3")


def parse_variant(arg: str, file: str) -> tuple[str, int, str]:
  """'sthv2_16f_test' -> ('sthv2', 16, 'test'); raises a clear error otherwise."""
  tokens = [t for t in arg.split("_") if t] if arg else []
  expected = (f"expected '', 'demo', 'smoke' or tokens from {_TOKENS} joined by '_' "
              "(e.g. 'sthv2_16f_test')")
  if any(t not in _TOKENS for t in tokens) or len(set(tokens)) != len(tokens):
    raise ValueError(f"{file}: unknown variant {arg!r}; {expected}.")
  datasets = [t for t in tokens if t in _DATASETS]
  tests = [t for t in tokens if t.startswith("test")]
  if len(datasets) > 1 or len(tests) > 1:
    raise ValueError(f"{file}: variant {arg!r} names more than one data set or test; "
                     f"{expected}.")
  dataset = datasets[0] if datasets else "sthv1"
  test = tests[0] if tests else ""
  if test == "test3" and dataset != "k400":
    raise ValueError(f"{file}: variant {arg!r}: 'test3' (3 full-res crops x 10 clips) is "
                     "the Kinetics protocol; use 'k400_..._test3'.")
  frames = 16 if ("16f" in tokens or dataset == "diving48") else 8
  return dataset, frames, test


def _param_groups() -> tuple:
  """GC's optimiser policies (first match wins): --ef_lr5 on the calibrators, TSM's x2 on
  biases (only the fc has one)."""
  return (
      {"name": "ecal_norm", "regex": r"/mid/eft\d*/bn1/(scale|bias)$", "lr_mult": 5.0,
       "decay_mult": 0.0},
      {"name": "ecal", "regex": r"/mid/eft\d*/", "lr_mult": 5.0, "decay_mult": 1.0},
      {"name": "fc_bias", "regex": r"^head/fc/bias$", "lr_mult": 2.0, "decay_mult": 0.0},
  )


def build(arg: str, *, file: str, calibrators: tuple, cdiv: int, shift: bool,
          shift_fields=None) -> ml_collections.ConfigDict:
  """The GC family's config: `calibrators` on `model.ecal`, `shift` adds TSM's blockres
  shift (`shift_fields`: extra fields of `model.shift`)."""
  if arg in ("demo", "smoke"):
    dataset, frames, test = "sthv1", 8, ""
  else:
    dataset, frames, test = parse_variant(arg, file)
  config = tsm.tsn_config(depth=50, num_frames=frames)
  config.data.update(**_DATASETS[dataset])
  if dataset in ("sthv1", "sthv2"):
    config.data.flip_label_map = tsm.STH_FLIP_PAIRS  # GC's data loader too
  config.model.num_classes = config.data.num_classes
  config.model.ecal = ml_collections.ConfigDict(dict(
      enabled=True, calibrators=tuple(calibrators), cdiv=cdiv, loop=False))
  if shift:
    config.model.shift = ml_collections.ConfigDict(dict(enabled=True, **(shift_fields or {})))
  config.batch_size = 32
  config.optim.update(lr=0.01, param_groups=_param_groups())
  config.eval.batch_size = 32
  config.eval.fusion = "mean_logits"   # upstream averages logits over views

  if dataset == "k400":
    config.batch_size = 128
    config.optim.lr = 0.02
    config.data.update(sampler="dense", frame_interval=64 // frames)
  if test == "test" and dataset in ("sthv1", "sthv2"):
    config.data.update(image_size=256, test_scale=256, test_crop="center", test_clips=2,
                       test_sampling="twice")
    config.eval.num_views = 2
  elif test in ("test", "test3") and dataset == "k400":
    crops = 3 if test == "test3" else 1
    config.data.update(image_size=256, test_scale=256, test_clips=10, test_sampling="uniform",
                       test_crop="full_res_three" if crops == 3 else "center")
    config.eval.num_views = 10 * crops
    config.eval.batch_size = 4
  # diving48 "test": 1 clip x 1 centre crop 224, the per-epoch eval above.

  if arg == "demo":
    config_defaults.use_demo(config)
    config.eval.fusion = "mean_softmax"
  elif arg == "smoke":
    config_defaults.use_smoke(config, source_frames=4)
  return config
