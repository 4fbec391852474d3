"""The TC-CLIP repository's recipes for frame-wise CLIP (ViFi-CLIP and vanilla CLIP
baselines, reference/tcclip.md 3.4, 4 and 5), shared by configs/clip_vitb16.py (and the
TC-CLIP configs that start from the same recipe).
"""

from __future__ import annotations

import ml_collections

from vidjax import config_defaults, models
from vidjax.recipes import datasets, protocols
from vidjax.train import optim

PROMPTS = {"vifi": "a photo of a {}.", "vanilla": "{}"}
# The repository's training pipeline, for every trainer: torchvision's ColorJitter on each
# frame of 80% of the clips, then 20% of the clips in grey (reference/tcclip.md 5).
COLOR_AUGMENTATION = dict(color_jitter_prob=0.8, color_jitter=(0.4, 0.4, 0.2, 0.1),
                          grayscale_prob=0.2)


def clip_config(prompt: str = PROMPTS["vifi"], name: str = "clip") -> ml_collections.ConfigDict:
  """Fully supervised Kinetics-400 (reference/tcclip.md 5): 16 TSN frames at 224, AdamW
  (betas 0.9, 0.98; weight decay 0.001 on every tensor), lr 2.2e-5 for batch 512, 30
  epochs with 5 of linear warm-up from 0, cosine to lr / 100, mixup 0.8 / CutMix 1.0
  (switch 0.5) with label smoothing 0.1, colour jitter (p 0.8, per frame) and grayscale
  (p 0.2); eval 1 centre view (short side 256, crop 224), per-view softmax."""
  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=16)
  config.model = models.default_config("recognizer", name)
  config.model.prompt = prompt
  datasets.apply(config, "k400")
  # The prompts come from the class names (model.label_file or model.class_names); their
  # count is the class count, which the data's must match.
  config.model.num_classes = 0
  protocols.apply(config, "test1")
  config.data.update(mixup_alpha=0.8, cutmix_alpha=1.0, mix_switch_prob=0.5,
                     **COLOR_AUGMENTATION)
  config.label_smoothing = 0.1
  config.batch_size = 512
  config.optim = optim.default_config()
  config.optim.update(name="adamw", lr=2.2e-5, betas=(0.9, 0.98), eps=1e-8,
                      weight_decay=0.001, epochs=30.0, schedule="cosine", warmup_epochs=5.0,
                      min_lr=2.2e-7, no_decay=())
  config.best_metric = "eval/top1"
  return config


def tiny(config: ml_collections.ConfigDict, *, image_size: int = 32) -> None:
  """A CLIP of the same structure at toy size (demo and smoke variants): 2 layers of
  width 64 (2 heads) in both towers, 8x8 patches, a 64-d joint embedding."""
  m = config.model
  m.vision.update(image_size=image_size, patch_size=8, width=64, layers=2, heads=2)
  m.text.update(width=64, layers=2, heads=2)
  m.embed_dim = 64


def demo(config: ml_collections.ConfigDict) -> None:
  """The demo variant: the tiny model on the demo data set, from scratch, with the
  recipe's colour augmentation (the demo's labels do not depend on colour)."""
  config_defaults.use_demo(config, lr=1e-3)
  config.data.update(**COLOR_AUGMENTATION)
  tiny(config)


def smoke(config: ml_collections.ConfigDict) -> None:
  """The smoke variant: the tiny model on 32 demo clips of 4 frames at 32x32 (as
  `config_defaults.use_smoke`, which sizes a ResNet instead), with the recipe's colour
  augmentation."""
  config.data = config_defaults.demo_data(num_frames=4, image_size=32, source_frames=8,
                                          train_examples=32, eval_examples=20,
                                          **COLOR_AUGMENTATION)
  config.model.num_classes = len(config.model.class_names)
  config.batch_size = 8
  config.eval.batch_size = 8
  config.optim.update(lr=1e-3, epochs=3.0, warmup_epochs=0.0, min_lr=0.0)
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  tiny(config)
