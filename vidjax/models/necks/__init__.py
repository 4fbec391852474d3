"""Necks, one file each; each registers itself (kind "neck", `model.neck.name`).

A neck sits between backbone and head: `neck(features, num_segments=T, train=...)`, where
features are what the backbone returns (one array, or a tuple of stages with the
backbone's `out_stages`). It may add an auxiliary loss with `self.sow("losses", name,
scalar)`. `model.neck.name=""` (the default) is no neck.
"""
