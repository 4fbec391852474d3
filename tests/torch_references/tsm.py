"""The TSM code base (converter source 'tsm'): TSN, the temporal shift, non-local blocks and
MobileNetV2, written from reference/tsm_gc.md 1.1-1.8 with the upstream module names."""

import torch
from torch import nn

from torch_references import common
from torch_references.common import (
  RefBasicBlock,
  RefBottleneck,
  RefResNet,
  RefTSN,
  calibrate_batchnorm,
  random_init,
  to_torch_input,
)
from vidjax.models import resolve_model_config


def ref_shift(x, n_segment, fold_div=8):
  """ops/temporal_shift.py's naive shift (section 1.1): (N*T, C, H, W)."""
  nt, c, h, w = x.shape
  x = x.view(nt // n_segment, n_segment, c, h, w)
  fold = c // fold_div
  out = torch.zeros_like(x)
  out[:, :-1, :fold] = x[:, 1:, :fold]
  out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
  out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
  return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
  """The wrapper: shifts its input, then runs `net` (adds the `.net` key level)."""

  def __init__(self, net, n_segment, n_div=8):
    super().__init__()
    self.net, self.n_segment, self.n_div = net, n_segment, n_div

  def forward(self, x):
    return self.net(ref_shift(x, self.n_segment, self.n_div))


class NL3D(nn.Module):
  """ops/non_local.py's embedded Gaussian block (section 1.4), plus mmcv's gaussian and
  dot_product pairwise functions (reference/mmaction2_cost.md 1a) on the same layout."""

  def __init__(self, c, mode="embedded_gaussian"):
    super().__init__()
    ci, self.ci, self.mode = c // 2, c // 2, mode
    self.g = nn.Sequential(nn.Conv3d(c, ci, 1), nn.MaxPool3d((1, 2, 2)))
    if mode != "gaussian":
      self.theta = nn.Conv3d(c, ci, 1)
      self.phi = nn.Sequential(nn.Conv3d(c, ci, 1), nn.MaxPool3d((1, 2, 2)))
    self.W = nn.Sequential(nn.Conv3d(ci, c, 1), nn.BatchNorm3d(c))

  def forward(self, x):  # (N, C, T, H, W)
    b = x.shape[0]
    g_x = self.g(x).view(b, self.ci, -1).permute(0, 2, 1)
    if self.mode == "gaussian":
      theta_x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
      phi_x = nn.functional.max_pool3d(x, (1, 2, 2)).reshape(b, x.shape[1], -1)
    else:
      theta_x = self.theta(x).view(b, self.ci, -1).permute(0, 2, 1)
      phi_x = self.phi(x).view(b, self.ci, -1)
    f = theta_x @ phi_x
    f = f / f.shape[-1] if self.mode == "dot_product" else f.softmax(dim=-1)
    y = (f @ g_x).permute(0, 2, 1).reshape(b, self.ci, *x.shape[2:])
    return self.W(y) + x


class NL3DWrapper(nn.Module):

  def __init__(self, block, c, n_segment, mode):
    super().__init__()
    self.block, self.nl, self.n_segment = block, NL3D(c, mode), n_segment

  def forward(self, x):
    x = self.block(x)
    nt, c, h, w = x.shape
    x = x.view(nt // self.n_segment, self.n_segment, c, h, w).transpose(1, 2)
    x = self.nl(x)
    return x.transpose(1, 2).reshape(nt, c, h, w)


def tsm_block_factory(depth, n_segment, place="blockres", nl_positions=None,
                      nl_mode="embedded_gaussian"):
  """A block constructor for add_resnet_trunk doing make_temporal_shift (+ make_non_local)."""
  block_cls = RefBasicBlock if depth < 50 else RefBottleneck
  n_round = 2 if depth >= 101 else 1

  def make(inplanes, planes, stride, stage, index):
    b = block_cls(inplanes, planes, stride)
    if place == "blockres":
      if index % n_round == 0:
        b.conv1 = TemporalShift(b.conv1, n_segment)
    else:
      b = TemporalShift(b, n_segment)
    if nl_positions and nl_positions[stage - 1][index]:
      b = NL3DWrapper(b, planes * block_cls.expansion, n_segment, nl_mode)
    return b

  make.expansion = block_cls.expansion
  return make


class InvertedResidual(nn.Module):

  def __init__(self, inp, oup, stride, t):
    super().__init__()
    hidden = inp * t
    self.use_res_connect = stride == 1 and inp == oup
    dw = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
          nn.BatchNorm2d(hidden), nn.ReLU6()]
    pw_linear = [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
    pw = [] if t == 1 else [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                            nn.ReLU6()]
    self.conv = nn.Sequential(*pw, *dw, *pw_linear)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class RefMobileNetV2(nn.Module):
  """archs/mobilenet_v2.py (width 1.0) with TSN._prepare_base_model's shift (section 1.7)."""

  def __init__(self, n_segment):
    super().__init__()
    feats = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                           nn.ReLU6())]
    inp = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
      for i in range(n):
        block = InvertedResidual(inp, c, s if i == 0 else 1, t)
        if len(block.conv) == 8 and block.use_res_connect:
          block.conv[0] = TemporalShift(block.conv[0], n_segment)
        feats.append(block)
        inp = c
    feats.append(nn.Sequential(nn.Conv2d(inp, 1280, 1, bias=False), nn.BatchNorm2d(1280),
                               nn.ReLU6()))
    self.features = nn.Sequential(*feats)
    self.classifier = nn.Dropout(0.8)
    self.feature_dim = 1280

  def forward(self, x):
    return self.classifier(self.features(x).mean(3).mean(2))


