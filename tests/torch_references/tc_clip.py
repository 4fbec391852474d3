"""TC-CLIP in plain torch with the upstream state_dict layout (reference/tcclip.md 2, 3,
6.2): our own code, written from the spec.

`tc_clip(config, clip, seed)` builds the reference of a `tc_clip` model config with random
weights. Its forward records the discrete choices of every TC block in `ref.decisions`
(per block: seeds [B, T, k], and per merge step the order [B, ta] and destinations
[B, ta]); `jax_decisions(ref)` gives them in the form vidjax's `decisions=` takes.

Beyond the upstream keys, the reference holds CLIP's `token_embedding` (upstream keeps
only the embedded prompts, `prompt_learner.token_prefix/suffix`): a TC-CLIP conversion
takes that table from the CLIP checkpoint (converters/tc_clip.py).
"""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from torch_references.clip import QuickGELU, Transformer, random_clip_weights
from vidjax.text import tokenize


def merge_schedule(start: int, final: int, r: int) -> list[int]:
  """reference/tcclip.md 2.2 (c): floor((start - final) / r) steps of min(r, cnt // 2),
  then steps of min(cnt - final, cnt // 2) while more than `final` remain."""
  steps, cnt = [], start
  for _ in range(max(0, (start - final) // r)):
    steps.append(min(r, cnt // 2))
    cnt -= steps[-1]
  while cnt > final:
    steps.append(min(cnt - final, cnt // 2))
    cnt -= steps[-1]
  return steps


def bipartite_step(x, size, r):
  """ToMe soft matching on the tokens themselves; size-weighted sums. x (B, t, D)."""
  metric = x / x.norm(dim=-1, keepdim=True)
  a, b = metric[:, ::2], metric[:, 1::2]
  scores = a @ b.transpose(-1, -2)
  node_max, node_idx = scores.max(dim=-1)
  edge_idx = node_max.argsort(dim=-1, descending=True)
  unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
  dst_idx = node_idx.gather(1, src_idx)

  def merge(v):
    c = v.shape[-1]
    src, dst = v[:, ::2], v[:, 1::2]
    unm = src.gather(1, unm_idx[..., None].expand(-1, -1, c))
    moved = src.gather(1, src_idx[..., None].expand(-1, -1, c))
    dst = dst.scatter_reduce(1, dst_idx[..., None].expand(-1, -1, c), moved, reduce="sum")
    return torch.cat([unm, dst], dim=1)

  merged, size = merge(x * size), merge(size)
  return merged / size, size, edge_idx, node_idx


class TCAttention(nn.Module):

  def __init__(self, width, heads, layer):
    super().__init__()
    self.heads = heads
    self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
    self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)
    if layer > 0:
      self.local_global_bias_table = nn.Parameter(torch.zeros(heads, 1, 2))

  def forward(self, h, t, n):
    """h (B, T*N + K, D) normalised -> (out (B, T*N, D), weights (B*T, H, N, N + K))."""
    b, _, d = h.shape
    hd = d // self.heads
    q = self.q_proj(h[:, :t * n]).reshape(b * t, n, self.heads, hd).transpose(1, 2)
    k, v = self.k_proj(h), self.v_proj(h)

    def per_frame(z):
      local = z[:, :t * n].reshape(b * t, n, d)
      if z.shape[1] > t * n:   # the video's context tokens, repeated for every frame
        local = torch.cat([local, z[:, t * n:].repeat_interleave(t, dim=0)], dim=1)
      return local.reshape(b * t, -1, self.heads, hd).transpose(1, 2)

    k, v = per_frame(k), per_frame(v)
    logits = (q * hd ** -0.5) @ k.transpose(-1, -2)
    if hasattr(self, "local_global_bias_table"):
      bias = torch.cat([self.local_global_bias_table[:, :, :1].expand(-1, -1, n),
                        self.local_global_bias_table[:, :, 1:].expand(-1, -1, k.shape[2] - n)],
                       dim=-1)   # (H, 1, N + K)
      logits = logits + bias
    weights = logits.softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, t * n, d)
    return self.out_proj(out), weights


class TCAttentionBlock(nn.Module):

  def __init__(self, width, heads, layer, seed_ratio, context_tokens, merge_r):
    super().__init__()
    self.attn = TCAttention(width, heads, layer)
    self.ln_1 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(OrderedDict([
        ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
        ("c_proj", nn.Linear(4 * width, width))]))
    self.ln_2 = nn.LayerNorm(width)
    self.seed_ratio, self.context_tokens, self.merge_r = seed_ratio, context_tokens, merge_r

  def forward(self, x, t, n, record):
    b, _, d = x.shape
    out, weights = self.attn(self.ln_1(x), t, n)
    x = x[:, :t * n] + out   # the incoming context tokens leave the residual stream
    k = int((n - 1) * self.seed_ratio)
    scores = weights[:, :, 0, 1:n].mean(dim=1).reshape(b, t, n - 1)
    seeds = scores.topk(k, dim=-1, sorted=True).indices
    record["seeds"] = seeds
    tokens = x.reshape(b, t, n, d)[:, :, 1:].gather(2, seeds[..., None].expand(-1, -1, -1, d))
    tokens = tokens.reshape(b, t * k, d)
    size = torch.ones(b, t * k, 1)
    record["merge_order"], record["merge_dest"] = [], []
    for r in merge_schedule(t * k, self.context_tokens, self.merge_r):
      tokens, size, order, dest = bipartite_step(tokens, size, r)
      record["merge_order"].append(order)
      record["merge_dest"].append(dest)
    x = torch.cat([x, tokens], dim=1)
    return x + self.mlp(self.ln_2(x))


class TCTransformer(nn.Module):

  def __init__(self, width, layers, heads, tc):
    super().__init__()
    self.resblocks = nn.ModuleList([
        TCAttentionBlock(width, heads, i, tc.seed_ratio, tc.context_tokens, tc.merge_r)
        for i in range(layers)])


class TCVisionTransformer(nn.Module):

  def __init__(self, v, output_dim, tc):
    super().__init__()
    self.conv1 = nn.Conv2d(3, v.width, v.patch_size, stride=v.patch_size, bias=False)
    self.class_embedding = nn.Parameter(torch.zeros(v.width))
    self.positional_embedding = nn.Parameter(
        torch.zeros((v.image_size // v.patch_size) ** 2 + 1, v.width))
    self.ln_pre = nn.LayerNorm(v.width)
    self.transformer = TCTransformer(v.width, v.layers, v.heads, tc)
    self.ln_post = nn.LayerNorm(v.width)
    self.proj = nn.Parameter(torch.zeros(v.width, output_dim))

  def forward(self, frames, records):  # (B, T, 3, H, W)
    b, t = frames.shape[:2]
    x = self.conv1(frames.flatten(0, 1)).flatten(2).transpose(1, 2)
    x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
    x = x + self.positional_embedding
    n, d = x.shape[1], x.shape[2]
    x = self.ln_pre(x.reshape(b, t * n, d))
    for block in self.transformer.resblocks:
      records.append({})
      x = block(x, t, n, records[-1])
    x = self.ln_post(x) @ self.proj
    cls = x[:, :t * n].reshape(b, t, n, -1)[:, :, 0]
    return cls, x[:, t * n:]


class VPLayer(nn.Module):
  """The prompt generation layer: ctx attends to the video's context tokens."""

  def __init__(self, width, heads):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, heads, kdim=width, vdim=width)
    self.ln_1 = nn.LayerNorm(width)
    self.ln_1_kv = nn.LayerNorm(width)
    self.mlp = nn.Sequential(OrderedDict([
        ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
        ("c_proj", nn.Linear(4 * width, width))]))
    self.ln_2 = nn.LayerNorm(width)

  def forward(self, ctx, video):  # (n, C, W), (K, C, W)
    kv = self.ln_1_kv(video)
    ctx = ctx + self.attn(self.ln_1(ctx), kv, kv, need_weights=False)[0]
    return ctx + self.mlp(self.ln_2(ctx))


class VPTextEncoder(nn.Module):

  def __init__(self, m):
    super().__init__()
    t = m.text
    self.transformer = Transformer(t.width, t.layers, t.heads, causal=True)
    self.positional_embedding = nn.Parameter(torch.zeros(t.max_length, t.width))
    self.ln_final = nn.LayerNorm(t.width)
    self.text_projection = nn.Parameter(torch.zeros(t.width, m.embed_dim))
    self.prompt_generation_layer = nn.ModuleList([VPLayer(t.width, t.heads)])
    self.vp_index = m.vp_index % t.layers
    self.n_ctx = m.n_ctx

  def forward(self, prompts, tokens, video):  # (C, L, W), (C, L), (K, E)
    x = (prompts + self.positional_embedding[:prompts.shape[1]]).permute(1, 0, 2)
    for i, block in enumerate(self.transformer.resblocks):
      if i == self.vp_index:
        ctx = self.prompt_generation_layer[0](
            x[1:1 + self.n_ctx], video[:, None].expand(-1, x.shape[1], -1))
        x = torch.cat([x[:1], ctx, x[1 + self.n_ctx:]], dim=0)
      x = block(x)
    x = self.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


class VPPromptLearner(nn.Module):

  def __init__(self, n_ctx, width, embedded):  # embedded (C, L, W): the prompts' embeddings
    super().__init__()
    self.ctx = nn.Parameter(torch.zeros(n_ctx, width))
    self.register_buffer("token_prefix", embedded[:, :1].clone())
    self.register_buffer("token_suffix", embedded[:, 1 + n_ctx:].clone())

  def forward(self):
    c = self.token_prefix.shape[0]
    return torch.cat([self.token_prefix, self.ctx.expand(c, -1, -1), self.token_suffix], dim=1)


class TCCLIP(nn.Module):
  """Upstream's module tree: prompt_learner, image_encoder, text_encoder, logit_scale."""

  def __init__(self, m, tokens: np.ndarray, with_token_embedding: bool = True):
    super().__init__()
    token_embedding = nn.Embedding(m.text.vocab_size, m.text.width)
    self._table = [token_embedding]   # a list: not registered unless asked for below
    self.tokenized = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
      embedded = token_embedding(self.tokenized)
    self.prompt_learner = VPPromptLearner(m.n_ctx, m.text.width, embedded)
    self.image_encoder = TCVisionTransformer(m.vision, m.embed_dim, m.tc)
    self.text_encoder = VPTextEncoder(m)
    self.logit_scale = nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))
    if with_token_embedding:   # CLIP's table (not in TC-CLIP's own state_dict)
      self.token_embedding = token_embedding
    self.decisions: list[dict] = []

  def rebuild_prompts(self, generator: torch.Generator) -> None:
    """Random token embeddings, and the prompt buffers embedded with them."""
    table = self._table[0].weight
    with torch.no_grad():
      table.copy_(0.5 * torch.randn(table.shape, generator=generator))
      embedded = self._table[0](self.tokenized)
      n = self.prompt_learner.ctx.shape[0]
      self.prompt_learner.token_prefix.copy_(embedded[:, :1])
      self.prompt_learner.token_suffix.copy_(embedded[:, 1 + n:])

  def forward(self, x):  # (B, T*3, H, W) ImageNet-normalised
    b, _, h, w = x.shape
    self.decisions = []
    cls, context = self.image_encoder(x.reshape(b, -1, 3, h, w), self.decisions)
    video = cls.mean(dim=1)
    video = video / video.norm(dim=-1, keepdim=True)
    prompts = self.prompt_learner()
    logits = []
    for i in range(b):   # the text tower once per video, as upstream
      text = self.text_encoder(prompts, self.tokenized, context[i])
      text = text / text.norm(dim=-1, keepdim=True)
      logits.append(self.logit_scale.exp() * video[i] @ text.t())
    return torch.stack(logits)


def prompt_texts(m) -> list[str]:
  """TC-CLIP's prompt learner: a space before each capital, "_" -> " ", the template."""
  names = [re.sub("([A-Z])", r" \1", n).strip().replace("_", " ") for n in m.class_names]
  return [m.prompt.replace("{}", n) for n in names]


def jax_decisions(ref: TCCLIP) -> dict:
  """`ref.decisions` of its last forward in the form of vidjax's `decisions=`."""
  return {f"resblocks_{i}": {
      "seeds": (rec["seeds"].numpy().astype(np.int32),),
      "merge_order": tuple(o.numpy().astype(np.int32) for o in rec["merge_order"]),
      "merge_dest": tuple(d.numpy().astype(np.int32) for d in rec["merge_dest"])}
      for i, rec in enumerate(ref.decisions)}


def tc_clip(config, clip_array, seed: int, with_token_embedding: bool = True) -> TCCLIP:
  """The reference of `config.model` (a `tc_clip` model) with random weights, eval mode."""
  del clip_array
  from vidjax.models import resolve_model_config  # pylint: disable=import-outside-toplevel
  m = resolve_model_config(config.model)
  generator = torch.Generator().manual_seed(seed)
  tokens = tokenize(prompt_texts(m), m.context_length)
  model = TCCLIP(m, tokens, with_token_embedding)
  random_clip_weights(model, generator)
  model.rebuild_prompts(generator)
  return model.eval()
