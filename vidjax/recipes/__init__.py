"""Published training recipes as data, shared by the config files of one model family.

Four tables serve every family: data sets (`datasets.py`), test protocols
(`protocols.py`), the variant grammar (`variant.py`) and the defaults of the model parts
and the optimiser, which each recipe changes only where it differs (`set_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections


def set_fields(config: ml_collections.ConfigDict, fields: Mapping[str, Any]) -> None:
  """Sets dotted fields, e.g. {"optim.lr": 0.01, "batch_size": 64}: a recipe row as data.

  Every field must exist already (the defaults hold them all), so a typo in a table fails
  here rather than as a field nobody reads.
  """
  for dotted, value in fields.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise KeyError(f"recipe field config.{dotted} does not exist")
    node[leaf] = value
