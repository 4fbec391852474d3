"""Heads, one file each; each registers itself (kind "head", `model.head.name`).

A head is called as `head(features, num_segments=T, train=...)` and returns logits
[B, K] float32; its classifier is `dropout_fc` (classifier.py).
  tsn  tsn.py  pool, dropout, fc, segment consensus (TSN, TSM, GC)
  tcp  tcp.py  TCPNet's temporal-attentive covariance pooling, dropout, fc
  i3d  i3d.py  MMAction2's I3DHead: pool over T, H, W, dropout, fc (3D recognizers;
       TPNHead after the TPN neck)
  slowfast  slowfast.py  MMAction2's SlowFastHead: pool each pathway, [fast, slow], fc
  x3d  x3d.py  MMAction2's X3DHead: pool, fc1 (no bias), ReLU, dropout, fc2
  audio_tsn  audio_tsn.py  MMAction2's AudioTSNHead: pool, dropout, fc (audio recognizer)
  timesformer  timesformer.py  MMAction2's TimeSformerHead: fc on the class token
  trn  trn.py  MMAction2's TRNHead: per-frame fc, multi-scale temporal relation MLPs
"""

from vidjax.models.heads import i3d as _i3d  # noqa: F401
from vidjax.models.heads import slowfast as _slowfast  # noqa: F401
from vidjax.models.heads import tcp as _tcp  # noqa: F401
from vidjax.models.heads import timesformer as _timesformer  # noqa: F401
from vidjax.models.heads import trn as _trn  # noqa: F401
from vidjax.models.heads import tsn as _tsn  # noqa: F401
from vidjax.models.heads import x3d as _x3d  # noqa: F401
from vidjax.models.heads import audio_tsn as _audio_tsn  # noqa: F401
