"""Temporal modules for the hook slots of 2D backbone blocks (contract: models/hooks.py).

Each file registers itself as kind "temporal" under its config field:
  shift.py      `model.shift`      TSM's temporal shift (temporal_module or pre_module)
  non_local.py  `model.non_local`  non-local blocks (post_module)
  gc.py         `model.ecal`       GC's group contextualization, ECal (mid_module)
  tin.py        `model.tin`        TIN's temporal interlace (temporal_module)
  tam.py        `model.tam`        TANet's temporal adaptive module (inner_module)
"""

from vidjax.models.temporal import gc as _gc  # noqa: F401
from vidjax.models.temporal import non_local as _non_local  # noqa: F401
from vidjax.models.temporal import shift as _shift  # noqa: F401
from vidjax.models.temporal import tam as _tam  # noqa: F401
from vidjax.models.temporal import tin as _tin  # noqa: F401
