"""The TCPNet code base (converter source 'tcpnet'): TCP's attention and iSQRT-COV pooling
on a ResNet-50 (layer4 stride 1), TEA Res2Net-50 or pre-activation ResNet, written from
reference/tcpnet.md sections 1-3 and 6 with the upstream module names:
base_model.{conv1, bn1, layerS.B.*, TCP.*}, new_fc."""

import torch
from torch import nn

from torch_references.common import (
  add_resnet_trunk,
  randomize,
  resnet_trunk,
  scale_logits,
  to_torch_input,
)
from torch_references.tcpnet_backbones import backbone_reference
from vidjax.models import resolve_model_config


class RefTSA(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.conv_phi_1 = nn.Conv2d(c, c, 1)   # query, frame t-1
    self.conv_phi_2 = nn.Conv2d(c, c, 1)   # key, frame t-2
    self.conv_phi0 = nn.Conv2d(c, c, 1)    # value, frame t
    self.norm = nn.BatchNorm2d(c)

  def forward(self, x, t):
    n, c, h, w = x.shape
    frames = x.view(n // t, t, c, h, w)
    x1 = frames[:, [max(i - 1, 0) for i in range(t)]].reshape(n, c, h, w)
    x2 = frames[:, [max(i - 2, 0) for i in range(t)]].reshape(n, c, h, w)
    q = self.conv_phi_1(x1).flatten(2)
    k = self.conv_phi_2(x2).flatten(2)
    v = self.conv_phi0(x).flatten(2)
    a = torch.softmax(torch.einsum("ncp,ncq->npq", q, k) * c ** -0.5, dim=-1)
    y = torch.einsum("npq,ncq->ncp", a, v).reshape(n, c, h, w)
    return x + self.norm(y)


class RefTCA(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.g1 = nn.Conv2d(c, 4 * c, 1)
    self.g2 = nn.Conv2d(4 * c, c, 1)

  def gate(self, d):
    """(B, T, C) frame differences -> (B*T, C, 1, 1) channel gates."""
    return torch.sigmoid(self.g2(torch.relu(self.g1(d.reshape(-1, d.shape[-1], 1, 1)))))

  def forward(self, x, x_att, t):
    n, c = x.shape[:2]
    g = x.mean((2, 3)).view(n // t, t, c)
    d1 = g - g[:, [(i - 1) % t for i in range(t)]]
    d2 = 0.5 * (g - g[:, [(i - 2) % t for i in range(t)]])
    return x_att * (0.5 * (self.gate(d1) + self.gate(d2)))


class RefTCPAtt(nn.Module):
  def __init__(self, c, t):
    super().__init__()
    k = t // 2 + 1
    self.TCA = RefTCA(c)
    # The padding upstream computes on torch <= 1.9 (spec 7a), i.e. what it was trained with.
    self.conv_1d = nn.Conv3d(c, c, (k, 1, 1), padding=((k - 1) // 2, 0, 0),
                             padding_mode="circular")
    self.TSA = RefTSA(c)
    self.t = t

  def forward(self, x):
    n, c, h, w = x.shape
    x_att = self.TCA(x, self.TSA(x, self.t), self.t)
    z = x_att.view(n // self.t, self.t, c, h, w).permute(0, 2, 1, 3, 4)
    z = self.conv_1d(z).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
    return torch.relu(z + x)


def ref_covariance(x):
  """(B, C, M) -> (B, C, C) with upstream's centring matrix I_hat (fine at test sizes)."""
  m = x.shape[2]
  i_hat = (torch.eye(m, dtype=x.dtype) - torch.ones(m, m, dtype=x.dtype) / m) / m
  return x @ i_hat @ x.transpose(1, 2)


def ref_sqrtm(s, iters=3):
  c = s.shape[1]
  eye3 = 3.0 * torch.eye(c, dtype=s.dtype).expand_as(s)
  tr = s.diagonal(dim1=1, dim2=2).sum(1).view(-1, 1, 1)
  a = s / (tr + 1e-5)
  zy = 0.5 * (eye3 - a)
  y, z = a @ zy, zy
  for _ in range(iters - 2):
    p = 0.5 * (eye3 - z @ y)
    y, z = y @ p, p @ z
  return 0.5 * y @ (eye3 - z @ y) * tr.sqrt()


class RefTCP(nn.Module):
  def __init__(self, t, dim_in=2048, dim=128, dim_inner=256):
    super().__init__()
    self.layer_reduce1 = nn.Conv2d(dim_in, dim_inner, 1, bias=False)
    self.layer_reduce_bn1 = nn.BatchNorm2d(dim_inner)
    self.layer_reduce2 = nn.Conv2d(dim_inner, dim, 1, bias=False)
    self.layer_reduce_bn2 = nn.BatchNorm2d(dim)
    self.TCP_att = RefTCPAtt(dim, t)
    self.t = t

  def forward(self, x):
    x = torch.relu(self.layer_reduce_bn1(self.layer_reduce1(x)))
    x = torch.relu(self.layer_reduce_bn2(self.layer_reduce2(x)))
    x = self.TCP_att(x)
    n, c, h, w = x.shape
    x = x.view(n // self.t, self.t, c, h, w).permute(0, 2, 1, 3, 4).reshape(n // self.t, c, -1)
    root = ref_sqrtm(ref_covariance(x))
    rows, cols = torch.triu_indices(c, c)
    return root[:, rows, cols].reshape(n // self.t, -1, 1, 1)


class RefResNetTrunk(nn.Module):
  """torchvision's ResNet up to layer4: (N, 3, H, W) -> layer4 features."""

  def __init__(self, depth, strides):
    super().__init__()
    add_resnet_trunk(self, depth, strides)

  def forward(self, x):
    return resnet_trunk(self, x)


class RefTCPNet(nn.Module):
  """TCPNet: `base_model` is the backbone reference (its forward gives the layer4 features)
  with `TCP` and `fc` (dropout) attached, as upstream's TSN wrapper arranges them;
  (B, T*3, H, W) -> (B, K): one prediction per clip, no consensus."""

  def __init__(self, base, t, num_classes, dropout=0.5):
    super().__init__()
    base.TCP = RefTCP(t)
    base.fc = nn.Dropout(dropout)
    self.base_model = base
    self.new_fc = nn.Linear(128 * 129 // 2, num_classes)

  def features(self, x):
    frames = self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1]))
    return torch.flatten(self.base_model.TCP(frames), 1)

  def forward(self, x):
    return self.new_fc(self.base_model.fc(self.features(x)))


def tcp_tsn_r50(num_classes, t, dropout=0.5):
  """TCP TSN-ResNet-50 with the default PyTorch initialisation."""
  return RefTCPNet(RefResNetTrunk(50, (1, 2, 2, 1)), t, num_classes, dropout)


# --- builder: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. -------

def tcp(config, clip, seed):
  """TCPNet on the backbone of `config.model`. Random weights everywhere (attention
  included: non-zero TSA gamma and conv_1d, so it is far from the identity), BN statistics
  measured on `clip` and perturbed; new_fc scaled to logits of std 1 on `clip`."""
  m = resolve_model_config(config.model)
  t = m.head.num_segments
  if m.backbone.name == "resnet":
    base = RefResNetTrunk(m.backbone.depth, tuple(m.backbone.strides))
  else:
    base = backbone_reference(m.backbone, t)
  x = to_torch_input(clip, normalise=m.pixel_mean is not None)
  ref = randomize(RefTCPNet(base, t, m.num_classes, m.head.dropout_rate), x, seed,
                  var_range=(1.0, 2.0))
  scale_logits(ref.new_fc, ref.features(x))
  return ref
