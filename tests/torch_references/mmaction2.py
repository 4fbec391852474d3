"""MMAction2's recognizers (converter source 'mmaction2'): ResNet3d with mmcv's NonLocal3d
(I3D, SlowOnly), C2D, the 2D ResNet with TSNHead (C2D-nopool), I3DHead; written from
reference/mmaction2_cost.md sections 0-3, 9 and 17 with the upstream state_dict names
(`backbone.conv1.conv.weight`, `backbone.layer2.1.non_local_block.g.0.conv.weight`,
`cls_head.fc_cls.weight`, ...)."""

import math

import torch
from torch import nn

from torch_references.common import (calibrate_batchnorm, random_init, scale_logits,
                                     to_torch_input)
from vidjax.models import resolve_model_config

SPECS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
         50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
         152: ("bottleneck", (3, 8, 36, 3))}


class TrunkBN3d(nn.BatchNorm3d):
  """The trunk's BN3d (calibrated); the non-local blocks' BNs are plain BatchNorm3d."""


class TrunkBN2d(nn.BatchNorm2d):
  """The 2D trunk's BN."""


class ConvModule(nn.Module):
  """mmcv ConvModule: `conv` (no bias) -> `bn` -> optional ReLU; without a norm the conv
  has a bias (unless `bias=False`) and there is no `bn`."""

  def __init__(self, cin, cout, kernel, stride=1, padding=0, act=True, norm=True, dims=3,
               eps=1e-5, groups=1, bias=None):
    super().__init__()
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    self.conv = conv(cin, cout, kernel, stride, padding, groups=groups,
                     bias=(not norm) if bias is None else bias)
    if norm:
      self.bn = (TrunkBN3d if dims == 3 else TrunkBN2d)(cout, eps=eps)
    self.norm, self.act = norm, act

  def forward(self, x):
    x = self.conv(x)
    if self.norm:
      x = self.bn(x)
    return torch.relu(x) if self.act else x


class NonLocal3d(nn.Module):
  """mmcv NonLocal3d (section 1a): g / theta / phi 1x1x1 convs with bias (gaussian: no
  theta / phi convs), max-pool (1, 2, 2) on g and phi with sub_sample, conv_out + BN3d."""

  def __init__(self, c, mode, use_scale, sub_sample=True, reduction=2):
    super().__init__()
    ci = c // reduction
    self.ci, self.mode, self.use_scale = ci, mode, use_scale

    def pointwise():
      conv = ConvModule(c, ci, 1, act=False, norm=False)
      return nn.Sequential(conv, nn.MaxPool3d((1, 2, 2))) if sub_sample else conv

    self.g = pointwise()
    if mode != "gaussian":
      self.theta = ConvModule(c, ci, 1, act=False, norm=False)
      self.phi = pointwise()
    else:
      self.phi = nn.MaxPool3d((1, 2, 2)) if sub_sample else nn.Identity()
    self.conv_out = ConvModule(ci, c, 1, act=False)
    self.conv_out.bn = nn.BatchNorm3d(c)   # not the trunk's kind: see randomize

  def forward(self, x):  # (n, C, T, H, W)
    n = x.shape[0]
    g_x = self.g(x).reshape(n, self.ci, -1).permute(0, 2, 1)
    if self.mode == "gaussian":
      theta_x = x.reshape(n, x.shape[1], -1).permute(0, 2, 1)
      phi_x = self.phi(x).reshape(n, x.shape[1], -1)
    else:
      theta_x = self.theta(x).reshape(n, self.ci, -1).permute(0, 2, 1)
      phi_x = self.phi(x).reshape(n, self.ci, -1)
    f = theta_x @ phi_x
    if self.mode == "dot_product":
      f = f / f.shape[-1]
    else:
      if self.use_scale and self.mode == "embedded_gaussian":
        f = f / theta_x.shape[-1] ** 0.5
      f = f.softmax(dim=-1)
    y = (f @ g_x).permute(0, 2, 1).reshape(n, self.ci, *x.shape[2:])
    return x + self.conv_out(y)


class Bottleneck(nn.Module):
  """Bottleneck3d ('pytorch' style) or mmaction's 2D Bottleneck (dims 2)."""
  expansion = 4

  def __init__(self, inplanes, planes, s, t, inflate, style, nl, dims, downsample):
    super().__init__()
    if dims == 2:
      k1, p1, k2, p2 = 1, 0, 3, 1
      stride = s
    else:
      if not inflate:
        k1, p1, k2, p2 = (1, 1, 1), 0, (1, 3, 3), (0, 1, 1)
      elif style == "3x1x1":
        k1, p1, k2, p2 = (3, 1, 1), (1, 0, 0), (1, 3, 3), (0, 1, 1)
      else:
        k1, p1, k2, p2 = (1, 1, 1), 0, (3, 3, 3), (1, 1, 1)
      stride = (t, s, s)
    self.conv1 = ConvModule(inplanes, planes, k1, 1, p1, dims=dims)
    self.conv2 = ConvModule(planes, planes, k2, stride, p2, dims=dims)
    self.conv3 = ConvModule(planes, planes * 4, 1, act=False, dims=dims)
    self.downsample = downsample
    if nl is not None:
      self.non_local_block = NonLocal3d(planes * 4, **nl)
    self.nl = nl is not None

  def last_bn(self):
    return self.conv3.bn

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = torch.relu(self.conv3(self.conv2(self.conv1(x))) + identity)
    return self.non_local_block(out) if self.nl else out


class BasicBlock(nn.Module):
  """BasicBlock3d: conv1 (strides) and conv2 (3, 3, 3) when inflated, else (1, 3, 3);
  mmaction's 2D BasicBlock (dims 2): both 3x3."""
  expansion = 1

  def __init__(self, inplanes, planes, s, t, inflate, style, nl, dims, downsample):
    super().__init__()
    del style
    if dims == 2:
      k, p, stride = 3, 1, s
    else:
      k, p = ((3, 3, 3), (1, 1, 1)) if inflate else ((1, 3, 3), (0, 1, 1))
      stride = (t, s, s)
    self.conv1 = ConvModule(inplanes, planes, k, stride, p, dims=dims)
    self.conv2 = ConvModule(planes, planes, k, 1, p, act=False, dims=dims)
    self.downsample = downsample
    if nl is not None:
      self.non_local_block = NonLocal3d(planes, **nl)
    self.nl = nl is not None

  def last_bn(self):
    return self.conv2.bn

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = torch.relu(self.conv2(self.conv1(x)) + identity)
    return self.non_local_block(out) if self.nl else out


def _pattern(value, n):
  return (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)


