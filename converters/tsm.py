"""Source 'tsm': TSN/TSM ResNet checkpoints of mit-han-lab/temporal-shift-module.

Key layout (reference/tsm_gc.md sections 1.2, 1.5, 1.8), after common's `module.` strip:

    base_model.<torchvision resnet key>  -> backbone.<vidjax resnet path>
    base_model.layer1.0.conv1.net.weight -> backbone.layer1_0.conv1.weight   (shift wrapper)
    base_model.layer1.0.net.conv1.weight -> backbone.layer1_0.conv1.weight   ('block' place)
    new_fc.{weight,bias}                 -> head.fc.*   (dropout > 0: base_model.fc is Dropout)
    base_model.fc.{weight,bias}          -> head.fc.*   (dropout == 0: the Linear sits there)

The `.net` wrapper level says nothing we need: whether frames are shifted comes from the
model config, not from the keys (TSM's own `--tune_from` renames the same way).
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from converters.common import rename_torchvision_resnet, strip_infix

MODELS = ("tsn",)


def rename_key(key: str, model_config: ml_collections.ConfigDict) -> Optional[str]:
  del model_config  # the same rules serve every TSN/TSM variant
  key = strip_infix(key, "net")
  for head in ("new_fc.", "base_model.fc."):
    if key.startswith(head):
      return "head.fc." + key[len(head):]
  if key.startswith("base_model."):
    return "backbone." + rename_torchvision_resnet(key[len("base_model."):])
  return None
