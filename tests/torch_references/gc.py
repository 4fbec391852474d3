"""The GC code base (converter source 'gc'): group contextualization with the ECal-L, -T,
-S and -G calibrators in TSN and TSM ResNet-50s, written from reference/tsm_gc.md section 2
with the upstream module names (nets/Calibrator2D.py: conv, bn1; nets/GC_TSN.py, GC_TSM.py,
ECal_TSN.py: eft1..4 / eft inside each Bottleneck; ops_tsntsmgst/models_*.py: base_model,
new_fc)."""

import torch
from torch import nn

from torch_references.common import (
  BN_TYPES,
  RefBottleneck,
  RefResNet,
  RefTSN,
  calibrate_batchnorm,
  random_clip,
  random_init,
  to_torch_input,
)
from torch_references.tsm import ref_shift
from vidjax.models import resolve_model_config


class RefL(nn.Module):
  """ECal-L (GC_L33D): Conv3d (3,1,1) over time -> BN3d -> sigmoid, element-wise."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0), bias=False)
    self.bn1 = nn.BatchNorm3d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w).permute(0, 2, 1, 3, 4)
    y = v * torch.sigmoid(self.bn1(self.conv(v)))
    return y.permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)


class RefT(nn.Module):
  """ECal-T (GC_T13D): spatial mean -> Conv1d k=3 over time -> BN1d -> sigmoid."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv1d(c, c, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm1d(c)

  def forward(self, x):
    nt, c, _, _ = x.shape
    y = x.mean((2, 3)).view(-1, self.t, c).permute(0, 2, 1)
    y = torch.sigmoid(self.bn1(self.conv(y))).permute(0, 2, 1).reshape(nt, c, 1, 1)
    return x * y


class RefS(nn.Module):
  """ECal-S (GC_S23DD): temporal mean -> 3x3 conv, dilation 2 -> sigmoid. `bn1` is created
  (and saved) but never applied, as upstream."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False)
    self.bn1 = nn.BatchNorm2d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w)
    return (v * torch.sigmoid(self.conv(v.mean(1))).unsqueeze(1)).view(nt, c, h, w)


class RefG(nn.Module):
  """ECal-G (GC_CLLD): mean over T, H, W -> Linear c->c (no bias) -> BN1d -> sigmoid."""

  def __init__(self, c, t):
    super().__init__()
    self.t = t
    self.conv = nn.Linear(c, c, bias=False)
    self.bn1 = nn.BatchNorm1d(c)

  def forward(self, x):
    nt, c, h, w = x.shape
    v = x.view(-1, self.t, c, h, w)
    y = torch.sigmoid(self.bn1(self.conv(v.mean((1, 3, 4)))))
    return (v * y[:, None, :, None, None]).view(nt, c, h, w)


_REF = {"L": RefL, "T": RefT, "S": RefS, "G": RefG}


def gc_bottleneck(kinds, cdiv, t, shifted, loop=False):
  """A Bottleneck class with calibrators after bn2 (+ TSM's inline blockres shift)."""
  counter = [0]  # upstream's loop_id: calibrated blocks so far (every block of R50)

  class Block(RefBottleneck):

    def __init__(self, inplanes, planes, stride, stage, index):
      super().__init__(inplanes, planes, stride)
      del stage, index
      self.t, self.shifted, self.c = t, shifted, planes // cdiv
      self.loop_id = counter[0] % cdiv if loop else 0
      counter[0] += 1
      self.names = ["eft"] if len(kinds) == 1 else [f"eft{k + 1}" for k in range(len(kinds))]
      for name, kind in zip(self.names, kinds):
        setattr(self, name, _REF[kind](self.c, t))
      self.bypass = False  # for the test's own check that the calibrators matter

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = ref_shift(x, self.t) if self.shifted else x
      out = torch.relu(self.bn1(self.conv1(out)))
      out = self.bn2(self.conv2(out))
      if not self.bypass:
        new = out.clone()
        for k, name in enumerate(self.names):
          s = ((self.loop_id + k) % cdiv) * self.c
          new[:, s:s + self.c] = getattr(self, name)(out[:, s:s + self.c])
        out = new
      out = self.bn3(self.conv3(torch.relu(out)))
      return torch.relu(out + identity)

  Block.expansion = 4
  return Block


class RefVideoNet(RefTSN):
  """GC's VideoNet: TSM's TSN around a ResNet-50 of calibrated bottlenecks, its fc a
  Dropout; (N, T*3, H, W) -> (N, K)."""

  def __init__(self, num_classes, t, kinds, cdiv, shifted, loop=False):
    block = gc_bottleneck(kinds, cdiv, t, shifted, loop)
    super().__init__(RefResNet(50, block=block, fc=nn.Dropout(0.5)), num_classes, t)


def randomize(model, x, seed):
  g = torch.Generator().manual_seed(seed)
  random_init(model, g)
  with torch.no_grad():
    # Logits of std ~1-2: float32 rounding through 50 random layers grows with their scale
    # (the reference's own float32 vs float64 difference is ~2e-5 per unit of logit std).
    model.new_fc.weight.mul_(0.4)
  model = calibrate_batchnorm(model, x, g, (0.5, 2.0), types=BN_TYPES)
  with torch.no_grad():  # ECal-S's unused BN: far from identity, so using it would show
    for m in model.modules():
      if isinstance(m, RefS):
        m.bn1.running_mean.copy_(torch.randn(m.bn1.running_mean.shape, generator=g))
        m.bn1.running_var.copy_(torch.rand(m.bn1.running_var.shape, generator=g) * 3 + 0.2)
  return model


def set_bypass(model, bypass: bool) -> None:
  """Skips (or restores) every calibrator: the logits without group contextualization."""
  for m in model.modules():
    if hasattr(m, "bypass"):
      m.bypass = bypass


# --- builder: (config, clip [B, T, H, W, 3] uint8, seed) -> reference in eval mode. -------

def gc(config, clip, seed):
  """GC-TSN/TSM and ECal models as `config.model.ecal` and `.shift` describe them."""
  m = resolve_model_config(config.model)
  kinds = tuple(m.ecal.calibrators)
  shifted = bool(m.get("shift") is not None and m.shift.enabled)
  ref = RefVideoNet(m.num_classes, clip.shape[1], kinds, m.ecal.cdiv, shifted, m.ecal.loop)
  # BN statistics measured on more clips than the test compares: ECal-G's BN1d sees one
  # vector per clip, and 2 samples would give near-zero variances that amplify rounding.
  calib = random_clip(8, clip.shape[1], clip.shape[2], seed=seed + 100)
  return randomize(ref, to_torch_input(calib), seed)
