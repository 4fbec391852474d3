"""TC-CLIP's protocols (reference/tcclip.md 5) for configs/tc_clip.py, on top of the
frame-wise CLIP recipe (vidjax/recipes/clip.py: AdamW betas (0.9, 0.98), weight decay
0.001 on every tensor, cosine with linear warm-up from 0 to lr / 100, mixup 0.8 / CutMix
1.0 (switch 0.5), label smoothing 0.1, per-frame colour jitter (p 0.8) and grayscale (p 0.2),
16 TSN frames at 224, ImageNet mean and std).

TC-CLIP adds: 10x lr for the prompt parameters (`prompt_learner`, `prompt_generation`;
the local-global bias tables keep the base lr), no update at all for CLIP's token
embedding (upstream holds the embedded prompts as buffers), gradient accumulation to
upstream's total batch with micro-batches of 16 (4 GPUs x 4 clips), bf16 compute where
upstream trains in AMP, and each protocol's epochs, lr, batch and test views.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from vidjax.recipes import clip, datasets, protocols


@dataclasses.dataclass(frozen=True)
class Protocol:
  epochs: float
  warmup: float
  lr: float
  batch: int
  test_clips: int       # final test: clips x 1 centre crop (fully supervised: 4 x 3)
  test_crop: str = "center"


PROTOCOLS = {
    "zero_shot": Protocol(10, 5, 8e-6, 256, 2),
    "few_shot": Protocol(50, 5, 2e-6, 64, 2),
    "base2novel": Protocol(12, 2, 3.33e-6, 64, 2),
    "fully_supervised": Protocol(30, 5, 2.2e-5, 512, 4, "three_crop"),
}
SHOTS = ("k2", "k4", "k8", "k16")
BASE_SPLITS = ("s1", "s2", "s3")
# Parameters with 10x lr (upstream's lr_10x: names holding prompt_learner, VPT or
# prompt_generation; vidjax has no VPT prompts).
PROMPT_PARAMS = r"prompt_learner|prompt_generation"
MICRO_BATCH = 16


def tc_clip_config(protocol: str = "zero_shot", dataset: str = "", split: str = "",
                   llm: bool = False) -> ml_collections.ConfigDict:
  """The recipe of one protocol: `dataset` is the training set (few-shot, base-to-novel:
  hmdb51 | ucf101 | sthv2 | k400 (base-to-novel only)); `split` the shots (k2..k16) or
  the base split (s1..s3); `llm` the LLM-rephrased class descriptions (context 77)."""
  p = PROTOCOLS[protocol]
  config = clip.clip_config(clip.PROMPTS["vifi"], name="tc_clip")
  datasets.apply(config, dataset or "k400")
  config.model.num_classes = 0
  if dataset == "sthv2":
    config.data.flip = False   # upstream does not flip Something-Something
  if split in SHOTS:   # lists named after upstream's few-shot splits (split 1)
    config.data.train_list = f"{config.data.name}_train_split_1_{split[1:]}shot.txt"
  elif split in BASE_SPLITS:
    config.data.train_list = f"base2novel/base_train_{split[1:]}.txt"
    config.data.eval_list = "base2novel/base_val.txt"
  if llm:   # FROSTER's descriptions ("Name: one sentence"), for training and evaluation
    config.model.context_length = 77
    config.model.label_file = f"{config.data.root}/labels_llm.txt"
  config.model.dtype = "bfloat16"
  config.batch_size = p.batch
  config.grad_accum_steps = p.batch // MICRO_BATCH
  config.optim.update(lr=p.lr, min_lr=p.lr / 100, epochs=float(p.epochs),
                      warmup_epochs=float(p.warmup), param_groups=param_groups())
  use_test_views(config, p.test_clips, p.test_crop)
  return config


def param_groups() -> tuple[dict[str, Any], ...]:
  return ({"name": "prompt", "regex": PROMPT_PARAMS, "lr_mult": 10.0},
          {"name": "token_embedding", "regex": r"token_embedding", "lr_mult": 0.0,
           "decay_mult": 0.0})


def use_test_views(config: ml_collections.ConfigDict, clips: int, crop: str) -> None:
  """The protocol's reported test views (upstream validates on 1 centre view per epoch
  and tests with these at the end; here every evaluation uses them), fused as the mean
  of per-view softmax. Upstream samples the views' frames at random offsets; here the
  clips are evenly spaced (deterministic)."""
  config.data.test_sampling = "uniform"
  protocols.set_views(config, clips, crop)
  config.eval.fusion = "mean_softmax"
  if crop == "three_crop":   # upstream: short side 224, then 3 crops along the long side
    config.data.test_scale = 224


def tiny_model(config: ml_collections.ConfigDict) -> None:
  """TC-CLIP of toy size (clip.tiny's towers): 6 context tokens merged 4 at a time, in
  float32; the rest of the recipe stays."""
  clip.tiny(config)
  config.model.tc.update(context_tokens=6, merge_r=4)
  config.model.dtype = "float32"


def tiny(config: ml_collections.ConfigDict) -> None:
  """The toy model on the demo data's class names, 1 view, no accumulation."""
  tiny_model(config)
  config.model.label_file = ""   # the demo data's class names
  config.grad_accum_steps = 1
  protocols.set_views(config, 1, "center")


def demo(config: ml_collections.ConfigDict) -> None:
  clip.demo(config)
  tiny(config)
  config.optim.param_groups = param_groups()


def smoke(config: ml_collections.ConfigDict) -> None:
  clip.smoke(config)
  tiny(config)
  config.optim.param_groups = param_groups()

