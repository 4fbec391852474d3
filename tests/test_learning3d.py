"""Learning tests of the 3D models: on the demo data set, time kernels pass where C2D cannot.

The demo's direction classes are exact time reversals in pairs (vidjax/data/demo.py), so
an order-blind model is at most at 50% on them. C2D is one: its 2D kernels see one frame
at a time, and its (2, 1, 1) max-pool after layer1 and the head's average over T are
symmetric in time, so it pools time away like TSN's consensus. I3D (time kernels in the
stem and in inflated blocks), CoST(b) (its T-W and T-H views) and SlowFast (the fast
pathway's time kernels) can see the order. Each test trains the smoke-size member of a
family on 8 frames of 32x32 (SlowFast's slow pathway sees 2 of them, its fast one 4)
from the full demo training set, with one recipe and seed; C2D must learn the appearance
classes yet stay at the ceiling, every other model must pass it by a clear margin (the
thresholds of tests/test_learning.py).

The recipe: tests/test_learning.py's (AdamW, lr 2e-3, cosine, warm-up 0.15 epochs, no
dropout) for half an epoch of the 1920 demo clips at batch 16 (CoST(b): one epoch at
lr 4e-3; SlowFast: lr 4e-3), fixed seed, at XLA:CPU's
optimisation level 1 (at the default level 2, I3D's train step with its (5, 7, 7) stem
takes 7 to 10 times as long; CoST's is unchanged). The ResNet3d-18 trunks of C2D and
I3D at base width 16 (a quarter of the smoke's), CoST(b) its smoke's ResNet-50 at base
width 8, SlowFast its smoke's ResNet3d-18 pathways at base widths 16 (slow) and 4 (fast,
channel_ratio 4; the smoke's are 64 and 8) with tau 4 and alpha 2 (the smoke's 8 and 8
are for its 16 frames). Per-class eval accuracy ("direction" = the mean over the four
direction classes, where the order-blind ceiling is 50%):

  model     epochs batch   lr seed top-1 direction left right   up down square cross
  C2D          0.5    16 2e-3    0 55.7%     34.8% 48.4   1.6 89.1  0.0   98.4  96.9
                                 1 49.7%     27.3% 31.2  40.6 15.6 21.9   92.2  96.9
  I3D          0.5    16 2e-3    0 66.9%     99.6%  100   100 98.4  100    1.6   1.6
                                 1 67.4%     99.2% 98.4   100 98.4  100    0.0   7.8
  CoST(b)        1    16 4e-3    0 75.5%     89.1% 89.1  81.2 95.3 90.6   18.8  78.1
                                 1 57.3%     82.0% 81.2  92.2 76.6 78.1    7.8   7.8
  SlowFast     0.5    16 4e-3    0 66.4%     99.6% 98.4   100  100  100    0.0   0.0
                                 1 63.5%     95.3%  100   100 82.8 98.4    0.0   0.0

C2D must stay at the ceiling (direction <= 58%) while learning the appearance classes
(top-1 >= 40%, square and cross >= 80%); I3D, CoST(b) and SlowFast must reach 60% on the
direction classes. I3D passes in a quarter of an epoch too (98.4%). CoST(b) is the slow
learner: at lr 2e-3 one epoch gave 56.6% (batch 16) and 57.0% (batch 8), hence its own lr
(as GC-TSN's in tests/test_learning.py). SlowFast's seeds 2 and 3 reached 100% and 100%.
At lr 2e-3 it failed a seed: 53.9% (seed 1; 8 frames, tau 4, alpha 2), and on the smoke's
16 frames (tau 8, alpha 8) 80.5% and 41.4% (seeds 0, 1); 8 frames with tau 4 and alpha 4
(the fast pathway on all 8) gave 30.5% (seed 0). At lr 4e-3 the 16 frames passed seeds
0-3 (99.2%, 71.1%, 94.5%, 97.7%) at twice the FLOPs per clip, and a quarter of an epoch
failed (9.0%, seed 1). The 3D models' appearance classes are not learned
yet within these budgets; C2D's direction errors stay within the axis of motion.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import LEARNING_XLA_CPU, load_config  # noqa: E402
from test_learning import ORDER_BLIND_MAX, TEMPORAL_MIN, direction_accuracy, run_and_score  # noqa: E402

from vidjax.data import demo  # noqa: E402

pytestmark = pytest.mark.slow

# One recipe for every model: the smoke config's own clips (frames, dense sampling, 3D
# test sampling), the demo's full splits, and tests/test_learning.py's optimiser.
EPOCHS = 0.5
_RECIPE = {
    "data.train_examples": 1920,
    "data.eval_examples": 384,
    "batch_size": 16,
    "eval.batch_size": 64,
    "model.head.dropout_rate": 0.0,
    "optim.name": "adamw",
    "optim.lr": 2e-3,
    "optim.weight_decay": 0.05,
    "optim.epochs": EPOCHS,
    "optim.schedule": "cosine",
    "optim.warmup_epochs": 0.15,
    # Level 1 (LEARNING_XLA_CPU): level 2's code for the 3D stem's convolution is the slow
    # part of I3D's steps.
    "xla_options.cpu": LEARNING_XLA_CPU,
    "eval.xla_options.cpu": LEARNING_XLA_CPU,
    "log_every_steps": 60,
    "checkpoint_every_steps": 10_000,
}

# Each model's width: the smoke trunk's size, the only thing that differs between runs
# besides the budget (and SlowFast's frame rates, see _CLIPS).
_WIDTHS = {
    "c2d_r50": {"model.backbone.base_channels": 16},
    "i3d_r50": {"model.backbone.base_channels": 16},
    "cost_r50": {},   # its smoke is already ResNet-50 at base width 8
    # The lateral convs need fast width = slow width / channel_ratio.
    "slowfast_r50": {"model.backbone.slow_pathway.base_channels": 16,
                     "model.backbone.fast_pathway.base_channels": 4,
                     "model.backbone.channel_ratio": 4},
}

# SlowFast's smoke takes 16 frames (tau 8, alpha 8); on the others' 8, at half the FLOPs
# per clip, tau 4 keeps a 2-frame slow pathway and alpha 2 gives a 4-frame fast one.
_CLIPS = {
    "slowfast_r50": {"data.num_frames": 8, "data.source_frames": 8,
                     "model.backbone.resample_rate": 4, "model.backbone.speed_ratio": 2},
}


def train_and_score(tmp_path, name: str, **overrides) -> np.ndarray:
  """Trains configs/NAME.py:smoke with the shared recipe; per-class eval accuracy [6],
  from the per-video scores of the run's own final evaluation (WORKDIR/eval)."""
  config = load_config(name, "smoke", **{**_RECIPE, **_WIDTHS.get(name, {}),
                                         **_CLIPS.get(name, {}), **overrides})
  return run_and_score(config, str(tmp_path / name), name)


def test_c2d_learns_appearance_but_stays_at_the_order_blind_ceiling(tmp_path):
  c2d = train_and_score(tmp_path, "c2d_r50")
  assert direction_accuracy(c2d) <= ORDER_BLIND_MAX
  appearance = c2d[[demo.CLASS_NAMES.index("square"), demo.CLASS_NAMES.index("cross")]]
  assert float(np.mean(c2d)) >= 0.4 and appearance.min() >= 0.8, c2d  # it did learn


# Budgets and figures: the module docstring.
@pytest.mark.parametrize("name,epochs,lr", [("i3d_r50", EPOCHS, 2e-3), ("cost_r50", 1.0, 4e-3),
                                            ("slowfast_r50", EPOCHS, 4e-3)])
def test_3d_model_passes_the_order_blind_ceiling(tmp_path, name, epochs, lr):
  ours = train_and_score(tmp_path, name, **{"optim.epochs": epochs, "optim.lr": lr})
  assert direction_accuracy(ours) >= TEMPORAL_MIN, (name, direction_accuracy(ours))
