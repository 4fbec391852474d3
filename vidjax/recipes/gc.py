"""Group contextualization's recipes (reference/tsm_gc.md 2.6) as tables, shared by
configs/gc_tsn_r50.py, gc_tsm_r50.py, ecal_l_tsn_r50.py and ecal_t_tsm_r50.py; each config
file's docstring gives its commands, variants and expected accuracies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import ml_collections

from vidjax import config_defaults
from vidjax.recipes import protocols, set_fields, tsm, variant

DATASETS = ("sthv1", "sthv2", "k400", "diving48")
# GC's README publishes Something scripts only. Kinetics: the TSM code base's Kinetics
# recipe with dense clips (the dense test needs them); Diving48: the Something recipe
# (48 classes, flip without a label swap, 16 frames). Both are our reading.
RECIPES = {
    "sthv1": {}, "sthv2": {}, "diving48": {},
    "k400": {"batch_size": 128, "optim.lr": 0.02},
}
# (data set, test part) -> protocol: the GC README's "frames x views x clips".
TESTS = {
    ("sthv1", "test"): "gc_test2", ("sthv2", "test"): "gc_test2",
    ("k400", "test"): "gc_test10", ("k400", "test3"): "test30",
    ("diving48", "test"): "test1",
}
# The single-ECal configs' model part: a table's "r = 16" read as cdiv 16 (the code has
# no reduction ratio; reference/tsm_gc.md 2.4).
CDIV_PARTS = {"r16": {"model.ecal.cdiv": 16}}


def _param_groups() -> tuple:
  """GC's optimiser policies (first match wins): --ef_lr5 on the calibrators, TSM's x2 on
  biases (only the fc has one)."""
  return (
      {"name": "ecal_norm", "regex": r"/mid/eft\d*/bn1/(scale|bias)$", "lr_mult": 5.0,
       "decay_mult": 0.0},
      {"name": "ecal", "regex": r"/mid/eft\d*/", "lr_mult": 5.0, "decay_mult": 1.0},
      {"name": "fc_bias", "regex": r"^head/fc/bias$", "lr_mult": 2.0, "decay_mult": 0.0},
  )


def build(arg: str, *, file: str, calibrators: tuple = ("L", "T", "S", "G"),
          shift: bool = False,
          model_parts: Optional[Mapping[str, Mapping[str, Any]]] = None
          ) -> ml_collections.ConfigDict:
  """The GC family's config for variant `arg` of config `file`: `calibrators` on
  `model.ecal`, `shift` adds TSM's blockres shift; `model_parts`: the config's own model
  variant parts, {part: {dotted field: value}}."""
  model_parts = model_parts or {}
  v = variant.parse(arg, file, dataset=DATASETS, frames=("16f",), test=("test", "test3"),
                    model=tuple(model_parts), run=variant.RUNS)
  dataset = v.dataset or "sthv1"
  if v.test and (dataset, v.test) not in TESTS:
    raise v.error(f"'{v.test}' (3 full-res crops x 10 clips) is the Kinetics protocol; "
                  "use 'k400_..._test3'.")
  config = tsm.tsn_config(num_frames=v.num_frames(16 if dataset == "diving48" else 8),
                          dataset=dataset)
  config.model.ecal.update(enabled=True, calibrators=tuple(calibrators))
  config.model.shift.enabled = shift
  set_fields(config, model_parts.get(v.model, {}))
  config.batch_size = 32
  config.optim.update(lr=0.01, param_groups=_param_groups())
  config.eval.batch_size = 32
  config.eval.fusion = "mean_logits"   # upstream averages logits over views
  set_fields(config, RECIPES[dataset])
  if dataset == "k400":
    tsm.dense_sampling(config)
  if v.test:
    protocols.apply(config, TESTS[(dataset, v.test)])
  if v.run == "demo":
    config_defaults.use_demo(config)
    config.eval.fusion = "mean_softmax"
  elif v.run == "smoke":
    config_defaults.use_smoke(config, source_frames=4)
  return config
