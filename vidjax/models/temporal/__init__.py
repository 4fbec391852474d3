"""Temporal modules that plug into the hook slots of 2D backbone blocks.

Each temporal module is configuration on the 2D models ('tsn'): a sub-config
`model.<field>` (e.g. `model.shift`, `model.non_local`, `model.ecal`) with `enabled=False`
by default, and a builder that turns an enabled sub-config into hook factories for the
backbone's slots (`pre_module`, `temporal_module`, `mid_module`, `post_module`; see
backbones/resnet.py). Two enabled modules may not claim the same slot.

A module file registers itself with `@register_temporal(field, defaults)` on
`builder(field_config, model_config) -> {slot: HookFactory}`, and is imported at the
bottom of this file.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

HOOK_SLOTS = ("pre_module", "temporal_module", "mid_module", "post_module")


@dataclasses.dataclass(frozen=True)
class _Entry:
  defaults: Callable[[], ml_collections.ConfigDict]
  builder: Callable[[ml_collections.ConfigDict, ml_collections.ConfigDict], dict]


_TEMPORAL: dict[str, _Entry] = {}


def register_temporal(field: str, defaults: Callable[[], ml_collections.ConfigDict]):
  """Decorator on `builder(field_config, model_config) -> {slot: HookFactory}`.

  `defaults()` must contain `enabled` (False); the builder is only called when it is True.
  """
  def wrap(builder):
    if "enabled" not in defaults():
      raise ValueError(f"temporal module {field!r}: its defaults need an 'enabled' field")
    _TEMPORAL[field] = _Entry(defaults, builder)
    return builder
  return wrap


def temporal_defaults() -> dict[str, ml_collections.ConfigDict]:
  """{field: default sub-config} of every registered temporal module (all disabled)."""
  return {field: entry.defaults() for field, entry in sorted(_TEMPORAL.items())}


def build_hooks(model_config: ml_collections.ConfigDict) -> dict:
  """The backbone hook factories of the enabled temporal modules of `model_config`."""
  hooks: dict = {}
  owner: dict[str, str] = {}
  for field, entry in sorted(_TEMPORAL.items()):
    sub = model_config.get(field)
    if sub is None or not sub.enabled:
      continue
    for slot, factory in entry.builder(sub, model_config).items():
      if slot not in HOOK_SLOTS:
        raise ValueError(f"model.{field}: unknown hook slot {slot!r}; slots: {HOOK_SLOTS}")
      if slot in hooks:
        raise ValueError(f"model.{field} and model.{owner[slot]} both need the backbone's "
                         f"{slot!r} slot; enable only one of them")
      hooks[slot], owner[slot] = factory, field
  return hooks


# Registered temporal modules (each file registers itself on import):
from vidjax.models.temporal import gc as _gc  # noqa: E402,F401  isort: skip
from vidjax.models.temporal import shift as _shift  # noqa: E402,F401  isort: skip
from vidjax.models.temporal import non_local as _non_local  # noqa: E402,F401  isort: skip
