"""CoST's release (converter source 'cost'): ResNet3dCoST with the CoSTa / CoSTb convs and
I3DHead, written from reference/mmaction2_cost.md section 19 with the release's state_dict
names (`backbone.layer1.1.conv2.conv.weight` (C, C, 1, 3, 3), `...conv2.conv.alpha`,
`...conv2.conv.fc1.weight`, `cls_head.fc_cls.weight`, ...).

The MMAction2 pieces (ConvModule, I3DHead, Recognizer3D) come from mmaction2.py."""

import torch
import torch.nn.functional as F
from torch import nn

from torch_references.common import calibrate_batchnorm, random_init, to_torch_input
from torch_references.mmaction2 import (
  SPECS,
  ConvModule,
  I3DHead,
  Recognizer3D,
  TrunkBN3d,
  _pattern,
)
from vidjax.models import resolve_model_config


def three_views(x, weight, stride):
  """weight (O, I, 1, 3, 3) as three Conv3d kernels: over (H, W), (T, W) and (T, H)."""
  w = weight[:, :, 0]
  hw = F.conv3d(x, w.unsqueeze(2), None, stride, (0, 1, 1))
  tw = F.conv3d(x, w.unsqueeze(3), None, stride, (1, 0, 1))
  th = F.conv3d(x, w.unsqueeze(4), None, stride, (1, 1, 0))
  return hw, tw, th


class CoSTa(nn.Module):
  """Coefficients softmax(alpha) over the views, per output channel."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.stride = stride
    self.weight = nn.Parameter(torch.empty(cout, cin, 1, 3, 3))
    self.alpha = nn.Parameter(torch.empty(3, cout))

  def forward(self, x):
    views = three_views(x, self.weight, self.stride)
    a = self.alpha.softmax(0)
    return sum(v * a[i].view(1, -1, 1, 1, 1) for i, v in enumerate(views))


class CoSTb(nn.Module):
  """Coefficients from fc2(fc1(global max of each view)), softmax over the views."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.stride, self.cout = stride, cout
    self.weight = nn.Parameter(torch.empty(cout, cin, 1, 3, 3))
    self.max_pool = nn.AdaptiveMaxPool3d(1)
    self.fc1 = nn.Linear(cout, cout, bias=False)
    self.fc2 = nn.Linear(3, 3, bias=False)

  def forward(self, x):
    views = three_views(x, self.weight, self.stride)
    n = x.shape[0]
    pooled = torch.cat([self.max_pool(v).view(n, self.cout) for v in views])   # (3N, C)
    mixed = self.fc1(pooled).view(3, n * self.cout).t()                          # (NC, 3)
    a = self.fc2(mixed).t().reshape(3, n, self.cout, 1, 1, 1).softmax(0)
    return sum(v * a[i] for i, v in enumerate(views))


class Bottleneck3dCoST(nn.Module):
  """conv1 -> conv2 (strides) -> conv3, add, ReLU; the cost styles put CoSTa / CoSTb into
  conv2 (ConvModule: `conv2.conv`, `conv2.bn`)."""

  def __init__(self, inplanes, planes, s, t, inflate, style, downsample):
    super().__init__()
    cost = inflate and style in ("costa", "costb")
    if not inflate or cost:
      k1, p1, k2, p2 = (1, 1, 1), 0, (1, 3, 3), (0, 1, 1)
    elif style == "3x1x1":
      k1, p1, k2, p2 = (3, 1, 1), (1, 0, 0), (1, 3, 3), (0, 1, 1)
    else:
      k1, p1, k2, p2 = (1, 1, 1), 0, (3, 3, 3), (1, 1, 1)
    self.conv1 = ConvModule(inplanes, planes, k1, 1, p1)
    self.conv2 = ConvModule(planes, planes, k2, (t, s, s), p2)
    if cost:
      self.conv2.conv = (CoSTa if style == "costa" else CoSTb)(planes, planes, (t, s, s))
    self.conv3 = ConvModule(planes, planes * 4, 1, act=False)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet3dCoST(nn.Module):
  """MMAction2's ResNet3d with CoST's blocks; the stem pool is (2, 3, 3) when
  pool1_stride_t != 1, padded (0, 1, 1) either way; pool2 after layer1."""

  def __init__(self, b):
    super().__init__()
    _, sizes = SPECS[b.depth]
    k, base = tuple(b.conv1_kernel), b.base_channels
    self.conv1 = ConvModule(3, base, k, (b.conv1_stride_t, 2, 2), tuple((i - 1) // 2 for i in k))
    kt = 1 if b.pool1_stride_t == 1 else 2
    self.maxpool = nn.MaxPool3d((kt, 3, 3), (b.pool1_stride_t, 2, 2), (0, 1, 1))
    self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))
    inplanes = base
    for i, n in enumerate(sizes):
      planes, s = base * 2 ** i, b.strides[i]
      inflate = _pattern(b.inflate[i], n)
      downsample = None
      if s != 1 or inplanes != planes * 4:
        downsample = ConvModule(inplanes, planes * 4, 1, (1, s, s), act=False)
      blocks = []
      for j in range(n):
        blocks.append(Bottleneck3dCoST(inplanes, planes, s if j == 0 else 1, 1, inflate[j],
                                       b.inflate_style, downsample if j == 0 else None))
        inplanes = planes * 4
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

  def forward(self, x):  # (N, 3, T, H, W)
    x = self.pool2(self.layer1(self.maxpool(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(x)))


def build(config):
  """The reference of `config.model` with torch's default init (shapes and keys only)."""
  m = resolve_model_config(config.model)
  width = 32 * m.backbone.base_channels
  return Recognizer3D(ResNet3dCoST(m.backbone), I3DHead(width, m.num_classes))


def randomize(model, example, seed):
  """Random weights; CoST kernels He-normal (fan-out), CoST(a)'s alphas N(0, 1) so the
  three views mix unevenly per channel; the last BN of each block gains 0.2..0.5; trunk
  BN statistics measured on `example` and perturbed."""
  g = torch.Generator().manual_seed(seed)
  random_init(model, g, fan="out")
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (CoSTa, CoSTb)):
        fan_out = m.weight.shape[0] * 9
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
      if isinstance(m, CoSTa):
        m.alpha.copy_(torch.randn(m.alpha.shape, generator=g))
      if isinstance(m, Bottleneck3dCoST):
        bn = m.conv3.bn
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.3 + 0.2)
  return calibrate_batchnorm(model, example, g, (0.5, 2.0), types=(TrunkBN3d,))


# --- builder: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. --------

def recognizer(config, clip, seed):
  """The CoST recognizer of `config.model` (backbone 'cost', I3DHead)."""
  return randomize(build(config), to_torch_input(clip), seed)
