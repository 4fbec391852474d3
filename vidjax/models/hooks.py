"""The hook contract: how temporal modules enter the blocks of a 2D backbone.

A hook factory is `factory(info: BlockInfo) -> nn.Module | None` (a plain function or
functools.partial, pure: flax may run a block's setup more than once). A block that
offers the slots calls every factory in its setup; a returned module becomes a child of
the block under the slot's fixed name, None leaves the slot empty. The module is called
as `module(x, num_segments=T, train=hook_train)`: x is [N*T, H, W, C] and the result has
the same shape. `hook_train` is False when the stage's BNs are in eval mode, so hooks
with BatchNorm follow their stage; partial BN does not reach hooks (upstream freezes only
the trunk's own BatchNorm2d layers). Hook parameters are ordinary params of the block,
so a converter only adds rename rules for them.

Slots (child name: where):
  pre_module (`pre`): the block input, before the split into residual and shortcut
    (TSM's 'block' shift).
  temporal_module (`temporal`): the residual branch before its first conv; the shortcut
    sees the unchanged input (TSM's 'blockres' shift).
  inner_module (`inner`): the residual branch after its first conv's BN and ReLU, before
    the next conv (TANet's TAM; in a BasicBlock, before its second conv).
  mid_module (`mid`): after the BN that follows the block's spatial conv, before its ReLU
    (GC's ECal calibrators).
  post_module (`post`): the block output after the final ReLU (non-local blocks).

Temporal modules register as kind "temporal" under their config field (`model.shift`,
`model.non_local`, `model.ecal`), with defaults holding `enabled=False` and a builder
`builder(field_cfg, model_cfg) -> {slot: factory}` called only when enabled.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import flax.linen as nn
import jax
import ml_collections

from vidjax.models import registry

HOOK_SLOTS = ("pre_module", "temporal_module", "inner_module", "mid_module", "post_module")


@dataclasses.dataclass(frozen=True)
class BlockInfo:
  """Where a residual block sits, for hook factories.

  stage: 1..4 (torchvision `layer{stage}`); index: block index inside the stage;
  block_id: running index over the whole network (0-based); stage_sizes: blocks per
  stage, e.g. (3, 4, 6, 3); in_channels / width / out_channels: the block's input,
  inner (spatial conv) and output channel counts; stride: the block's spatial stride;
  expansion: 1 (BasicBlock) or 4 (Bottleneck).
  """
  stage: int
  index: int
  block_id: int
  stage_sizes: tuple[int, ...]
  in_channels: int
  width: int
  out_channels: int
  stride: int
  expansion: int

  @property
  def name(self) -> str:
    return f"layer{self.stage}_{self.index}"


HookFactory = Callable[[BlockInfo], Optional[nn.Module]]


class HookedBlock(nn.Module):
  """Base of blocks that offer the slots: call `setup_hooks(info)` in `setup`, then
  `hook(self.pre, x, ...)` etc. at the slot's place."""
  pre_module: Optional[HookFactory] = None
  temporal_module: Optional[HookFactory] = None
  inner_module: Optional[HookFactory] = None
  mid_module: Optional[HookFactory] = None
  post_module: Optional[HookFactory] = None

  def setup_hooks(self, info: BlockInfo) -> None:
    # Assigning in setup names the children after the attribute: pre, temporal, inner,
    # mid, post.
    self.pre = self.pre_module(info) if self.pre_module else None
    self.temporal = self.temporal_module(info) if self.temporal_module else None
    self.inner = self.inner_module(info) if self.inner_module else None
    self.mid = self.mid_module(info) if self.mid_module else None
    self.post = self.post_module(info) if self.post_module else None

  @staticmethod
  def hook(m: Optional[nn.Module], x: jax.Array, num_segments: int, train: bool) -> jax.Array:
    return x if m is None else m(x, num_segments=num_segments, train=train)


def temporal_defaults() -> dict[str, ml_collections.ConfigDict]:
  """{field: default sub-config} of every registered temporal module (all disabled)."""
  return {field: entry.defaults() for field, entry in registry.temporal_entries()}


def build_hooks(model_config: ml_collections.ConfigDict) -> dict[str, HookFactory]:
  """The backbone hook factories of the enabled temporal modules of `model_config`."""
  hooks: dict[str, HookFactory] = {}
  owner: dict[str, str] = {}
  for field, entry in registry.temporal_entries():
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
