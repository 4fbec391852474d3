"""TCPNet's recipes (reference/tcpnet.md section 4) for its three backbones, as tables.

`configs/tcp_tsn_r50.py`, `configs/tcp_tea_r50.py` and `configs/tcp_tsn_r152.py` are
`tcpnet_config(ARCH, variant)`; their docstrings give the commands and the expected
accuracies. Variants: '' (K400, 8 frames), '16f', 'minik200' and 'hmdb' (where upstream
has them), 'test30' / 'test30_16f' (the 30-view test), 'demo' and 'smoke'.
"""

from __future__ import annotations

import ml_collections

from vidjax import config_defaults

_IMAGENET_MEAN = (123.675, 116.28, 103.53)   # 0..255 units
_IMAGENET_STD = (58.395, 57.12, 57.375)

# arch -> backbone config, pixel normalisation, gradient clipping, lr multiplier of the
# new layers (lr_x_factor), the ImageNet GCP checkpoint the K400 scripts start from.
ARCHS = {
    "tsn_r50": dict(
        backbone=dict(name="resnet", depth=50, strides=(1, 2, 2, 1), frozen_stages=-1, remat=False,
                      norm_eval=False, partial_bn=False, bn_eps=1e-5, bn_momentum=0.9),
        pixel_mean=_IMAGENET_MEAN, pixel_std=_IMAGENET_STD, clip_grad_norm=20.0,
        lr_x=5.0, gcp_init="ImgeNet1K_GCP_R50.pth.tar"),
    "tea_r50": dict(
        backbone=dict(name="tea_res2net", depth=50, strides=(1, 2, 2, 1), frozen_stages=-1,
                      norm_eval=False, partial_bn=False, bn_eps=1e-5, bn_momentum=0.9),
        pixel_mean=_IMAGENET_MEAN, pixel_std=_IMAGENET_STD, clip_grad_norm=20.0,
        lr_x=10.0, gcp_init="ImageNet1K_Res2Net50_GCP_R50.pth.tar"),
    # MXNet origin: raw 0..255 pixels (bn_data normalises), BatchNorm eps 2e-5.
    "tsn_r152": dict(
        backbone=dict(name="preact_resnet", depth=152, strides=(1, 2, 2, 1),
                      frozen_stages=-1, norm_eval=False, partial_bn=False, bn_eps=2e-5,
                      bn_momentum=0.9),
        pixel_mean=None, pixel_std=None, clip_grad_norm=60.0,
        lr_x=50.0, gcp_init="ImgeNet11K_1K_preact_R152_GCP.pth.tar"),
}

# (arch, frames) -> the K400 script's lr, lr_steps, epochs, batch (reference/tcpnet.md
# 4.2; the 16f scripts' `--num_segments 8` is a copy-paste error: the models have T=16).
K400 = {
    ("tsn_r50", 8): (0.015, (20, 40), 50, 96),
    ("tsn_r50", 16): (0.00375, (20, 40), 50, 96),
    ("tea_r50", 8): (0.01, (20, 30), 40, 32),
    ("tea_r50", 16): (0.0025, (20, 40), 50, 32),
    ("tsn_r152", 8): (0.0008125, (20, 30), 40, 52),
    ("tsn_r152", 16): (0.0002, (20, 30), 40, 26),
}

# HMDB51 fine-tuning from the K400 TCP model (the fc is dropped): lr, lr_steps, epochs,
# batch, dropout, weight decay. Partial BN (the scripts do not pass --npb).
HMDB = {
    "tsn_r50": (0.001, (5, 10), 15, 52, 0.8, 5e-4),
    "tea_r50": (0.001, (5, 10), 15, 32, 0.5, 5e-4),   # wd: opts.py's default
}

# Mini-Kinetics-200: the K400 8f recipe with steps 20 30 and 40 epochs.
MINIK200 = ("tsn_r50",)

# Biases and BatchNorm affines are not decayed, except TSA's BatchNorm (in att_norm).
NO_DECAY = (r"^(?!head/att/tsa/norm/).*(bias|scale)$",)


def param_groups(lr_x: float, norm_decay: float = 1.0) -> tuple:
  """TCPNet's parameter groups (reference/tcpnet.md 4.1). First match wins.

  `norm_decay`: decay of TSA's BatchNorm affine; 0 when partial BN freezes it (upstream
  then leaves it out of the optimizer altogether).
  """
  return (
      {"name": "att_norm", "regex": r"^head/att/tsa/norm/", "lr_mult": lr_x,
       "decay_mult": norm_decay},
      {"name": "att_bias", "regex": r"^head/att/.*/bias$", "lr_mult": lr_x, "decay_mult": 0.0},
      {"name": "att", "regex": r"^head/att/", "lr_mult": lr_x, "decay_mult": 1.0},
      {"name": "fc_weight", "regex": r"^head/fc/kernel$", "lr_mult": lr_x, "decay_mult": 1.0},
      {"name": "fc_bias", "regex": r"^head/fc/bias$", "lr_mult": 2 * lr_x, "decay_mult": 0.0},
  )


