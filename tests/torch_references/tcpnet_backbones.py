"""TCPNet's other backbones (converter source 'tcpnet', converters/tcpnet_backbones.py):
the pre-activation ResNet and TEA Res2Net-50, written from reference/tcpnet.md sections
2.2, 6 and 7 with the upstream module names (state_dict keys without `base_model.`)."""

import torch
from torch import nn

from torch_references.common import nchw, pixels, randomize
from vidjax.models import resolve_model_config


class RefPreActBottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(inplanes, eps=2e-5)
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes, eps=2e-5)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes, eps=2e-5)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False))
    else:
      self.downsample = None

  def forward(self, x):
    a = torch.relu(self.bn1(x))
    shortcut = x if self.downsample is None else self.downsample(a)
    out = torch.relu(self.bn2(self.conv1(a)))
    out = torch.relu(self.bn3(self.conv2(out)))
    return self.conv3(out) + shortcut


PREACT_SIZES = {50: (3, 4, 6, 3), 152: (3, 8, 36, 3)}


class RefPreActResNet(nn.Module):

  def __init__(self, depth):
    super().__init__()
    self.bn_data = nn.BatchNorm2d(3, eps=2e-5)
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64, eps=2e-5)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for s, (n, planes, stride) in enumerate(zip(PREACT_SIZES[depth], (64, 128, 256, 512),
                                                (1, 2, 2, 1)), start=1):
      blocks = []
      for i in range(n):
        blocks.append(RefPreActBottleneck(inplanes, planes, stride if i == 0 else 1))
        inplanes = planes * 4
      setattr(self, f"layer{s}", nn.Sequential(*blocks))
    self.bn2 = nn.BatchNorm2d(2048, eps=2e-5)

  def forward(self, x):  # raw 0..255 pixels
    x = self.maxpool(torch.relu(self.bn1(self.conv1(self.bn_data(x)))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.relu(self.bn2(x))


class RefShiftModule(nn.Module):
  """Depthwise temporal conv, kernel 3, zero padding, over (N*H*W, C, T)."""

  def __init__(self, channels, n_segment):
    super().__init__()
    self.n_segment = n_segment
    self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)

  def forward(self, x):
    nt, c, h, w = x.shape
    t = self.n_segment
    x = x.view(nt // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)
    x = self.conv(x)
    return x.view(nt // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)


class RefME(nn.Module):
  def __init__(self, channels, n_segment, reduction=16):
    super().__init__()
    r = channels // reduction
    self.n_segment = n_segment
    self.conv1 = nn.Conv2d(channels, r, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(r)
    self.conv2 = nn.Conv2d(r, r, 3, padding=1, groups=r, bias=False)
    self.conv3 = nn.Conv2d(r, channels, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(channels)

  def forward(self, x):
    nt, _, h, w = x.shape
    t = self.n_segment
    b = self.bn1(self.conv1(x))
    moved = self.conv2(b)
    b5, m5 = b.view(nt // t, t, -1, h, w), moved.view(nt // t, t, -1, h, w)
    diff = torch.cat([m5[:, 1:] - b5[:, :-1], torch.zeros_like(b5[:, :1])], dim=1)
    y = diff.reshape(nt, -1, h, w).mean(dim=(2, 3), keepdim=True)
    y = torch.sigmoid(self.bn3(self.conv3(y))) - 0.5
    return x + x * y


class RefBottle2neckShift(nn.Module):
  def __init__(self, inplanes, planes, stride, stage, n_segment):
    super().__init__()
    width = planes * 26 // 64
    self.width, self.stage, self.stride = width, stage, stride
    self.conv1 = nn.Conv2d(inplanes, width * 4, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width * 4)
    self.me = RefME(width * 4, n_segment)
    self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False)
                               for _ in range(3))
    self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(3))
    self.shifts = nn.ModuleList(RefShiftModule(width, n_segment) for _ in range(4))
    self.pool = nn.AvgPool2d(3, stride, 1) if stage else None
    self.conv3 = nn.Conv2d(width * 4, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes * 4))

  def forward(self, x):
    out = self.me(torch.relu(self.bn1(self.conv1(x))))
    chunks = torch.split(out, self.width, dim=1)
    outs, sp = [], None
    for i in range(3):
      sp = chunks[i] if (i == 0 or self.stage) else sp + chunks[i]
      sp = torch.relu(self.bns[i](self.convs[i](self.shifts[i](sp))))
      outs.append(sp)
    last = self.shifts[3](chunks[3])
    if self.stage and self.width != 208:
      last = self.pool(last)
    outs.append(last)
    out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(out + identity)


class RefTEARes2Net50(nn.Module):
  def __init__(self, n_segment):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for s, (n, planes, stride) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512),
                                                (1, 2, 2, 1)), start=1):
      blocks = []
      for i in range(n):
        blocks.append(RefBottle2neckShift(inplanes, planes, stride if i == 0 else 1, i == 0,
                                          n_segment))
        inplanes = planes * 4
      setattr(self, f"layer{s}", nn.Sequential(*blocks))

  def forward(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def backbone_reference(backbone_config, num_segments):
  """The torch reference of a resolved `model.backbone` config; (N, 3, H, W) -> layer4
  features (N, 2048, H/16, W/16) (strides 1, 2, 2, 1 as TCPNet sets them)."""
  if backbone_config.name == "tea_res2net":
    return RefTEARes2Net50(num_segments)
  if backbone_config.name == "preact_resnet":
    return RefPreActResNet(backbone_config.depth)
  raise ValueError(f"no TCPNet backbone reference for {backbone_config.name!r}")


def frames(config, clip):
  """uint8 [B, T, H, W, 3] -> float32 frames [B*T, H, W, 3] as the backbone takes them:
  raw 0..255 pixels where the model has no pixel_mean (bn_data normalises), else
  ImageNet-normalised."""
  normalise = resolve_model_config(config.model).pixel_mean is not None
  return pixels(clip, normalise).reshape(-1, *clip.shape[2:])


# --- builder: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. -------

def backbone(config, clip, seed):
  """The backbone of `config.model` alone, its statistics measured on frames(clip)."""
  m = resolve_model_config(config.model)
  ref = backbone_reference(m.backbone, clip.shape[1])
  return randomize(ref, nchw(frames(config, clip)), seed)
