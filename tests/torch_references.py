"""Shared pieces of the PyTorch parity references: the torchvision-layout ResNet trunk
(module names as in the upstream state_dicts: layerS.B.downsample.0, ...), written from
reference/tsm_gc.md sections 1.5-1.6, and non-trivial BatchNorm statistics."""

import torch
from torch import nn


def calibrate_batchnorm(model: nn.Module, example: torch.Tensor, generator: torch.Generator,
                        var_range: tuple[float, float] = (0.5, 2.0),
                        types: tuple = (nn.BatchNorm2d,)) -> nn.Module:
  """Measures every BatchNorm2d's (every `types`') statistics on `example`, then perturbs them.

  Measured statistics keep activations O(1) through deep trunks; the perturbation (mean
  shifted by 0.2 std, variance scaled within `var_range`) makes eval mode differ from
  batch normalisation, so converted running statistics are really exercised.
  Returns the model in eval mode.
  """
  bns = [m for m in model.modules() if isinstance(m, types)]
  with torch.no_grad():
    for m in bns:
      m.momentum = 1.0  # the running stats become this batch's
    model.train()
    model(example)
    low, high = var_range
    for m in bns:
      m.momentum = 0.1
      std = m.running_var.sqrt()
      m.running_mean.add_(torch.randn(m.running_mean.shape, generator=generator) * 0.2 * std)
      m.running_var.mul_(torch.rand(m.running_var.shape, generator=generator) * (high - low)
                         + low)
  model.eval()
  return model


class RefBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = _downsample(inplanes, planes, stride)

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = torch.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return torch.relu(out + identity)


class RefBottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = _downsample(inplanes, planes * 4, stride)

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = torch.relu(self.bn1(self.conv1(x)))
    out = torch.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return torch.relu(out + identity)


def _downsample(inplanes, outplanes, stride):
  if stride == 1 and inplanes == outplanes:
    return None
  return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                       nn.BatchNorm2d(outplanes))


RESNET_LAYOUT = {18: (RefBasicBlock, (2, 2, 2, 2)), 50: (RefBottleneck, (3, 4, 6, 3)),
                 101: (RefBottleneck, (3, 4, 23, 3))}


def add_resnet_trunk(module: nn.Module, depth: int, strides=(1, 2, 2, 2), block=None) -> int:
  """Registers conv1, bn1, maxpool and layer1..4 on `module`; returns the output width.

  `block`: optional block class (or any callable with an `expansion` attribute) taking
  (inplanes, planes, stride, stage=s, index=i) (e.g. a bottleneck with temporal modules);
  default the plain torchvision block of `depth`.
  """
  default_block, sizes = RESNET_LAYOUT[depth]
  make = default_block if block is None else block
  module.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
  module.bn1 = nn.BatchNorm2d(64)
  module.maxpool = nn.MaxPool2d(3, 2, 1)
  inplanes = 64
  for s, (n, planes, stride) in enumerate(zip(sizes, (64, 128, 256, 512), strides), start=1):
    blocks = []
    for i in range(n):
      stride_i = stride if i == 0 else 1
      blocks.append(make(inplanes, planes, stride_i) if block is None
                    else make(inplanes, planes, stride_i, stage=s, index=i))
      inplanes = planes * make.expansion
    setattr(module, f"layer{s}", nn.Sequential(*blocks))
  return inplanes


def resnet_trunk(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
  """[N, 3, H, W] -> the layer4 feature map of a trunk added by `add_resnet_trunk`."""
  x = module.maxpool(torch.relu(module.bn1(module.conv1(x))))
  return module.layer4(module.layer3(module.layer2(module.layer1(x))))