def randomize(model, example, seed):
  """Random weights, then measured-and-perturbed BN statistics (calibrate_batchnorm).

  The last BN of every residual branch gets small gains (0.2..0.5), so the residual
  stream grows slowly: with gains near 1, float32 rounding alone (torch float32 against
  torch float64) reaches 2e-4 on the logits of a random ResNet-101.
  """
  g = torch.Generator().manual_seed(seed)
  random_init(model, g)
  with torch.no_grad():
    for m in model.modules():
      last_bn = {RefBottleneck: "bn3", RefBasicBlock: "bn2"}.get(type(m))
      last_bn = getattr(m, last_bn) if last_bn else (
          m.conv[-1] if isinstance(m, InvertedResidual) else None)
      if last_bn is not None:
        last_bn.weight.copy_(torch.rand(last_bn.weight.shape, generator=g) * 0.3 + 0.2)
      if isinstance(m, NL3D) and m.mode != "gaussian":
        # Softmax arguments of O(1): He-scaled theta/phi make them O(100) on these
        # activations, a near-argmax whose float32 rounding is 4e-3 in torch itself.
        m.theta.weight.mul_(0.3)
        m.phi[0].weight.mul_(0.3)
      if isinstance(m, nn.BatchNorm3d):
        # The NL output BN is not calibrated: W(y) varies little over a batch (attention
        # averages), so measured statistics would amplify the eval/train drift of the
        # trunk without bound. Fixed non-trivial statistics and small gains instead.
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.3 + 0.2)
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
  return calibrate_batchnorm(model, example, g, (0.5, 2.0))


def tsn_resnet(num_classes, num_segments, depth=50, dropout=0.8):
  """TSN-ResNet (no temporal modules) with the default PyTorch initialisation; dropout 0
  puts the classifier at base_model.fc, as upstream."""
  return RefTSN(RefResNet(depth, fc=nn.Dropout(dropout) if dropout > 0 else None),
                num_classes, num_segments, fc_in_base_model=dropout == 0)


# --- builders: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. ------

def tsn(config, clip, seed):
  """TSN-ResNet with TSN's own initialisation: He-normal with fan-out, no small residual
  gains."""
  m = resolve_model_config(config.model)
  ref = tsn_resnet(m.num_classes, clip.shape[1], m.backbone.depth, m.head.dropout_rate)
  return common.randomize(ref, to_torch_input(clip), seed, fan="out")


def tsm(config, clip, seed):
  """TSM (shift, optional non-local blocks) on a ResNet or MobileNetV2."""
  m = resolve_model_config(config.model)
  t = clip.shape[1]
  if m.backbone.name == "mobilenet_v2":
    base = RefMobileNetV2(t)
  else:
    nl = m.get("non_local")
    nl_on = nl is not None and nl.enabled
    base = RefResNet(m.backbone.depth, fc=nn.Dropout(0.8), block=tsm_block_factory(
        m.backbone.depth, t, m.shift.place, nl.positions if nl_on else None,
        nl.mode if nl_on else "embedded_gaussian"))
  return randomize(RefTSN(base, m.num_classes, t), to_torch_input(clip), seed)
