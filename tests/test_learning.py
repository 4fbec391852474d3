"""Learning tests: on the demo data set, temporal models pass where order matters.

The demo's direction classes (moving left/right/up/down) are exact time reversals in
pairs, so any order-blind model (TSN's average consensus) is at chance within each pair:
at most 50% on them (vidjax/data/demo.py; tests/test_demo_data.py checks the reversal
pixel for pixel). Each test trains the smoke-size member of a family (ResNet-18 trunk,
4 frames of 32x32, the full demo training set) with one recipe and seed. TSN,
trained the same way, must learn the appearance classes yet stay at that ceiling; each
temporal model must pass it by a clear margin. The tests are independent, so pytest-xdist
runs them side by side (no worker waits for a shared TSN baseline).

Why each test exists, and its budget. The smoke-size models are trained by one recipe
(AdamW, lr 2e-3, cosine, each config's own parameter groups) for 0.5 to 2 epochs of the
1920 demo clips at batch 16 or 8, fixed seed; per-class eval accuracy ("direction" = the
mean over the four direction classes, where TSN's ceiling is 50%):

  model                 epochs batch   lr top-1 direction left right   up down square cross
  TSN                        1    16 2e-3 55.7%     33.6% 46.9  39.1  3.1 45.3    100   100
  TCP-TSN                  1.5     8 2e-3 54.4%     73.0% 98.4  98.4 87.5  7.8    7.8  26.6
  TSM                      0.5    16 2e-3 66.4%     97.3%  100  89.1  100  100    0.0   9.4
  GC-TSN (ECal-L/T/S/G)    1.5     8 4e-3 68.8%      100%  100   100  100  100    4.7   7.8

The tests assert that TSN stays at the order-blind ceiling (direction <= 58%: 50% plus
the sampling noise of 256 eval clips) while learning the appearance classes (top-1 >=
40%), and that each temporal model reaches 60% on the direction classes. Each gets the
smallest budget that passes with a margin across seeds and survives a small change of
numerics, since these four runs are half of the test suite's time. At batch 16 TCP-TSN
and GC-TSN passed by luck: a 1.5e-6 change of the stem's kernel gradient (XLA's
gradient -> the patch product that CPUs now use; scripts/README.md, performance) took
TCP-TSN from 75.0% to 11.7% direction accuracy and GC-TSN from 97.3% to 34.8%, and
TCP-TSN's seed 3 reached only 25.0% even with XLA's gradient. At batch 8 (twice the
updates for the same compute) TCP-TSN passed with seeds 0-3 (68.0-74.6%, XLA's gradient)
and seeds 0-1 with the patch product (75.4%, 66.0%); GC-TSN at one epoch with seeds 0-1
(100%, 87.9%) but only narrowly with the patch product (61.7%, 88.3%), hence 1.5 epochs
(83.6%, 97.3%). TSN's second epoch changed nothing (54.4%), and half an epoch (48.2%,
seed 1: 45.8%) fell to 38.0% with the patch product; TSM passes in half an epoch (seed 1:
98.4%). TCP-TSN trains with XLA's own CPU fusions (`xla_options.cpu={}`): on
the 32-px smoke models its train steps take 0.63-0.70x the time they take with the
default (elementwise ops in YNNPACK, the faster setting at 224 px); it passes with seeds
0-3 (73.0%, 71.1%, 74.6%, 70.7%). GC-TSN did too (2 epochs, seeds 0-3: 100%, 69.9%,
100%, 77.3%) until a dependency update moved seed 0 to 50.4%; with the default options
it reaches 100% at 1.5 epochs with seeds 0-1 (one epoch: 77.0%, 79.7%). TSN keeps the
default: with XLA's fusions its top-1 fell to 44.0%, near the 40% floor. The temporal
models' appearance classes are not learned yet within these budgets.
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import load_config  # noqa: E402

from vidjax import config_defaults  # noqa: E402
from vidjax.data import demo  # noqa: E402
from vidjax.train import eval_outputs, trainer  # noqa: E402

pytestmark = pytest.mark.slow

# One recipe for every model (each test sets its number of epochs and batch size, GC its
# lr): AdamW from scratch, 0.5 to 2 epochs of the demo's 1920 clips,
# no dropout; each config keeps its own parameter groups (new layers at a higher lr: TSN's
# fc x5, TCP's attention and fc x5) and weight-decay exclusions.
_RECIPE = {
    "data": config_defaults.demo_data(),
    "batch_size": 16,
    "eval.batch_size": 64,
    "model.head.dropout_rate": 0.0,
    "optim.name": "adamw",
    "optim.lr": 2e-3,
    "optim.weight_decay": 0.05,
    "optim.epochs": 1.0,
    "optim.schedule": "cosine",
    "optim.warmup_epochs": 0.15,
    "log_every_steps": 60,
    "checkpoint_every_steps": 10_000,
}


def train_and_score(tmp_path, name: str, **overrides) -> np.ndarray:
  """Trains configs/NAME.py:smoke with the shared recipe; per-class eval accuracy [6],
  from the per-video scores of the run's own final evaluation (WORKDIR/eval)."""
  config = load_config(name, "smoke", **{**_RECIPE, **overrides})
  return run_and_score(config, str(tmp_path / name), name)