def _stem3d(b):
  """ResNet3d's conv1 ('same' padding, spatial stride 2) and its padded (1, 3, 3) pool."""
  k = tuple(b.conv1_kernel)
  return (ConvModule(3, b.base_channels, k, (b.conv1_stride_t, 2, 2),
                     tuple((i - 1) // 2 for i in k), eps=b.bn_eps),
          nn.MaxPool3d((1, 3, 3), (b.pool1_stride_t, 2, 2), (0, 1, 1)))


def _make_layer(b, block, i, n, inplanes, dims=3):
  """Stage i + 1 of a ResNet3d-style trunk: n blocks, the first from `inplanes` channels
  with the stage's strides (and the downsample). Returns (the stage, its out channels)."""
  nl_cfg = dict(mode=b.non_local_cfg.mode, use_scale=b.non_local_cfg.use_scale,
                sub_sample=b.non_local_cfg.sub_sample, reduction=b.non_local_cfg.reduction)
  planes = b.base_channels * 2 ** i
  s, t = b.strides[i], b.temporal_strides[i]
  inflate, non_local = _pattern(b.inflate[i], n), _pattern(b.non_local[i], n)
  out = planes * block.expansion
  downsample = None
  if s != 1 or t != 1 or inplanes != out:
    downsample = ConvModule(inplanes, out, 1, s if dims == 2 else (t, s, s), act=False,
                            dims=dims, eps=b.bn_eps)
  blocks = [block(inplanes if j == 0 else out, planes, s if j == 0 else 1,
                  t if j == 0 else 1, inflate[j], b.inflate_style,
                  nl_cfg if non_local[j] else None, dims, downsample if j == 0 else None)
            for j in range(n)]
  return nn.Sequential(*blocks), out


class ResNet3d(nn.Module):
  """MMAction2's ResNet3d (section 1); `c2d=True`: the 1.x C2D (section 9): 2D convs per
  frame, unpadded (1, 3, 3) max-pool, pool2 after layer1."""

  def __init__(self, b, c2d=False):
    super().__init__()
    kind, sizes = SPECS[b.depth]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    dims = 2 if c2d else 3
    self.c2d, self.with_pool1, self.with_pool2 = c2d, b.with_pool1, b.with_pool2
    if c2d:
      self.conv1 = ConvModule(3, 64, 7, 2, 3, dims=2)
      self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), 0)
    else:
      self.conv1, self.maxpool = _stem3d(b)
    self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))
    inplanes = b.base_channels
    for i, n in enumerate(sizes):
      layer, inplanes = _make_layer(b, block, i, n, inplanes, dims)
      setattr(self, f"layer{i + 1}", layer)
    for m in self.modules():
      if isinstance(m, (TrunkBN3d, TrunkBN2d)):
        m.eps = b.bn_eps

  def _frames(self, f, x):  # (N, C, T, H, W) -> f per frame
    n, _, t = x.shape[:3]
    y = f(x.transpose(1, 2).reshape(n * t, *x.shape[1:2], *x.shape[3:]))
    return y.reshape(n, t, *y.shape[1:]).transpose(1, 2)

  def _layer(self, name, x):
    layer = getattr(self, name)
    return self._frames(layer, x) if self.c2d else layer(x)

  def forward(self, x):  # (N, 3, T, H, W)
    x = self._frames(self.conv1, x) if self.c2d else self.conv1(x)
    if self.with_pool1 or self.c2d:
      x = self.maxpool(x)
    x = self._layer("layer1", x)
    if self.with_pool2 or self.c2d:
      x = self.pool2(x)
    for name in ("layer2", "layer3", "layer4"):
      x = self._layer(name, x)
    return x


class I3DHead(nn.Module):

  def __init__(self, cin, k):
    super().__init__()
    self.fc_cls = nn.Linear(cin, k)

  def forward(self, x):
    return self.fc_cls(x.mean(dim=(2, 3, 4)))


class Recognizer(nn.Module):
  """The children `backbone` and `cls_head` (the state_dict's prefixes) on (B, T*3, H, W),
  the common test layout; a subclass lays out the frames (B, T, 3, H, W) in `classify`."""

  def __init__(self, backbone, cls_head):
    super().__init__()
    self.backbone, self.cls_head = backbone, cls_head

  def forward(self, x):
    b, t3, h, w = x.shape
    return self.classify(x.reshape(b, t3 // 3, 3, h, w))


class Recognizer3D(Recognizer):
  """(B, T, 3, H, W) -> (B, 3, T, H, W) -> backbone -> cls_head."""

  def classify(self, x):
    return self.cls_head(self.backbone(x.transpose(1, 2)))


class ResNet2d(nn.Module):
  """mmaction's 2D ResNet (section 9) with ConvModules: conv1 7x7/2, max-pool 3x3/2 pad 1."""

  def __init__(self, depth):
    super().__init__()
    kind, sizes = SPECS[depth]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    self.conv1 = ConvModule(3, 64, 7, 2, 3, dims=2)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, n in enumerate(sizes):
      planes, s = 64 * 2 ** i, (1, 2, 2, 2)[i]
      out = planes * block.expansion
      down = ConvModule(inplanes, out, 1, s, act=False, dims=2) if (
          s != 1 or inplanes != out) else None
      blocks = []
      for j in range(n):
        blocks.append(block(inplanes, planes, s if j == 0 else 1, 1, 0, "", None, 2,
                            down if j == 0 else None))
        inplanes = out
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

  def forward(self, x):
    x = self.maxpool(self.conv1(x))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TSNHead(nn.Module):
  """Average pool (H, W), mean over the frames (consensus), fc_cls."""

  def __init__(self, cin, k):
    super().__init__()
    self.fc_cls = nn.Linear(cin, k)

  def forward(self, x, t):
    x = x.mean(dim=(2, 3))
    return self.fc_cls(x.reshape(-1, t, x.shape[-1]).mean(1))


class Recognizer2D(Recognizer):
  """(B, T, 3, H, W) -> (B*T, 3, H, W) -> backbone -> cls_head with T segments."""

  def classify(self, x):
    return self.cls_head(self.backbone(x.flatten(0, 1)), x.shape[1])


def randomize(model, example, seed):
  """Random weights, then measured-and-perturbed BN statistics of the trunk.

  The last BN of every residual branch gets gains 0.2..0.5 so the residual stream grows
  slowly; the non-local blocks get O(1) softmax arguments (theta / phi scaled down) and
  fixed non-trivial output-BN statistics, as tsm.randomize argues.
  """
  g = torch.Generator().manual_seed(seed)
  random_init(model, g, fan="out")
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (Bottleneck, BasicBlock)):
        bn = m.last_bn()
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.3 + 0.2)
      if isinstance(m, NonLocal3d):
        if m.mode != "gaussian":
          m.theta.conv.weight.mul_(0.3)
          phi = m.phi[0] if isinstance(m.phi, nn.Sequential) else m.phi
          phi.conv.weight.mul_(0.3)
        bn = m.conv_out.bn
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.3 + 0.2)
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) * 1.5 + 0.5)
  model = calibrate_batchnorm(model, example, g, (0.5, 2.0), types=(TrunkBN3d, TrunkBN2d))
  return _settle_dot_product(model, example, g)


def _settle_dot_product(model, example, g):
  """Dot-product blocks are cubic in their input: with fixed output-BN statistics the
  eval-mode drift from the calibration pass grows by orders of magnitude block after
  block (logits of 1e20). Each one's output BN instead gets the statistics of its conv_out
  measured in eval mode (then perturbed as calibrate_batchnorm does), in forward order."""
  blocks = [m for m in model.modules() if isinstance(m, NonLocal3d) and m.mode == "dot_product"]
  for m in blocks:
    seen = []
    handle = m.conv_out.conv.register_forward_hook(lambda mod, i, o: seen.append(o))
    with torch.no_grad():
      model(example)
      handle.remove()
      y = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1)
      mean, var = y.mean(1), y.var(1)
      bn = m.conv_out.bn
      bn.running_mean.copy_(mean + torch.randn(mean.shape, generator=g) * 0.2 * var.sqrt())
      bn.running_var.copy_(var * (torch.rand(var.shape, generator=g) * 1.5 + 0.5))
  return model


# --- builder: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. --------

