"""Building blocks that config files start from: trainer defaults and the demo data set.

Config files stay data: they call these for the common fields and then set their
recipe's values. Every field is documented here once.
"""

from __future__ import annotations

import ml_collections


def trainer_defaults() -> ml_collections.ConfigDict:
  """Fields of the loop that every config has."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 64                # global, over all devices and processes
  c.total_steps = -1               # > 0: stop after this many steps; the lr schedule still
                                   # spans optim.epochs, so a run can be stopped and extended
  c.label_smoothing = 0.0
  c.log_every_steps = 50
  c.eval_every_steps = -1          # <= 0: only at the end
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.check_finite = True            # stop on a NaN/inf loss, naming the step
  c.init_from = ""                 # variables dir or workdir (converter output, ImageNet init)
  c.init_from_drop = r"(^|/)(fc|fc_cls|new_fc)/"   # reinitialised when their shape differs
  c.mesh = (("data", -1),)         # (axis, size); -1 = all remaining devices
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      num_views=1,                 # temporal views per clip, folded into the batch
      fusion="mean_softmax",       # mean_softmax | mean_logits | max_softmax
  ))
  return c


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The `data` section. `name="demo"` is the embedded, generated data set."""
  d = ml_collections.ConfigDict(dict(
      name="kinetics400",
      root="~/data/kinetics400",
      train_list="~/data/kinetics400/kinetics400_train_list_videos.txt",
      eval_list="~/data/kinetics400/kinetics400_val_list_videos.txt",
      num_classes=400,
      num_frames=8,        # T: segments sampled per clip
      image_size=224,
      # Demo data set only.
      source_frames=16,    # frames generated per demo video, sampled down to num_frames
      train_examples=0,
      eval_examples=0,
      seed=0,
      # Loader.
      num_workers=0,       # grain worker processes; 0 = in the main process
      num_threads=2,       # grain reader threads
      prefetch=4,
  ))
  d.update(overrides)
  return d


def demo_data(**overrides) -> ml_collections.ConfigDict:
  """The embedded demo data set at the size the demo variants train on a CPU."""
  # 4 of 8 generated frames at 32x32: ResNet-50 takes ~1.6 s per batch of 16 such clips
  # (fwd+bwd) on a 2-core CPU, so one epoch of 1920 clips fits the demo's minutes.
  d = data_config(name="demo", root="", train_list="", eval_list="", num_classes=0,
                  num_frames=4, image_size=32, source_frames=8, train_examples=1920,
                  eval_examples=384)
  d.update(overrides)
  return d