def run_and_score(config, workdir: str, name: str) -> np.ndarray:
  """Trains `config` in `workdir`; per-class accuracy [6] of its final evaluation."""
  assert config.eval.num_views == 1
  trainer.run(config, workdir)
  (path,) = glob.glob(os.path.join(workdir, "eval", "step_*" + eval_outputs.SCORES_SUFFIX))
  scores = eval_outputs.load_scores(path)
  labels, pred = scores["labels"], scores["scores"].argmax(-1)
  count = np.bincount(labels, minlength=demo.NUM_CLASSES)
  assert count.min() > 0 and not len(scores["skipped_files"]), count
  correct = np.bincount(labels[pred == labels], minlength=demo.NUM_CLASSES)
  accuracy = correct / count
  print(f"{name}: per-class eval accuracy {np.round(accuracy, 3).tolist()}, direction "
        f"{direction_accuracy(accuracy):.3f}, top-1 {correct.sum() / count.sum():.3f}")
  return accuracy


def direction_accuracy(per_class: np.ndarray) -> float:
  return float(np.mean(per_class[list(demo.DIRECTION_CLASSES)]))


# The order-blind ceiling of 50% plus sampling noise over the 256 eval clips of the
# direction classes; a temporal model must reach 10 points above it.
ORDER_BLIND_MAX = 0.58
TEMPORAL_MIN = 0.60


# One epoch of the recipe (top-1 55.2%; two: 54.4%; half an epoch 48.2%, seed 1: 45.8%,
# but 38.0% with the stem's patch-product kernel gradient, too close to the floor).
def test_tsn_learns_appearance_but_stays_at_the_order_blind_ceiling(tmp_path):
  tsn = train_and_score(tmp_path, "tsn_r50", **{"data.num_frames": 4,
                                                "data.source_frames": 8})
  assert direction_accuracy(tsn) <= ORDER_BLIND_MAX
  assert float(np.mean(tsn)) >= 0.4  # it did learn (chance: 1/6)


# Budgets and why: the module docstring.
@pytest.mark.parametrize("name,epochs,lr,batch,xla_cpu",
                         [("tcp_tsn_r50", 1.5, 2e-3, 8, {}), ("tsm_r50", 0.5, 2e-3, 16, None),
                          ("gc_tsn_r50", 1.5, 4e-3, 8, None)])
def test_temporal_model_passes_the_order_blind_ceiling(tmp_path, name, epochs, lr, batch,
                                                       xla_cpu):
  overrides = {"optim.epochs": epochs, "optim.lr": lr, "batch_size": batch}
  if xla_cpu is not None:
    overrides["xla_options.cpu"] = xla_cpu
  ours = train_and_score(tmp_path, name, **overrides)
  assert direction_accuracy(ours) >= TEMPORAL_MIN, (name, direction_accuracy(ours))