def recognizer(config, clip, seed):
  """The MMAction2 recognizer of `config.model`: Recognizer3D with ResNet3d / C2D and
  I3DHead, or Recognizer2D with the 2D ResNet and TSNHead (C2D-nopool)."""
  m = resolve_model_config(config.model)
  b = m.backbone
  width = 512 * (4 if SPECS[b.depth][0] == "bottleneck" else 1)
  if m.name == "recognizer2d":
    ref = Recognizer2D(ResNet2d(b.depth), TSNHead(width, m.num_classes))
  else:
    backbone = ResNet3d(b, c2d=b.name == "c2d")
    ref = Recognizer3D(backbone, I3DHead(width * b.base_channels // 64, m.num_classes))
  return randomize(ref, to_torch_input(clip), seed)


# --- CSN and R(2+1)D (reference/mmaction2_cost.md sections 5, 6): ResNet3d with its convs
# replaced, as the upstream subclasses build them. ----------------------------------------

def _depthwise(planes, kernel, stride, padding, eps, act=True):
  """A ConvModule whose conv is depthwise (groups = planes)."""
  module = ConvModule(planes, planes, kernel, stride, padding, act=act, eps=eps)
  module.conv = nn.Conv3d(planes, planes, kernel, stride, padding, groups=planes, bias=False)
  return module


def csn_backbone(b):
  """ResNet3dCSN: ResNet3d (3x3x3 inflation) whose every conv2 becomes `nn.Sequential`:
  ir [depthwise ConvModule]; ip [1x1x1 ConvModule without ReLU, depthwise ConvModule]."""
  backbone = ResNet3d(b)
  for m in backbone.modules():
    if isinstance(m, Bottleneck):
      conv = m.conv2.conv
      planes = conv.in_channels
      seq = [_depthwise(planes, conv.kernel_size, conv.stride, conv.padding, b.bn_eps)]
      if b.bottleneck_mode == "ip":
        seq.insert(0, ConvModule(planes, planes, 1, act=False, eps=b.bn_eps))
      m.conv2 = nn.Sequential(*seq)
  return backbone


class MidBN3d(TrunkBN3d):
  """Conv2plus1d's bn_s (calibrated like the trunk's; its own eps)."""


def r2plus1d_mid_channels(cin, cout, kernel):
  """Conv2plus1d's inner width, as the spec writes it (float division, then int)."""
  _, kh, kw = kernel
  return int(3 * cin * cout * kh * kw / (cin * kh * kw + 3 * cout))


class Conv2plus1d(nn.Module):
  """conv_s (1, kH, kW) -> bn_s -> ReLU -> conv_t (kT, 1, 1), no biases."""

  def __init__(self, cin, cout, kernel, stride, padding, mid_eps):
    super().__init__()
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = kernel, stride, padding
    mid = r2plus1d_mid_channels(cin, cout, kernel)
    self.conv_s = nn.Conv3d(cin, mid, (1, kh, kw), (1, sh, sw), (0, ph, pw), bias=False)
    self.bn_s = MidBN3d(mid, eps=mid_eps)
    self.conv_t = nn.Conv3d(mid, cout, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), bias=False)

  def forward(self, x):
    return self.conv_t(torch.relu(self.bn_s(self.conv_s(x))))


def r2plus1d_backbone(b):
  """ResNet2Plus1d: ResNet3d whose every ConvModule's conv is a Conv2plus1d."""
  backbone = ResNet3d(b)
  for m in list(backbone.modules()):
    if isinstance(m, ConvModule):
      c = m.conv
      m.conv = Conv2plus1d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                           b.mid_bn_eps)
  return backbone


