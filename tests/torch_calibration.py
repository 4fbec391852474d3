"""Non-trivial BatchNorm statistics for the PyTorch parity references."""

import torch
from torch import nn


def calibrate_batchnorm(model: nn.Module, example: torch.Tensor, generator: torch.Generator,
                        var_range: tuple[float, float] = (0.5, 2.0)) -> nn.Module:
  """Measures every BatchNorm2d's statistics on `example`, then perturbs them.

  Measured statistics keep activations O(1) through deep trunks; the perturbation (mean
  shifted by 0.2 std, variance scaled within `var_range`) makes eval mode differ from
  batch normalisation, so converted running statistics are really exercised.
  Returns the model in eval mode.
  """
  bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
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
