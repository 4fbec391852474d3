"""TCPNet's recipes (reference/tcpnet.md section 4) for its three backbones, as tables.

`configs/tcp_tsn_r50.py`, `configs/tcp_tea_r50.py` and `configs/tcp_tsn_r152.py` are
`tcpnet_config(ARCH, variant)`; their docstrings give the commands and the expected
accuracies. Variant parts (vidjax/recipes/variant.py): data set `k400` (the default),
`minik200` and `hmdb` where upstream has them; `16f`; `test30` (protocol `tcp_test30`);
`demo`, `smoke`.
"""

from __future__ import annotations

import ml_collections

from vidjax import config_defaults, models
from vidjax.recipes import datasets, protocols, set_fields, variant
from vidjax.train import optim

# arch -> backbone (registry name), its changes to the registry's model defaults,
# gradient clipping, lr multiplier of the new layers (lr_x_factor), the ImageNet GCP
# checkpoint the K400 scripts start from, the smoke variant's depth.
ARCHS = {
    # layer4 at stride 1 (the registry's ResNet: stride 2).
    "tsn_r50": dict(backbone="resnet", model={"backbone.strides": (1, 2, 2, 1)},
                    clip_grad_norm=20.0, lr_x=5.0, gcp_init="ImgeNet1K_GCP_R50.pth.tar",
                    smoke_depth=18),
    "tea_r50": dict(backbone="tea_res2net", model={}, clip_grad_norm=20.0, lr_x=10.0,
                    gcp_init="ImageNet1K_Res2Net50_GCP_R50.pth.tar", smoke_depth=50),
    # MXNet origin: raw 0..255 pixels (bn_data normalises); the registry's preact_resnet
    # is this one (depth 152, layer4 stride 1, BatchNorm eps 2e-5).
    "tsn_r152": dict(backbone="preact_resnet", model={"pixel_mean": None, "pixel_std": None},
                     clip_grad_norm=60.0, lr_x=50.0,
                     gcp_init="ImgeNet11K_1K_preact_R152_GCP.pth.tar", smoke_depth=50),
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

# Mini-Kinetics-200 (upstream: TSN-R50 only): the K400 8f recipe with steps 20 30 and
# 40 epochs.
MINIK200 = ("tsn_r50",)
MINIK200_RECIPE = {"optim.lr_steps": (20, 30), "optim.epochs": 40.0}

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


# TCP's data set parts -> data sets (vidjax/recipes/datasets.py).
DATA_PARTS = {"k400": "k400", "minik200": "minik200", "hmdb": "hmdb51"}


def variants(arch: str) -> tuple[str, ...]:
  """The documented variants of `tcpnet_config(arch, ...)` (the grammar also takes
  combinations such as 'hmdb_test30')."""
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
  data_parts = ["k400"] + (["minik200"] if arch in MINIK200 else []) + (
      ["hmdb"] if arch in HMDB else [])
  v = variant.parse(arg, f"tcp_{arch}.py", dataset=tuple(data_parts), frames=("16f",),
                    test=("test30",), run=variant.RUNS)
  dataset = DATA_PARTS[v.dataset or "k400"]
  frames = v.num_frames(8)
  if dataset != "k400" and frames != 8:
    raise v.error(f"upstream's {v.dataset!r} recipe has 8 frames only.")
  spec = ARCHS[arch]
  lr, lr_steps, epochs, batch = K400[(arch, frames)]

  config = config_defaults.trainer_defaults()
  config.data = config_defaults.data_config(num_frames=frames)
  config.model = models.default_config("recognizer", "recognizer2d")
  config.model.backbone = models.default_config("backbone", spec["backbone"])
  config.model.head = models.default_config("head", "tcp")
  set_fields(config.model, spec["model"])
  datasets.apply(config, dataset)
  config.batch_size = batch
  config.optim = optim.default_config()
  config.optim.update(lr=lr, lr_steps=lr_steps, epochs=float(epochs),
                      clip_grad_norm=spec["clip_grad_norm"],
                      param_groups=param_groups(spec["lr_x"]), no_decay=NO_DECAY)
  config.eval.batch_size = 32

  if dataset == "minik200":
    set_fields(config, MINIK200_RECIPE)
  elif dataset == "hmdb51":
    lr, lr_steps, epochs, batch, dropout, wd = HMDB[arch]
    config.model.head.dropout_rate = dropout
    config.model.backbone.partial_bn = True
    config.batch_size = batch
    config.optim.update(lr=lr, lr_steps=lr_steps, epochs=float(epochs), weight_decay=wd)
    config.optim.param_groups = param_groups(spec["lr_x"], norm_decay=0.0)
  if v.test:
    protocols.apply(config, "tcp_test30")
  if v.run == "demo":
    _demo(config)
  elif v.run == "smoke":
    config_defaults.use_smoke(config, epochs=1.0, depth=spec["smoke_depth"])
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