def csn_recognizer(config, clip, seed):
  """Recognizer3D of ResNet3dCSN and I3DHead."""
  b = resolve_model_config(config.model).backbone
  head = I3DHead(2048 * b.base_channels // 64, config.model.num_classes)
  return randomize(Recognizer3D(csn_backbone(b), head), to_torch_input(clip), seed)


def r2plus1d_recognizer(config, clip, seed):
  """Recognizer3D of ResNet2Plus1d and I3DHead."""
  b = resolve_model_config(config.model).backbone
  width = 512 * (4 if SPECS[b.depth][0] == "bottleneck" else 1) * b.base_channels // 64
  ref = Recognizer3D(r2plus1d_backbone(b), I3DHead(width, config.model.num_classes))
  return randomize(ref, to_torch_input(clip), seed)


# --- SlowFast (section 4): ResNet3dSlowFast + SlowFastHead ---------------------------------

class LateralConv(nn.Module):
  """A lateral connection: ConvModule with a bias-free Conv3d (fk, 1, 1), stride
  (alpha, 1, 1); with lateral_norm also BN3d and ReLU."""

  def __init__(self, cin, cout, fusion_kernel, speed_ratio, norm, eps):
    super().__init__()
    self.conv = nn.Conv3d(cin, cout, (fusion_kernel, 1, 1), (speed_ratio, 1, 1),
                          ((fusion_kernel - 1) // 2, 0, 0), bias=False)
    if norm:
      self.bn = TrunkBN3d(cout, eps=eps)
    self.norm = norm

  def forward(self, x):
    x = self.conv(x)
    return torch.relu(self.bn(x)) if self.norm else x


class ResNet3dPathway(nn.Module):
  """ResNet3d (section 1) whose stages take `lateral_inplanes[i]` extra input channels;
  with `lateral`, the convs conv1_lateral and layer{1,2,3}_lateral from the other pathway."""

  def __init__(self, p, lateral=False, speed_ratio=8, channel_ratio=8):
    super().__init__()
    kind, sizes = SPECS[p.depth]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    self.conv1, self.maxpool = _stem3d(p)
    # The widths the lateral convs see and add: upstream's calculate_lateral_inplanes.
    widths = [p.base_channels] + [p.base_channels * 2 ** i * block.expansion
                                  for i in range(3)]
    infl = p.lateral_infl if lateral else 0
    self.lateral_inplanes = [w * infl // channel_ratio for w in widths]
    if lateral:
      def make(cin, cout):
        return LateralConv(cin, cout, p.fusion_kernel, speed_ratio, p.lateral_norm, p.bn_eps)
      self.conv1_lateral = make(widths[0] // channel_ratio, self.lateral_inplanes[0])
      for i in range(1, 4):
        setattr(self, f"layer{i}_lateral",
                make(widths[i] // channel_ratio, self.lateral_inplanes[i]))
    self.lateral = lateral
    inplanes = p.base_channels
    for i, n in enumerate(sizes):
      layer, inplanes = _make_layer(p, block, i, n, inplanes + self.lateral_inplanes[i])
      setattr(self, f"layer{i + 1}", layer)
    for m in self.modules():
      if isinstance(m, TrunkBN3d):
        m.eps = p.bn_eps


class SlowFast(nn.Module):
  """(N, 3, T, H, W) -> (slow, fast): nearest temporal resizes by 1 / tau and
  1 / (tau // alpha), the stems, a lateral after the stems and after layers 1-3
  concatenated onto the slow features."""

  def __init__(self, b):
    super().__init__()
    self.tau, self.alpha = b.resample_rate, b.speed_ratio
    self.slow_path = ResNet3dPathway(b.slow_pathway, b.slow_pathway.lateral, b.speed_ratio,
                                     b.channel_ratio)
    self.fast_path = ResNet3dPathway(b.fast_pathway)

  def forward(self, x):
    slow = nn.functional.interpolate(x, mode="nearest", scale_factor=(1.0 / self.tau, 1, 1))
    fast = nn.functional.interpolate(
        x, mode="nearest", scale_factor=(1.0 / (self.tau // self.alpha), 1, 1))
    slow = self.slow_path.maxpool(self.slow_path.conv1(slow))
    fast = self.fast_path.maxpool(self.fast_path.conv1(fast))
    lateral = self.slow_path.lateral
    if lateral:
      slow = torch.cat([slow, self.slow_path.conv1_lateral(fast)], dim=1)
    for i in range(1, 5):
      slow = getattr(self.slow_path, f"layer{i}")(slow)
      fast = getattr(self.fast_path, f"layer{i}")(fast)
      if lateral and i < 4:
        slow = torch.cat([slow, getattr(self.slow_path, f"layer{i}_lateral")(fast)], dim=1)
    return slow, fast


class SlowFastHead(nn.Module):
  """Average each pathway over (T, H, W), concatenate fast then slow, fc_cls."""

  def __init__(self, cin, k):
    super().__init__()
    self.fc_cls = nn.Linear(cin, k)

  def forward(self, x):
    slow, fast = x
    return self.fc_cls(torch.cat([fast.mean(dim=(2, 3, 4)), slow.mean(dim=(2, 3, 4))], 1))


def slowfast(config, clip, seed):
  """MMAction2's Recognizer3D with ResNet3dSlowFast and SlowFastHead for `config.model`."""
  m = resolve_model_config(config.model)
  b = m.backbone
  widths = [p.base_channels * 8 * (4 if SPECS[p.depth][0] == "bottleneck" else 1)
            for p in (b.slow_pathway, b.fast_pathway)]
  ref = Recognizer3D(SlowFast(b), SlowFastHead(sum(widths), m.num_classes))
  return randomize(ref, to_torch_input(clip), seed)


# --- C3D and X3D (reference/mmaction2_cost.md 7, 8, 17): upstream names (`backbone.conv1a.
# conv.weight`, `backbone.fc6.weight`, `backbone.layer1.0.se_module.fc1.weight`,
# `cls_head.fc1.weight`). Both normalise their own pixels, as MMAction2 1.x's data
# preprocessor does, with their own mean and std. ------------------------------------------

class PixelRecognizer3D(Recognizer3D):
  """Recognizer3D fed raw 0..255 pixels (B, T*3, H, W), normalised by `mean` / `std`
  (non-persistent buffers, as 1.x's data preprocessor keeps them)."""
  takes_raw_pixels = True   # tests/test_parity.py feeds it unnormalised clips

  def __init__(self, backbone, cls_head, mean, std):
    super().__init__(backbone, cls_head)
    self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
    self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)

  def classify(self, x):  # (B, T, 3, H, W); the buffers broadcast over (B, 3, T, H, W)
    x = x.transpose(1, 2)
    return self.cls_head(self.backbone((x - self.mean) / self.std))


class C3D(nn.Module):
  """Section 7: 3x3x3 ConvModules with bias and ReLU, no BN; pool5 padded (0, 1, 1);
  flatten (C, T, H, W) -> fc6 -> ReLU -> (dropout) -> fc7 -> ReLU."""

  def __init__(self, base, hidden, fc6_in):
    super().__init__()
    widths = dict(conv1a=base, conv2a=2 * base, conv3a=4 * base, conv3b=4 * base,
                  conv4a=8 * base, conv4b=8 * base, conv5a=8 * base, conv5b=8 * base)
    cin = 3
    for name, cout in widths.items():
      setattr(self, name, ConvModule(cin, cout, 3, 1, 1, norm=False))
      cin = cout
    self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
    self.pool = nn.MaxPool3d(2, 2)
    self.pool5 = nn.MaxPool3d(2, 2, (0, 1, 1))
    self.fc6 = nn.Linear(fc6_in, hidden)
    self.fc7 = nn.Linear(hidden, hidden)

  def forward(self, x):
    x = self.pool1(self.conv1a(x))
    x = self.pool(self.conv2a(x))
    x = self.pool(self.conv3b(self.conv3a(x)))
    x = self.pool(self.conv4b(self.conv4a(x)))
    x = self.pool5(self.conv5b(self.conv5a(x)))
    return torch.relu(self.fc7(torch.relu(self.fc6(x.flatten(1)))))


class VectorHead(nn.Module):
  """I3DHead with spatial_type None: fc_cls on the backbone's vector."""

  def __init__(self, cin, k):
    super().__init__()
    self.fc_cls = nn.Linear(cin, k)

  def forward(self, x):
    return self.fc_cls(x)


def c3d_fc6_in(base, t, h, w):
  """pool5's (C * T * H * W) for clips (t, h, w): pool1 halves H, W; pool2..4 halve all
  three; pool5 halves T and takes H, W padded by 1."""
  for _ in range(4):
    h, w = h // 2, w // 2
  return 8 * base * (t // 16) * (h // 2 + 1) * (w // 2 + 1)


def c3d(config, clip, seed):
  """Recognizer3D of C3D and the pooling-free I3DHead, with C3D's own mean and std."""
  m = resolve_model_config(config.model)
  b = m.backbone
  fc6_in = c3d_fc6_in(b.base_channels, *clip.shape[1:4])
  ref = PixelRecognizer3D(C3D(b.base_channels, b.hidden_dim, fc6_in),
                          VectorHead(b.hidden_dim, m.num_classes), m.pixel_mean, m.pixel_std)
  g = torch.Generator().manual_seed(seed)
  random_init(ref, g)
  # Pixels in 0..255 units minus the mean (std 1) make every activation ~100x larger
  # than with BN: the classifier is rescaled to logits of std 1, where 1e-4 is tight.
  with torch.no_grad():
    x = torch.from_numpy(clip.astype("float32").transpose(0, 4, 1, 2, 3).copy())
    features = ref.backbone((x - ref.mean) / ref.std)
  scale_logits(ref.cls_head.fc_cls, features)
  return ref.eval()


def x3d_round_width(width, multiplier=1.0, min_width=8, divisor=8):
  """Section 8's round_width."""
  width *= multiplier
  out = max(min_width, int(width + divisor / 2) // divisor * divisor)
  return int(out + divisor if out < 0.9 * width else out)


class SEModule(nn.Module):

  def __init__(self, c, ratio):
    super().__init__()
    b = x3d_round_width(c, ratio)
    self.fc1 = nn.Conv3d(c, b, 1)
    self.fc2 = nn.Conv3d(b, c, 1)

  def forward(self, x):
    s = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3, 4), keepdim=True))))
    return x * torch.sigmoid(s)


class BlockX3D(nn.Module):
  """conv1 -> depthwise conv2 (no ReLU) -> [SE] -> Swish -> conv3 (no ReLU) + shortcut."""

  def __init__(self, cin, mid, cout, s, se_ratio, eps):
    super().__init__()
    self.conv1 = ConvModule(cin, mid, 1, eps=eps)
    self.conv2 = _depthwise(mid, 3, (1, s, s), 1, eps, act=False)
    self.se_module = SEModule(mid, se_ratio) if se_ratio else None
    self.conv3 = ConvModule(mid, cout, 1, act=False, eps=eps)
    self.downsample = (ConvModule(cin, cout, 1, (1, s, s), act=False, eps=eps)
                       if s != 1 or cin != cout else None)

  def forward(self, x):
    y = self.conv2(self.conv1(x))
    if self.se_module is not None:
      y = self.se_module(y)
    y = self.conv3(y * torch.sigmoid(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class StemConv(nn.Module):
  """conv1_s: a ConvModule without norm and activation whose conv has no bias."""

  def __init__(self, cout):
    super().__init__()
    self.conv = nn.Conv3d(3, cout, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)

  def forward(self, x):
    return self.conv(x)


class X3D(nn.Module):
  """Section 8 with the config's gamma_w / gamma_b / gamma_d (S and M: 1, 2.25, 2.2)."""

  def __init__(self, b):
    super().__init__()
    base = x3d_round_width(b.base_channels, b.gamma_w)
    self.conv1_s = StemConv(base)
    self.conv1_t = _depthwise(base, (5, 1, 1), 1, (2, 0, 0), b.bn_eps)
    cin = base
    for i, repeats in enumerate((1, 2, 5, 3)):
      width, blocks = base * 2 ** i, []
      for j in range(math.ceil(b.gamma_d * repeats)):
        se = b.se_ratio if (b.se_style == "all" or j % 2 == 0) else None
        blocks.append(BlockX3D(cin, int(width * b.gamma_b), width,
                               b.spatial_strides[i] if j == 0 else 1, se, b.bn_eps))
        cin = width
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.conv5 = ConvModule(cin, int(cin * b.gamma_b), 1, eps=b.bn_eps)
    self.out_channels = int(cin * b.gamma_b)

  def forward(self, x):
    x = self.conv1_t(self.conv1_s(x))
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
    return self.conv5(x)


class X3DHead(nn.Module):
  """mean over T, H, W -> fc1 (no bias) -> ReLU -> (dropout) -> fc2."""

  def __init__(self, cin, hidden, k):
    super().__init__()
    self.fc1 = nn.Linear(cin, hidden, bias=False)
    self.fc2 = nn.Linear(hidden, k)

  def forward(self, x):
    return self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3, 4)))))


def x3d(config, clip, seed):
  """Recognizer3D of X3D and X3DHead; each block's conv3 BN gain in 0.2..0.5 so the
  residual stream of 26 blocks grows slowly, BN statistics measured on the clip and
  perturbed."""
  m = resolve_model_config(config.model)
  backbone = X3D(m.backbone)
  head = X3DHead(backbone.out_channels, m.head.hidden_dim, m.num_classes)
  ref = PixelRecognizer3D(backbone, head, m.pixel_mean, m.pixel_std)
  g = torch.Generator().manual_seed(seed)
  random_init(ref, g, fan="out")
  with torch.no_grad():
    for block in ref.modules():
      if isinstance(block, BlockX3D):
        bn = block.conv3.bn
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.3 + 0.2)
  x = torch.from_numpy(clip.astype("float32").transpose(0, 1, 4, 2, 3).reshape(
      clip.shape[0], -1, *clip.shape[2:4]).copy())
  return calibrate_batchnorm(ref, x, g, (0.5, 2.0), types=(TrunkBN3d,))


# --- TIN and TANet (reference/mmaction2_cost.md 12, 13): the 2D ResNet's blocks wrapped as
# upstream wraps them: TIN's `conv1.conv` becomes a pair `net1` (the interlace) and `net2`
# (the conv); TANet's blocks become `block` (the Bottleneck) plus `tam`, run between conv1
# and conv2. Head as C2D-nopool's (fc of the frame mean = mean of the frames' fc).

def tin_shift(data, shift):
  """data (N, T, C, HW), integer shift (N, G): channel group g of sample n moves by
  shift[n, g] frames, out[t] = in[t - s], zero outside the clip."""
  n, t, c, hw = data.shape
  groups = shift.shape[1]
  src = torch.arange(t)[None, None, :] - shift.long()[:, :, None]      # (N, G, T)
  valid = ((src >= 0) & (src < t)).to(data.dtype)
  grouped = data.view(n, t, groups, c // groups, hw)
  picked = grouped[torch.arange(n)[:, None, None], src.clamp(0, t - 1),
                   torch.arange(groups)[None, :, None]]                 # (N, G, T, C/G, HW)
  picked = picked * valid[..., None, None]
  return picked.permute(0, 2, 1, 3, 4).reshape(n, t, c, hw)


class OffsetNet(nn.Module):

  def __init__(self, cin, t):
    super().__init__()
    self.conv = nn.Conv1d(cin, 1, 3, padding=1)
    self.fc1 = nn.Linear(t, t)
    self.fc2 = nn.Linear(t, 2)

  def forward(self, x):  # (N, F, T) -> (N, 2)
    x = self.conv(x).view(x.shape[0], x.shape[2])
    return 4 * (torch.sigmoid(self.fc2(torch.relu(self.fc1(x)))) - 0.5)


class WeightNet(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.conv = nn.Conv1d(cin, 2, 3, padding=1)

  def forward(self, x):  # (N, F, T) -> (N, T, 2)
    return 2 * torch.sigmoid(self.conv(x).permute(0, 2, 1))


class TemporalInterlace(nn.Module):

  def __init__(self, cin, t, shift_div=4):
    super().__init__()
    self.t, self.folds = t, cin // shift_div
    self.offset_net = OffsetNet(self.folds, t)
    self.weight_net = WeightNet(self.folds)

  def forward(self, x):
    nt, c, h, w = x.shape
    n, f = nt // self.t, self.folds
    desc = x[:, :f].reshape(n, self.t, f, h, w)
    pooled = desc.mean(dim=(3, 4)).permute(0, 2, 1)              # (N, F, T)
    offset = self.offset_net(pooled)
    offset = torch.cat([offset, -offset], 1)                       # (N, 4)
    weight = self.weight_net(pooled)                               # (N, T, 2)
    base = torch.floor(offset)
    data = desc.reshape(n, self.t, f, h * w)
    w0 = (1 - (offset - base)).repeat_interleave(f // 4, 1)[:, None, :, None]
    shifted = w0 * tin_shift(data, base) + (1 - w0) * tin_shift(data, base + 1)
    per_channel = weight.repeat(1, 1, 2).repeat_interleave(f // 4, 2)   # [w0, w1, w0, w1]
    shifted = shifted * per_channel[..., None]
    return torch.cat([shifted.reshape(nt, f, h, w), x[:, f:]], 1)


class CombineNet(nn.Module):

  def __init__(self, net1, net2):
    super().__init__()
    self.net1, self.net2 = net1, net2

  def forward(self, x):
    return self.net2(self.net1(x))


class TamBN1d(nn.BatchNorm1d):
  """TAM's BatchNorm1d (its statistics are set by randomize_tam)."""


class TAM(nn.Module):

  def __init__(self, c, t, alpha=2, beta=4, k=3):
    super().__init__()
    self.t = t
    self.G = nn.Sequential(nn.Linear(t, t * alpha, bias=False), TamBN1d(t * alpha), nn.ReLU(),
                           nn.Linear(t * alpha, k, bias=False), nn.Softmax(-1))
    self.L = nn.Sequential(nn.Conv1d(c, c // beta, 3, padding=1, bias=False),
                           TamBN1d(c // beta), nn.ReLU(),
                           nn.Conv1d(c // beta, c, 1, bias=False), nn.Sigmoid())

  def forward(self, x):
    nt, c, h, w = x.shape
    n, t = nt // self.t, self.t
    x = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)               # (N, C, T, H, W)
    theta = x.mean(dim=(3, 4))                                     # (N, C, T)
    kernel = self.G(theta.reshape(-1, t)).view(n * c, 1, -1, 1)
    local = self.L(theta).view(n, c, t, 1, 1)
    y = nn.functional.conv2d((x * local).reshape(1, n * c, t, h * w), kernel,
                             padding=(kernel.shape[2] // 2, 0), groups=n * c)
    return y.view(n, c, t, h, w).permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


class TABlock(nn.Module):

  def __init__(self, block, t):
    super().__init__()
    self.block = block
    self.tam = TAM(block.conv1.conv.out_channels, t)

  def forward(self, x):
    b = self.block
    out = self.tam(b.conv1(x))
    out = b.conv3(b.conv2(out)) if hasattr(b, "conv3") else b.conv2(out)
    identity = x if b.downsample is None else b.downsample(x)
    return torch.relu(out + identity)


def _blocks(backbone):
  for s in range(1, 5):
    layer = getattr(backbone, f"layer{s}")
    yield layer, list(layer.children())


def tin_recognizer(m):
  """MMAction2's TIN for resolved model config `m` (weights untouched): ResNetTIN (every
  block's conv1 wrapped; every other block in a stage of >= 23) + TSMHead."""
  backbone = ResNet2d(m.backbone.depth)
  for _, blocks in _blocks(backbone):
    for i, blk in enumerate(blocks):
      if i % (2 if SPECS[m.backbone.depth][1][2] >= 23 else 1) == 0:
        interlace = TemporalInterlace(blk.conv1.conv.in_channels, m.tin.num_segments,
                                      m.tin.shift_div)
        blk.conv1.conv = CombineNet(interlace, blk.conv1.conv)
  width = 512 * (4 if SPECS[m.backbone.depth][0] == "bottleneck" else 1)
  return Recognizer2D(backbone, TSNHead(width, m.num_classes))


def tanet_recognizer(m):
  """MMAction2's TANet for resolved model config `m` (weights untouched): every block a
  TABlock (`block` + `tam`) + TSMHead."""
  backbone = ResNet2d(m.backbone.depth)
  for layer, blocks in _blocks(backbone):
    for i, blk in enumerate(blocks):
      layer[i] = TABlock(blk, m.tam.num_segments)
  width = 512 * (4 if SPECS[m.backbone.depth][0] == "bottleneck" else 1)
  return Recognizer2D(backbone, TSNHead(width, m.num_classes))


def tin(config, clip, seed):
  """TIN with random weights and calibrated trunk BatchNorms, in eval mode."""
  ref = tin_recognizer(resolve_model_config(config.model))
  return randomize(ref, to_torch_input(clip), seed)


def tanet(config, clip, seed):
  """TANet with random weights, calibrated trunk BatchNorms and perturbed TAM BatchNorm
  statistics, in eval mode."""
  ref = randomize(tanet_recognizer(resolve_model_config(config.model)),
                  to_torch_input(clip), seed)
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for bn in ref.modules():
      if isinstance(bn, TamBN1d):
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
  return ref


# --- Audio TSN-R18 (reference/mmaction2_cost.md sections 9, 10, 17): RecognizerAudio on
# log-mel features, the 2D ResNet with a one-channel conv1, AudioTSNHead. -----------------

import numpy as np  # noqa: E402  pylint: disable=wrong-import-position


def audio_features(b, t, f, seed=0):
  """Seeded float32 features [b, t, f] in [0, 1], as the extracted log-mel files hold."""
  rng = np.random.RandomState(seed)
  return np.clip(rng.rand(b, t, f) * 0.8 + rng.rand(b, 1, f) * 0.2, 0, 1).astype(np.float32)


class AudioTSNHead(nn.Module):
  """Average pool over (h, w), fc_cls (dropout is the identity in eval mode)."""

  def __init__(self, cin, k):
    super().__init__()
    self.fc_cls = nn.Linear(cin, k)

  def forward(self, x):
    return self.fc_cls(x.mean(dim=(2, 3)))


class RecognizerAudio(nn.Module):
  """(B, T, F) features -> (B, 1, T, F) -> backbone -> cls_head; `torch_input` turns the
  row's numpy features into its input."""

  def __init__(self, backbone, cls_head):
    super().__init__()
    self.backbone, self.cls_head = backbone, cls_head

  def forward(self, x):
    return self.cls_head(self.backbone(x[:, None]))

  @staticmethod
  def torch_input(features):
    return torch.from_numpy(np.ascontiguousarray(features, np.float32))


def audio_tsn(config, features, seed):
  """MMAction2's audio TSN (ResNet of model.backbone.depth, in_channels 1) with random
  weights and calibrated BatchNorms, in eval mode."""
  m = resolve_model_config(config.model)
  backbone = ResNet2d(m.backbone.depth)
  backbone.conv1 = ConvModule(1, 64, 7, 2, 3, dims=2)
  width = 512 * (4 if SPECS[m.backbone.depth][0] == "bottleneck" else 1)
  ref = RecognizerAudio(backbone, AudioTSNHead(width, m.num_classes))
  return randomize(ref, ref.torch_input(features), seed)


# --- TimeSformer (reference/mmaction2_cost.md 16, 17): upstream names
# (`backbone.transformer_layers.layers.0.attentions.0.attn.in_proj_weight`,
# `backbone.transformer_layers.layers.0.attentions.0.temporal_fc.weight`,
# `backbone.transformer_layers.layers.0.ffns.0.layers.0.0.weight`, `backbone.time_embed`,
# `cls_head.fc_cls.weight`), with mean and std 127.5 in the recognizer. --------------------

class TimeSformerPatchEmbed(nn.Module):
  """`projection`: Conv2d(3, C, p, stride p) with bias on each frame."""

  def __init__(self, c, p):
    super().__init__()
    self.projection = nn.Conv2d(3, c, p, p)

  def forward(self, x):  # (N, 3, H, W) -> (N, P, C), patches row by row
    return self.projection(x).flatten(2).transpose(1, 2)


class TimeSformerFFN(nn.Module):
  """mmcv FFN: layers = [[fc1, GELU, Dropout], fc2, Dropout]; `norm` when it normalises
  its own input (divided attention's FFNWithNorm)."""

  def __init__(self, c, eps, with_norm):
    super().__init__()
    if with_norm:
      self.norm = nn.LayerNorm(c, eps=eps)
    self.layers = nn.Sequential(nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Dropout(0.0)),
                                nn.Linear(4 * c, c), nn.Dropout(0.0))
    self.with_norm = with_norm

  def forward(self, x, identity=None):
    if self.with_norm:
      identity, x = x, self.norm(x)
    return identity + self.layers(x)


class DividedTemporalAttentionRef(nn.Module):
  """Each patch's T tokens attend to one another; temporal_fc after the MHA; the class
  token passes unchanged."""

  def __init__(self, c, heads, t, eps):
    super().__init__()
    self.norm = nn.LayerNorm(c, eps=eps)
    self.attn = nn.MultiheadAttention(c, heads)
    self.temporal_fc = nn.Linear(c, c)
    self.t = t

  def forward(self, x):  # (B, 1 + P*T, C), token 1 + p*T + t
    b, l, c = x.shape
    seq = x[:, 1:].reshape(b * (l - 1) // self.t, self.t, c)
    q = self.norm(seq).transpose(0, 1)   # torch MHA: (L, N, C)
    res = self.temporal_fc(self.attn(q, q, q)[0].transpose(0, 1))
    return torch.cat([x[:, :1], x[:, 1:] + res.reshape(b, l - 1, c)], 1)


class DividedSpatialAttentionRef(nn.Module):
  """Each frame's [class token, P patches] attend to one another; the class token's
  residual is the mean of its T outputs."""

  def __init__(self, c, heads, t, eps):
    super().__init__()
    self.norm = nn.LayerNorm(c, eps=eps)
    self.attn = nn.MultiheadAttention(c, heads)
    self.t = t

  def forward(self, x):
    b, l, c = x.shape
    t = self.t
    p = (l - 1) // t
    frames = x[:, 1:].reshape(b, p, t, c).permute(0, 2, 1, 3).reshape(b * t, p, c)
    cls = x[:, :1].unsqueeze(1).expand(b, t, 1, c).reshape(b * t, 1, c)
    q = self.norm(torch.cat([cls, frames], 1)).transpose(0, 1)
    res = self.attn(q, q, q)[0].transpose(0, 1)   # (B*T, 1 + P, C)
    cls_res = res[:, 0].reshape(b, t, c).mean(1, keepdim=True)
    patches = res[:, 1:].reshape(b, t, p, c).permute(0, 2, 1, 3).reshape(b, p * t, c)
    return x + torch.cat([cls_res, patches], 1)


class MMCVMultiheadAttention(nn.Module):
  """mmcv's MultiheadAttention: `attn`, identity added by the caller's residual."""

  def __init__(self, c, heads):
    super().__init__()
    self.attn = nn.MultiheadAttention(c, heads, batch_first=True)

  def forward(self, q, identity):
    return identity + self.attn(q, q, q)[0]


class TimeSformerLayer(nn.Module):
  """divided: attentions [temporal, spatial], ffns [FFN with norm]; else the pre-norm
  block: norms [0, 1], attentions [MHA], ffns [FFN]."""

  def __init__(self, c, heads, t, eps, divided):
    super().__init__()
    self.divided = divided
    if divided:
      self.attentions = nn.ModuleList([DividedTemporalAttentionRef(c, heads, t, eps),
                                       DividedSpatialAttentionRef(c, heads, t, eps)])
    else:
      self.norms = nn.ModuleList([nn.LayerNorm(c, eps=eps), nn.LayerNorm(c, eps=eps)])
      self.attentions = nn.ModuleList([MMCVMultiheadAttention(c, heads)])
    self.ffns = nn.ModuleList([TimeSformerFFN(c, eps, with_norm=divided)])

  def forward(self, x):
    if self.divided:
      return self.ffns[0](self.attentions[1](self.attentions[0](x)))
    x = self.attentions[0](self.norms[0](x), x)
    return self.ffns[0](self.norms[1](x), x)


class TimeSformerLayers(nn.Module):

  def __init__(self, layers):
    super().__init__()
    self.layers = nn.ModuleList(layers)

  def forward(self, x):
    for layer in self.layers:
      x = layer(x)
    return x


class TimeSformer(nn.Module):
  """Section 16: (B, 3, T, H, W) -> class-token features (B, C)."""

  def __init__(self, b):
    super().__init__()
    c, t = b.embed_dims, b.num_frames
    p = (b.img_size // b.patch_size) ** 2
    self.space_only = b.attention_type == "space_only"
    self.patch_embed = TimeSformerPatchEmbed(c, b.patch_size)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
    self.pos_embed = nn.Parameter(torch.zeros(1, p + 1, c))
    if not self.space_only:
      self.time_embed = nn.Parameter(torch.zeros(1, t, c))
    divided = b.attention_type == "divided_space_time"
    self.transformer_layers = TimeSformerLayers(
        [TimeSformerLayer(c, b.num_heads, t, b.ln_eps, divided) for _ in range(b.num_layers)])
    self.norm = nn.LayerNorm(c, eps=b.ln_eps)

  def forward(self, x):
    b, _, t = x.shape[:3]
    x = self.patch_embed(x.transpose(1, 2).flatten(0, 1))   # (B*T, P, C), clip-major
    n, p, c = x.shape
    x = torch.cat([self.cls_token.expand(n, 1, c), x], 1) + self.pos_embed
    if not self.space_only:
      cls = x[:b, :1]   # upstream takes the first B rows' class token (all equal)
      patches = x[:, 1:].reshape(b, t, p, c).transpose(1, 2) + self.time_embed
      x = torch.cat([cls, patches.reshape(b, p * t, c)], 1)
    x = self.transformer_layers(x)
    if self.space_only:
      x = x.reshape(b, t, p + 1, c).mean(1)
    return self.norm(x)[:, 0]


class TimeSformerHeadRef(nn.Module):

  def __init__(self, c, k):
    super().__init__()
    self.fc_cls = nn.Linear(c, k)

  def forward(self, x):
    return self.fc_cls(x)


def timesformer_recognizer(config):
  """The untrained reference of `config.model` (random init left to the caller)."""
  m = resolve_model_config(config.model)
  return PixelRecognizer3D(TimeSformer(m.backbone),
                           TimeSformerHeadRef(m.backbone.embed_dims, m.num_classes),
                           m.pixel_mean, m.pixel_std)


def timesformer(config, clip, seed):
  """Recognizer3D of TimeSformer and TimeSformerHead: random Linears, packed q / k / v
  projections (scaled to O(1) attention logits), LayerNorm affines, embeddings and
  temporal_fc (upstream starts it at 0), in eval mode."""
  ref = timesformer_recognizer(config)
  g = torch.Generator().manual_seed(seed)
  random_init(ref, g)
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, nn.MultiheadAttention):
        m.in_proj_weight.copy_(torch.randn(m.in_proj_weight.shape, generator=g)
                               / m.embed_dim ** 0.5)
        m.in_proj_bias.copy_(torch.randn(m.in_proj_bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.LayerNorm):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    backbone = ref.backbone
    for name in ("cls_token", "pos_embed", "time_embed"):
      if hasattr(backbone, name):
        param = getattr(backbone, name)
        param.copy_(torch.randn(param.shape, generator=g) * 0.5)
  return ref.eval()

# --- TRN and TPN (reference/mmaction2_cost.md 14, 15): TRNHead (`fc_cls` per frame, then
# `consensus.fc_fusion_scales.{i}` = [ReLU, Linear, ReLU, Linear] per scale) on the 2D
# ResNet; TPN (`neck.*`) on res4 and res5 of ResNet3d-SlowOnly or of the 2D ResNet with
# MMAction2's temporal shift (`conv1.conv.net`), TPNHead as I3DHead.

class RelationModuleMultiScale(nn.Module):
  """Relations of T, T-1, ..., 2 frames: the full tuple, then per smaller scale
  min(3, n) tuples of `itertools.combinations` drawn by NumPy's global RNG, as upstream
  does at every forward; each scale's MLP on the tuple's features in time order, summed."""

  def __init__(self, hidden, t, k, bottleneck=256, subsample=3):
    super().__init__()
    self.t, self.subsample = t, subsample
    self.fc_fusion_scales = nn.ModuleList(
        nn.Sequential(nn.ReLU(), nn.Linear(s * hidden, bottleneck), nn.ReLU(),
                      nn.Linear(bottleneck, k)) for s in range(t, 1, -1))

  def forward(self, x):  # (N, T, D)
    import itertools  # pylint: disable=import-outside-toplevel

    import numpy as np  # pylint: disable=import-outside-toplevel
    n = x.shape[0]
    out = self.fc_fusion_scales[0](x.reshape(n, -1))
    for i, s in enumerate(range(self.t - 1, 1, -1), start=1):
      combos = list(itertools.combinations(range(self.t), s))
      for j in np.random.choice(len(combos), min(self.subsample, len(combos)), replace=False):
        out = out + self.fc_fusion_scales[i](x[:, list(combos[j])].reshape(n, -1))
    return out


class TRNHead(nn.Module):
  """Average pool (H, W) per frame, `fc_cls` to hidden, then the relation consensus."""

  def __init__(self, cin, k, t, hidden=256):
    super().__init__()
    self.t, self.hidden = t, hidden
    self.fc_cls = nn.Linear(cin, hidden)
    self.consensus = RelationModuleMultiScale(hidden, t, k)

  def forward(self, x, t):
    assert t == self.t
    return self.consensus(self.fc_cls(x.mean(dim=(2, 3))).view(-1, t, self.hidden))


class SeededRecognizer2D(Recognizer2D):
  """The test's side of TRN's parity: `np.random.seed(seed)` right before each forward."""

  def __init__(self, backbone, cls_head, seed):
    super().__init__(backbone, cls_head)
    self.relation_seed = seed

  def forward(self, x):
    import numpy as np  # pylint: disable=import-outside-toplevel
    np.random.seed(self.relation_seed)
    return super().forward(x)


def trn_recognizer(m):
  """MMAction2's TRN (plain 2D ResNet, TRNHead) for resolved model config `m` (weights
  untouched); its forwards draw relations after `np.random.seed(m.relation_seed)`."""
  width = 512 * (4 if SPECS[m.backbone.depth][0] == "bottleneck" else 1)
  head = TRNHead(width, m.num_classes, m.head.num_segments, m.head.hidden_dim)
  return SeededRecognizer2D(ResNet2d(m.backbone.depth), head, m.relation_seed)


def trn(config, clip, seed):
  """TRN with random weights and calibrated BNs, in eval mode."""
  ref = trn_recognizer(resolve_model_config(config.model))
  return randomize(ref, to_torch_input(clip), seed)


class TemporalShift(nn.Module):
  """MMAction2's TSM shift around a conv (`net`): on (N*T, C, H, W), channels [0, C/8)
  take the next frame, [C/8, C/4) the previous one (zeros past the ends)."""

  def __init__(self, net, t, shift_div=8):
    super().__init__()
    self.net, self.t, self.shift_div = net, t, shift_div

  def forward(self, x):
    nt, c, h, w = x.shape
    x = x.view(nt // self.t, self.t, c, h, w)
    fold = c // self.shift_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return self.net(out.view(nt, c, h, w))


class ResNet2dStages(ResNet2d):
  """The 2D ResNet returning (layer3, layer4) (MMAction2's out_indices (2, 3))."""

  def forward(self, x):
    x = self.layer2(self.layer1(self.maxpool(self.conv1(x))))
    x3 = self.layer3(x)
    return x3, self.layer4(x3)


class ResNet3dStages(ResNet3d):
  """ResNet3d returning (layer3, layer4)."""

  def forward(self, x):
    x = self.conv1(x)
    if self.with_pool1:
      x = self.maxpool(x)
    x = self.layer1(x)
    if self.with_pool2:
      x = self.pool2(x)
    x3 = self.layer3(self.layer2(x))
    return x3, self.layer4(x3)


def TPNConv(cin, cout, kernel=1, stride=1, padding=0, groups=1, norm=True, act=True):  # noqa: N802
  """TPN's mmcv ConvModule: a bias-free Conv3d (`conv`, with groups), then optionally a
  BN3d (`bn`) and ReLU."""
  return ConvModule(cin, cout, kernel, stride, padding, act=act, norm=norm, groups=groups,
                    bias=False)


class DownSample(nn.Module):
  """`conv` and a ceil-mode max-pool of `scale`, the pool 'before' or 'after' the conv."""

  def __init__(self, conv, scale, position):
    super().__init__()
    self.conv, self.position = conv, position
    self.pool = nn.MaxPool3d(scale, scale, 0, ceil_mode=True)

  def forward(self, x):
    return self.conv(self.pool(x)) if self.position == "before" else self.pool(self.conv(x))


class TemporalModulation(nn.Module):

  def __init__(self, cin, cout, scale, groups):
    super().__init__()
    self.conv = TPNConv(cin, cout, (3, 1, 1), 1, (1, 0, 0), groups, norm=False, act=False)
    self.pool = nn.MaxPool3d((scale, 1, 1), (scale, 1, 1), 0, ceil_mode=True)

  def forward(self, x):
    return self.pool(self.conv(x))


class LevelFusion(nn.Module):

  def __init__(self, cins, mids, cout, groups):
    super().__init__()
    self.downsamples = nn.ModuleList(
        DownSample(TPNConv(c, mid, groups=groups), (1, 1, 1), "before")
        for c, mid in zip(cins, mids))
    self.fusion_conv = TPNConv(sum(mids), cout)

  def forward(self, xs):
    return self.fusion_conv(torch.cat([d(x) for d, x in zip(self.downsamples, xs)], 1))


class SpatialModulation(nn.Module):
  """Per level, log2(out / C) stride-2 (1, 3, 3) ConvModules doubling the channels; a
  level already `out` wide passes through."""

  def __init__(self, cins, cout):
    super().__init__()
    ops = []
    for c in cins:
      factor = int(math.log2(cout // c))
      ops.append(nn.ModuleList(
          TPNConv(c * 2 ** f, c * 2 ** (f + 1), (1, 3, 3), (1, 2, 2), (0, 1, 1))
          for f in range(factor)) if factor >= 1 else nn.Identity())
    self.spatial_modulation = nn.ModuleList(ops)

  def forward(self, xs):
    out = []
    for op, x in zip(self.spatial_modulation, xs):
      if isinstance(op, nn.ModuleList):
        for conv in op:
          x = conv(x)
      else:
        x = op(x)
      out.append(x)
    return out


class AuxHead(nn.Module):
  """conv (2C, stride-2 (1, 3, 3)) + BN + ReLU, global average, (dropout), fc."""

  def __init__(self, cin, k):
    super().__init__()
    self.conv = TPNConv(cin, 2 * cin, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    self.fc = nn.Linear(2 * cin, k)

  def forward(self, x):
    return self.fc(self.conv(x).mean(dim=(2, 3, 4)))


class TPN(nn.Module):
  """The TPN neck on levels (N, C_i, T, H, W); in training mode the auxiliary head's
  logits on the second-to-last level are kept in `aux_logits`."""

  def __init__(self, cins, out_channels, spatial_out, scales, fusion_out, pyramid_out, k,
               groups=32, flow="cascade"):
    super().__init__()
    self.flow = flow
    self.spatial_modulation = SpatialModulation(cins, spatial_out)
    self.temporal_modulation_ops = nn.ModuleList(
        TemporalModulation(spatial_out, out_channels, s, groups) for s in scales)
    n = len(cins)
    self.downsample_ops = nn.ModuleList(
        DownSample(TPNConv(out_channels, out_channels, (3, 1, 1), 1, (1, 0, 0), norm=False,
                           act=False), (1, 1, 1), "after") for _ in range(n - 1))
    mids = (out_channels,) * n
    self.level_fusion_1 = LevelFusion(mids, mids, fusion_out, groups)
    self.level_fusion_2 = LevelFusion(mids, mids, fusion_out, groups)
    self.pyramid_fusion = TPNConv(2 * fusion_out, pyramid_out)
    self.aux_head = AuxHead(cins[-2], k)
    self.aux_logits = None

  def forward(self, xs):
    self.aux_logits = self.aux_head(xs[-2]) if self.training else None
    temporal = [op(x) for op, x in zip(self.temporal_modulation_ops,
                                       self.spatial_modulation(xs))]
    outs = list(temporal)
    for i in range(len(outs) - 1, 0, -1):
      outs[i - 1] = outs[i - 1] + outs[i]
    top_down = self.level_fusion_1(outs)
    if self.flow == "parallel":
      outs = list(temporal)
    for i in range(len(outs) - 1):
      outs[i + 1] = outs[i + 1] + self.downsample_ops[i](outs[i])
    return self.pyramid_fusion(torch.cat([top_down, self.level_fusion_2(outs)], 1))


class NeckRecognizer(Recognizer):
  """Recognizer3D (frames (B, 3, T, H, W) to the backbone) or Recognizer2D (frames
  folded, each stage unfolded to (B, C, T, H, W)) with `neck` between backbone and
  cls_head."""

  def __init__(self, backbone, neck, cls_head, two_d):
    super().__init__(backbone, cls_head)
    self.neck, self.two_d = neck, two_d

  def classify(self, x):  # (B, T, 3, H, W)
    b, t = x.shape[:2]
    if self.two_d:
      stages = [s.reshape(b, t, *s.shape[1:]).transpose(1, 2)
                for s in self.backbone(x.flatten(0, 1))]
    else:
      stages = self.backbone(x.transpose(1, 2))
    return self.cls_head(self.neck(stages))


def tpn_recognizer(m):
  """MMAction2's TPN recognizer for resolved model config `m` (weights untouched):
  TSM-ResNet (2D, every block's conv1 shifted) or ResNet3d, res4 and res5 to the TPN
  neck, I3DHead."""
  n = m.neck
  if m.name == "recognizer2d":
    backbone = ResNet2dStages(m.backbone.depth)
    if m.shift.enabled:
      for _, blocks in _blocks(backbone):
        for blk in blocks:
          blk.conv1.conv = TemporalShift(blk.conv1.conv, 0, m.shift.n_div)
    base = 64
  else:
    backbone = ResNet3dStages(m.backbone)
    base = m.backbone.base_channels
  expansion = 4 if SPECS[m.backbone.depth][0] == "bottleneck" else 1
  neck = TPN((base * 4 * expansion, base * 8 * expansion), n.out_channels,
             n.spatial_channels, tuple(n.temporal_scales), n.fusion_channels,
             n.pyramid_channels, m.num_classes, n.groups, n.flow_type)
  return NeckRecognizer(backbone, neck, I3DHead(n.pyramid_channels, m.num_classes),
                        m.name == "recognizer2d")


def tpn(config, clip, seed):
  """TPN with random weights and calibrated BNs (the auxiliary head's too), in eval mode;
  the shift's frame count is the clip's. The neck ends on maps of 1 frame and few pixels,
  so its BNs would measure statistics on a handful of values per channel (near-zero
  variances that blow up eval mode): the calibration also sees 6 more seeded clips."""
  from torch_references.common import random_clip  # pylint: disable=import-outside-toplevel
  ref = tpn_recognizer(resolve_model_config(config.model))
  for m in ref.modules():
    if isinstance(m, TemporalShift):
      m.t = clip.shape[1]
  t, size = clip.shape[1:3]
  more = random_clip(6, t, size, seed=seed + 1)
  return randomize(ref, torch.cat([to_torch_input(clip), to_torch_input(more)]), seed)
