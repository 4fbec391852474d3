"""OmniSource (Duan et al., ECCV 2020): a recipe trained on Kinetics-400 and web data at
once, the `omnisource` part of configs/tsn_r50.py and configs/slowonly_r50.py.

Sources (MMAction2 0.x configs/recognition/omnisource, tools/data/omnisource): the target
videos; web images (Google and Instagram images of the Kinetics classes, filtered by a
teacher model: GG-img + IG-img, "webimage"), each a clip of the image repeated; Instagram
video clips ("insvideo"); 10-second clips cut from the untrimmed Kinetics videos
("kinetics_raw"). Upstream's OmniSourceRunner trains on one source per step: after every
second target step, one step on each web source (`train_ratio=[2, 1, 1, 1]`), all at the
recipe's lr, each step averaging its own batch. vidjax mixes the sources in every batch
(vidjax/data/mixture.py) in the same proportions, 2/5 target and 1/5 each web source:
each source then weighs in the gradient as much as its steps did upstream. The recipe's
batch becomes the target's share, so an epoch (a pass over the target) has the recipe's
steps; the batch grows 2.5x and the lr with it (the linear scaling rule MMAction2's
configs state), which to first order makes one mixed step the 2.5 upstream steps it
stands for. TSN's upstream image steps took bigger batches (64 images per GPU against 12
clips): that only made those steps less noisy.

Only the Mini-Kinetics subset of the web data is published (on request, 200 classes); the
Kinetics-400 web data behind the released checkpoints is not. The sources' lists are
`path label` lines with Kinetics-400 labels (a label map per source translates others).
"""

from __future__ import annotations

import ml_collections

from vidjax.recipes import set_fields

ROOT = "~/data/omnisource"
# Target steps, then steps on each web source, per cycle of OmniSourceRunner.
TRAIN_RATIO = (2, 1, 1, 1)
WEB_SOURCES = (("webimage", "images"), ("insvideo", "videos"), ("kinetics_raw", "videos"))


def sources() -> tuple[dict, ...]:
  """data.sources: the data set's own training list, then the web sources under ROOT."""
  total = sum(TRAIN_RATIO)
  target = {"name": "kinetics400", "kind": "videos", "share": TRAIN_RATIO[0] / total}
  web = tuple({"name": name, "kind": kind, "root": f"{ROOT}/{name}",
               "list": "train_list.txt", "share": ratio / total}
              for (name, kind), ratio in zip(WEB_SOURCES, TRAIN_RATIO[1:]))
  return (target,) + web


def add_web_sources(config: ml_collections.ConfigDict) -> None:
  """The recipe of `config` with the web sources added: its batch is the target's share
  of a batch sum(TRAIN_RATIO) / TRAIN_RATIO[0] times larger, its lr scaled with it."""
  scale = sum(TRAIN_RATIO) / TRAIN_RATIO[0]
  config.batch_size = int(round(config.batch_size * scale))
  config.optim.lr = config.optim.lr * scale
  config.data.sources = sources()


# MMAction2's tsn_r50_1x1x3_100e_kinetics400_rgb, the baseline of the released TSN: 3
# segments, MultiScaleCrop (its 5 fixed positions) to 224 and flip; TSNHead with dropout
# 0.4 and fc init std 0.01; SGD lr 0.01 for batch 256 (8 GPUs x 32), momentum 0.9, weight
# decay 1e-4 on every parameter, gradient clipping at norm 40, lr x0.1 at epochs 40 and
# 80, 100 epochs, from ImageNet.
TSN_FIELDS = {
    "data.num_frames": 3, "data.sampler": "segments", "data.train_crop": "multi_scale",
    "data.scales": (1.0, 0.875, 0.75, 0.66), "data.max_distort": 1, "data.fix_crop": True,
    "data.more_fix_crop": False,
    "model.head.dropout_rate": 0.4, "model.head.fc_init_std": 0.01,
    "batch_size": 256, "optim.lr": 0.01, "optim.momentum": 0.9, "optim.weight_decay": 1e-4,
    "optim.no_decay": (), "optim.param_groups": (), "optim.clip_grad_norm": 40.0,
    "optim.schedule": "step", "optim.lr_steps": (40, 80), "optim.epochs": 100.0,
}


def tsn(config: ml_collections.ConfigDict) -> None:
  """configs/tsn_r50.py:omnisource: the released TSN's recipe plus the web sources."""
  set_fields(config, TSN_FIELDS)
  add_web_sources(config)