def variants(arch: str) -> tuple[str, ...]:
  """The variants `tcpnet_config(arch, ...)` accepts."""
  names = ["", "16f"]
  if arch in MINIK200:
    names.append("minik200")
  if arch in HMDB:
    names.append("hmdb")
  return tuple(names + ["test30", "test30_16f", "demo", "smoke"])


def tcpnet_config(arch: str, arg: str = "") -> ml_collections.ConfigDict:
  """The full config of TCP with backbone `arch` ('tsn_r50' | 'tea_r50' | 'tsn_r152')."""
  if arch not in ARCHS:
    raise ValueError(f"unknown TCPNet arch {arch!r}; known: {', '.join(ARCHS)}")
  if arg not in variants(arch):
    raise ValueError(f"configs/tcp_{arch}.py: unknown variant {arg!r}; expected one of "
                     f"{', '.join(repr(v) for v in variants(arch))}.")
  spec = ARCHS[arch]
  frames = 16 if arg in ("16f", "test30_16f") else 8
  lr, lr_steps, epochs, batch = K400[(arch, frames)]

  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=frames, image_size=224)
  config.model = ml_collections.ConfigDict(dict(
      name="recognizer2d",
      num_classes=400,
      pixel_mean=spec["pixel_mean"],
      pixel_std=spec["pixel_std"],
      dtype="float32",
      backbone=ml_collections.ConfigDict(spec["backbone"]),
      head=ml_collections.ConfigDict(dict(
          name="tcp", num_segments=frames, dropout_rate=0.5, fc_init_std=0.001,
          dim_reduce=256, dim=128, use_tsa=True, use_tca=True, use_conv1d=True,
          sqrt_iters=3)),
  ))
  config.batch_size = batch
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=lr, momentum=0.9, nesterov=False, weight_decay=1e-4,
      epochs=float(epochs), schedule="step", lr_steps=lr_steps, lr_decay=0.1,
      warmup_epochs=0.0, warmup_start_factor=0.0, min_lr=0.0,
      clip_grad_norm=spec["clip_grad_norm"],
      param_groups=param_groups(spec["lr_x"]),
      no_decay=NO_DECAY,
  ))
  config.eval.batch_size = 32

  if arg == "minik200":
    config.data.update(name="minikinetics200", root="~/data/minikinetics200",
                       train_list="~/data/minikinetics200/train_list_videos.txt",
                       eval_list="~/data/minikinetics200/val_list_videos.txt",
                       num_classes=200)
    config.model.num_classes = 200
    config.optim.update(lr_steps=(20, 30), epochs=40.0)
  elif arg == "hmdb":
    lr, lr_steps, epochs, batch, dropout, wd = HMDB[arch]
    config.data.update(name="hmdb51", root="~/data/hmdb51",
                       train_list="~/data/hmdb51/hmdb51_train_split_1_videos.txt",
                       eval_list="~/data/hmdb51/hmdb51_val_split_1_videos.txt",
                       num_classes=51)
    config.model.num_classes = 51
    config.model.head.dropout_rate = dropout
    config.model.backbone.partial_bn = True
    config.batch_size = batch
    config.optim.update(lr=lr, lr_steps=lr_steps, epochs=float(epochs), weight_decay=wd)
    config.optim.param_groups = param_groups(spec["lr_x"], norm_decay=0.0)
  elif arg in ("test30", "test30_16f"):
    config.data.update(image_size=256, test_scale=256, test_clips=10,
                       test_sampling="ten_clips", test_crop="full_res_three")
    config.eval.num_views = 30   # data.test_clips x 3 crops
    config.eval.fusion = "max_softmax"
    config.eval.batch_size = 2   # videos of 30 views each (upstream --batch_size 2)
  elif arg == "demo":
    _demo(config)
  elif arg == "smoke":
    config_defaults.use_smoke(config, epochs=1.0,
                              depth={"tsn_r50": 18, "tea_r50": 50, "tsn_r152": 50}[arch])
    config.model.head.update(dim_reduce=64, dim=32)

  # The model's T follows the data's (conv_1d's kernel is T//2+1), also under overrides
  # such as --config.data.num_frames=16.
  config.model.head.num_segments = config.data.get_ref("num_frames")
  return config


def _demo(config: ml_collections.ConfigDict) -> None:
  """The same architecture on the embedded demo data set, trained from scratch on a CPU."""
  config_defaults.use_demo(config, lr=2e-3, epochs=2.0)
  # TCPNet's own parameter groups (attention and fc at lr x5) and no dropout for the
  # short schedule; tests/test_learning.py trains the smoke model with this recipe.
  config.model.head.dropout_rate = 0.0
  config.optim.param_groups = param_groups(5.0)
