"""OpenAI CLIP in plain torch with its state_dict layout (reference/tcclip.md 2.1, 3.3,
6.1), and the frame-wise video classifier of the TC-CLIP repository's ViFi-CLIP and
vanilla baselines (3.4): our own code, written from the spec.

`clip(config, clip, seed)` builds the reference for `config.model` (a `clip` model):
random weights, class prompts tokenized with vidjax.text (tests/test_text.py checks it
against OpenAI's tokenizer), input as tests/torch_references/common.py's
`to_torch_input` gives it, (B, T*3, H, W) ImageNet-normalised.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from vidjax.text import tokenize


class QuickGELU(nn.Module):

  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
  """Pre-LN: x + attn(ln_1(x)), x + mlp(ln_2(x)); attention over (L, N, D) as torch's
  MultiheadAttention (packed in_proj_weight, out_proj)."""

  def __init__(self, width: int, heads: int, causal_length: int = 0):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, heads)
    self.ln_1 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(OrderedDict([
        ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
        ("c_proj", nn.Linear(4 * width, width))]))
    self.ln_2 = nn.LayerNorm(width)
    self.causal_length = causal_length

  def forward(self, x):  # (L, N, D)
    mask = None
    if self.causal_length:
      n = x.shape[0]
      mask = torch.full((n, n), float("-inf")).triu(1)
    h = self.ln_1(x)
    x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):

  def __init__(self, width: int, layers: int, heads: int, causal: bool = False):
    super().__init__()
    self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, int(causal))
                                     for _ in range(layers)])

  def forward(self, x):
    return self.resblocks(x)


class VisionTransformer(nn.Module):

  def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int,
               output_dim: int):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
    self.class_embedding = nn.Parameter(torch.zeros(width))
    self.positional_embedding = nn.Parameter(torch.zeros((image_size // patch_size) ** 2 + 1,
                                                         width))
    self.ln_pre = nn.LayerNorm(width)
    self.transformer = Transformer(width, layers, heads)
    self.ln_post = nn.LayerNorm(width)
    self.proj = nn.Parameter(torch.zeros(width, output_dim))

  def forward(self, x):  # (N, 3, H, W)
    x = self.conv1(x).flatten(2).transpose(1, 2)              # (N, P, D), rows then columns
    cls = self.class_embedding.expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + self.positional_embedding
    x = self.ln_pre(x).permute(1, 0, 2)
    x = self.transformer(x).permute(1, 0, 2)
    return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
  """OpenAI CLIP's module tree: `visual`, then the text tower at the top level."""

  def __init__(self, m):
    super().__init__()
    v, t = m.vision, m.text
    self.visual = VisionTransformer(v.image_size, v.patch_size, v.width, v.layers, v.heads,
                                    m.embed_dim)
    self.transformer = Transformer(t.width, t.layers, t.heads, causal=True)
    self.token_embedding = nn.Embedding(t.vocab_size, t.width)
    self.positional_embedding = nn.Parameter(torch.zeros(t.max_length, t.width))
    self.ln_final = nn.LayerNorm(t.width)
    self.text_projection = nn.Parameter(torch.zeros(t.width, m.embed_dim))
    self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))

  def encode_image(self, x):
    return self.visual(x)

  def encode_text(self, tokens):  # (C, L) int64
    x = self.token_embedding(tokens) + self.positional_embedding[:tokens.shape[1]]
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = self.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


class ClipVideo(CLIP):
  """ViFi-CLIP: frames through the image tower, their mean, cosine against the class
  prompts' text features, times exp(logit_scale)."""

  def __init__(self, m, prompt_tokens: np.ndarray):
    super().__init__(m)
    # A plain attribute: not in the state_dict, a constant when traced.
    self.prompt_tokens = torch.from_numpy(prompt_tokens.astype(np.int64))

  def forward(self, x):  # (B, T*3, H, W)
    b, h, w = x.shape[0], x.shape[2], x.shape[3]
    frames = x.reshape(b, -1, 3, h, w)
    t = frames.shape[1]
    video = self.encode_image(frames.reshape(b * t, 3, h, w)).reshape(b, t, -1).mean(dim=1)
    text = self.encode_text(self.prompt_tokens)
    video = video / video.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return self.logit_scale.exp() * video @ text.t()


def prompt_texts(m) -> list[str]:
  """The baselines' prompts: a space before each capital, the template filled in."""
  names = [re.sub("([A-Z])", r" \1", n).strip() for n in m.class_names]
  if m.replace_underscores:
    names = [n.replace("_", " ") for n in names]
  return [m.prompt.replace("{}", n) for n in names]


def random_clip_weights(model: nn.Module, generator: torch.Generator) -> None:
  """Weights of the scale a trained CLIP has (so LayerNorm inputs are neither tiny nor
  huge): 1/sqrt(fan_in) matrices, embeddings ~0.1-0.5, non-trivial LayerNorm affines."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      leaf = name.split(".")[-1]
      if "ln_" in name:
        p.copy_((1.0 if leaf == "weight" else 0.0) +
                0.2 * torch.randn(p.shape, generator=generator))
      elif leaf == "logit_scale":
        continue
      elif leaf in ("bias", "in_proj_bias"):
        p.copy_(0.1 * torch.randn(p.shape, generator=generator))
      elif p.ndim >= 2 and leaf not in ("positional_embedding",) and "token_embedding" not in name:
        fan_in = p.shape[1] if leaf != "proj" and "projection" not in leaf else p.shape[0]
        if p.ndim == 4:
          fan_in = p[0].numel()
        p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
      else:  # embeddings, class embedding
        p.copy_(0.5 * torch.randn(p.shape, generator=generator))


def clip(config, clip_array, seed: int) -> ClipVideo:
  """The reference of `config.model` with random weights, in eval mode."""
  del clip_array
  from vidjax.models import resolve_model_config  # pylint: disable=import-outside-toplevel
  m = resolve_model_config(config.model)
  tokens = tokenize(prompt_texts(m), m.context_length)
  model = ClipVideo(m, tokens)
  random_clip_weights(model, torch.Generator().manual_seed(seed))
  return model.eval()
