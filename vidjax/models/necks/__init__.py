"""Necks, one file each; each registers itself (kind "neck", `model.neck.name`).

A neck sits between backbone and head: `neck(features, num_segments=T, train=...)`, where
features are what the backbone returns (one array, or a tuple of stages with the
backbone's `out_stages`). It may add an auxiliary loss with `self.sow("losses", name,
scalar)`, or an auxiliary classifier with `self.sow("aux_logits", name, {"logits": ...,
"weight": ...})` (vidjax/train/steps.py). `model.neck.name=""` (the default) is no neck.
  tpn  tpn.py  MMAction2's TPN: temporal pyramid over two stages, auxiliary head
"""

from vidjax.models.necks import tpn as _tpn  # noqa: F401
