"""Backbones, one file each; each registers itself (kind "backbone", `model.backbone.name`).

  resnet         resnet.py         torchvision ResNet-18..152, with the hook slots
  preact_resnet  preact_resnet.py  TCPNet's pre-activation ResNet (raw 0..255 input)
  tea_res2net    res2net_tea.py    TCPNet's TEA Res2Net-50 26w x 4s
  mobilenet_v2   mobilenet_v2.py   TSM's MobileNetV2 (`temporal_module` slot only)
  resnet3d       resnet3d.py       MMAction2's ResNet3d (I3D, SlowOnly) on [N, T, H, W, C]
  c2d            resnet3d.py       MMAction2 1.x's C2D (ResNet-50 per frame, 3D pools)
  cost           cost.py           CoST's ResNet3dCoST (CoST(a), CoST(b), its C2D and I3D)
  csn            csn.py            MMAction2's ResNet3dCSN (ir-CSN / ip-CSN) on ResNet3d
  r2plus1d       r2plus1d.py       MMAction2's ResNet2Plus1d (R(2+1)D) on ResNet3d
  slowfast       slowfast.py       MMAction2's SlowFast: two ResNet3d pathways, laterals
  c3d            c3d.py            MMAction2's C3D (8 convs with bias, fc6 / fc7)
  x3d            x3d.py            MMAction2's X3D (X3D-S / X3D-M: depthwise, SE, Swish)
  timesformer    timesformer.py    MMAction2's TimeSformer (ViT-B/16: divided, joint or
                                   space-only attention)

The ResNet-family trunks share their training policy in trunk.py.
"""

from vidjax.models.backbones import c3d as _c3d  # noqa: F401
from vidjax.models.backbones import cost as _cost  # noqa: F401
from vidjax.models.backbones import csn as _csn  # noqa: F401
from vidjax.models.backbones import mobilenet_v2 as _mobilenet_v2  # noqa: F401
from vidjax.models.backbones import preact_resnet as _preact_resnet  # noqa: F401
from vidjax.models.backbones import r2plus1d as _r2plus1d  # noqa: F401
from vidjax.models.backbones import res2net_tea as _res2net_tea  # noqa: F401
from vidjax.models.backbones import resnet as _resnet  # noqa: F401
from vidjax.models.backbones import resnet3d as _resnet3d  # noqa: F401
from vidjax.models.backbones import slowfast as _slowfast  # noqa: F401
from vidjax.models.backbones import timesformer as _timesformer  # noqa: F401
from vidjax.models.backbones import x3d as _x3d  # noqa: F401
