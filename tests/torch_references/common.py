"""Shared pieces of the PyTorch references: random weights with non-trivial BatchNorm
statistics, seeded clips and their torch layout, the max difference, the torchvision-layout
ResNet trunk (module names as in the upstream state_dicts: layerS.B.downsample.0, ...,
written from reference/tsm_gc.md sections 1.5-1.6) and TSM's TSN wrapper."""

import numpy as np
import torch
from torch import nn

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # the upstream pipelines, 0..1 units
STD = np.array([0.229, 0.224, 0.225], np.float32)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# --- inputs and outputs ---------------------------------------------------------------------

def random_clip(b: int, t: int, size: int, seed: int = 0) -> np.ndarray:
  """Seeded uint8 clips [b, t, size, size, 3]."""
  return np.random.RandomState(seed).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def pixels(clip: np.ndarray, normalise: bool = True) -> np.ndarray:
  """uint8 [..., 3] -> float32 [..., 3]: ImageNet-normalised 0..1 units, or raw 0..255."""
  x = clip.astype(np.float32)
  return (x / 255.0 - MEAN) / STD if normalise else x


def nchw(frames: np.ndarray) -> torch.Tensor:
  """float [N, H, W, C] -> torch (N, C, H, W)."""
  return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def to_torch_input(clip: np.ndarray, normalise: bool = True) -> torch.Tensor:
  """uint8 [B, T, H, W, 3] -> (B, T*3, H, W) as the upstream TSN pipelines feed it."""
  x = pixels(clip, normalise)
  b, t, h, w, _ = x.shape
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, h, w)))


def max_abs_diff(ours, theirs) -> float:
  """max |ours - theirs| over same-shaped arrays."""
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
  return float(np.abs(ours - theirs).max())


# --- random weights and BatchNorm statistics ------------------------------------------------

def random_init(model: nn.Module, generator: torch.Generator, fan: str = "in") -> None:
  """He-normal convolutions (`fan` 'in' or 'out'), 1/sqrt(fan_in) Linears, biases ~0.1,
  BatchNorm gains in [0.5, 1.5) and biases ~0.2, in `model.modules()` order.

  A depthwise Conv1d is a learned temporal shift (TEA): random around the identity tap.
  """
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv1d) and m.groups == m.in_channels > 1:
        w = torch.randn(m.weight.shape, generator=generator) * 0.4
        w[:, 0, 1] += 0.7
        m.weight.copy_(w)
      elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        n = m.weight[0].numel() if fan == "in" else m.out_channels * int(
            np.prod(m.kernel_size))
        m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * (2.0 / n) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / m.in_features ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
      elif isinstance(m, BN_TYPES):
        m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.2)


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


def randomize(model: nn.Module, example: torch.Tensor, seed: int, fan: str = "in",
              var_range: tuple[float, float] = (0.5, 2.0)) -> nn.Module:
  """random_init, then calibrate_batchnorm on `example`, from one generator seeded `seed`."""
  g = torch.Generator().manual_seed(seed)
  random_init(model, g, fan)
  return calibrate_batchnorm(model, example, g, var_range)


def scale_logits(fc: nn.Linear, features: torch.Tensor) -> None:
  """Rescales `fc` so that its logits on `features` have std 1: 1e-4 is then a tight bound."""
  with torch.no_grad():
    fc.weight.mul_(1.0 / float((features @ fc.weight.T).std()))


# --- the torchvision-layout ResNet ----------------------------------------------------------

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


class RefResNet(nn.Module):
  """torchvision's ResNet: (N, 3, H, W) -> fc(pooled layer4 features); `fc` defaults to
  the ImageNet Linear, the TSN wrappers put a Dropout or their classifier there."""

  def __init__(self, depth, block=None, fc=None):
    super().__init__()
    self.feature_dim = add_resnet_trunk(self, depth, block=block)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(self.feature_dim, 1000) if fc is None else fc

  def forward(self, x):
    return self.fc(torch.flatten(self.avgpool(resnet_trunk(self, x)), 1))


class RefTSN(nn.Module):
  """TSM's ops/models.py TSN (GC's VideoNet is the same): (N, T*3, H, W) -> `base_model`
  per frame -> new_fc -> mean over T. `fc_in_base_model` (dropout 0 upstream): the
  classifier replaces base_model.fc and there is no new_fc."""

  def __init__(self, base_model, num_classes, num_segments, fc_in_base_model=False):
    super().__init__()
    self.base_model, self.num_segments = base_model, num_segments
    fc = nn.Linear(base_model.feature_dim, num_classes)
    if fc_in_base_model:
      self.base_model.fc, self.new_fc = fc, None
    else:
      self.new_fc = fc

  def forward(self, x):
    x = self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1]))
    if self.new_fc is not None:
      x = self.new_fc(x)
    return x.view(-1, self.num_segments, x.shape[-1]).mean(1)
