"""TC-CLIP's text side (reference/tcclip.md 3.2, 3.3): the learnable prompt context and
the video-conditional prompting (VP) layer before the text tower's last block.

  prompts [C, L, W]: token embeddings of "a photo of a {name}." with positions 1..n_ctx
    replaced by the learned `prompt_learner/ctx` [n_ctx, W]
  blocks 0 .. vp_index-1 on [C, L, W]           (causal; the same for every video)
  VP on positions 1..n_ctx of each video's copy:  [B, C, L, W]
    c = c + MHA(q=ln_1(c), k=v=ln_1_kv(V_b)); c = c + mlp(ln_2(c))
    with V_b [K, E] the video's context tokens (after ln_post and proj)
  blocks vp_index .. on [B*C, L, W], ln_final, end token, @ text_projection -> [B, C, E]

Upstream runs the whole text tower once per video; the blocks before the VP layer do not
depend on the video (causal attention, the prompt positions before the class name), so
they run once here.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.clip.encoders import TextTransformer
from vidjax.models.clip.transformer import Mlp, causal_mask, dot_product_attention, layer_norm
from vidjax.models.layers import Dtype


class PackedInProj(nn.Module):
  """torch MultiheadAttention's packed in_proj ([q | k | v] along the output axis), applied
  one part at a time: cross-attention projects queries and keys/values from different
  inputs."""
  width: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, part: int) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.normal(self.width ** -0.5),
                        (self.width, 3 * self.width))
    bias = self.param("bias", nn.initializers.zeros, (3 * self.width,))
    cut = slice(part * self.width, (part + 1) * self.width)
    return x.astype(self.dtype) @ kernel[:, cut].astype(self.dtype) + bias[cut].astype(self.dtype)


class CrossAttention(nn.Module):
  """torch.nn.MultiheadAttention(width, heads, kdim=vdim=width) as cross-attention."""
  width: int
  heads: int
  dtype: Dtype = jnp.float32

  def setup(self):
    self.in_proj = PackedInProj(self.width, dtype=self.dtype)
    self.out_proj = nn.Dense(self.width, dtype=self.dtype,
                             kernel_init=nn.initializers.normal(self.width ** -0.5))

  def __call__(self, queries: jax.Array, memory: jax.Array) -> jax.Array:
    """queries [B, Q, W], memory [B, K, W] -> [B, Q, W]."""
    split = lambda x: x.reshape(x.shape[:-1] + (self.heads, self.width // self.heads))  # noqa: E731
    out, _ = dot_product_attention(split(self.in_proj(queries, 0)),
                                   split(self.in_proj(memory, 1)),
                                   split(self.in_proj(memory, 2)))
    return self.out_proj(out.reshape(queries.shape))


class PromptGeneration(nn.Module):
  """The VP layer: context slots [B, Q, W] attend to the video's tokens [B, K, W]."""
  width: int
  heads: int
  dtype: Dtype = jnp.float32

  def setup(self):
    self.ln_1 = layer_norm()
    self.ln_1_kv = layer_norm()
    self.attn = CrossAttention(self.width, self.heads, dtype=self.dtype)
    self.ln_2 = layer_norm()
    self.mlp = Mlp(self.width, dtype=self.dtype)

  def __call__(self, ctx: jax.Array, video: jax.Array) -> jax.Array:
    dt = ctx.dtype
    ctx = ctx + self.attn(self.ln_1(ctx).astype(dt), self.ln_1_kv(video).astype(dt))
    return ctx + self.mlp(self.ln_2(ctx).astype(dt))


class VPTextTransformer(TextTransformer):
  """CLIP's text tower with TC-CLIP's VP layer before block `vp_index` (-1: the last)."""
  vp_index: int = -1

  def setup(self):
    super().setup()
    self.prompt_generation = PromptGeneration(self.width, self.heads, dtype=self.dtype)

  @property
  def vp_block(self) -> int:
    return self.vp_index % self.layers

  def encode_video_prompts(self, prompts: jax.Array, tokens: jax.Array, video: jax.Array,
                           n_ctx: int) -> jax.Array:
    """prompts [C, L, W] (context spliced in), tokens [C, L] (end-token positions),
    video context tokens [B, K, E] -> text embeddings per video [B, C, E]."""
    if video.shape[-1] != self.width:
      raise ValueError(f"TC-CLIP's VP layer needs the joint embedding width "
                       f"({video.shape[-1]}) to equal the text width ({self.width})")
    c, length, w = prompts.shape
    b = video.shape[0]
    mask = causal_mask(length)
    x = (prompts + self.positional_embedding[:length].astype(prompts.dtype)).astype(self.dtype)
    for block in self.resblocks[:self.vp_block]:
      x = block(x, mask)
    x = jnp.broadcast_to(x, (b, c, length, w))
    slots = x[:, :, 1:1 + n_ctx].reshape(b, c * n_ctx, w)
    slots = self.prompt_generation(slots, video.astype(self.dtype))
    x = x.at[:, :, 1:1 + n_ctx].set(slots.reshape(b, c, n_ctx, w))
    x = x.reshape(b * c, length, w)
    for block in self.resblocks[self.vp_block:]:
      x = block(x, mask)
    return self.head(x, jnp.tile(tokens, (b, 1))).reshape(b, c, -1)


class PromptLearner(nn.Module):
  """The learned context vectors `ctx` [n_ctx, W], shared by all classes. Upstream starts
  them from the token embeddings of "a photo of a" (a conversion from CLIP does,
  converters/tc_clip.py); from scratch they start as CoOp's N(0, 0.02)."""
  n_ctx: int
  width: int

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param("ctx", nn.initializers.normal(0.02), (self.n_ctx, self.width))


def splice_context(embeddings: jax.Array, ctx: jax.Array) -> jax.Array:
  """embeddings [C, L, W], ctx [n, W] -> positions 1..n replaced by ctx."""
  n = ctx.shape[0]
  ctx = jnp.broadcast_to(ctx.astype(embeddings.dtype), (embeddings.shape[0],) + ctx.shape)
  return jnp.concatenate([embeddings[:, :1], ctx, embeddings[:, 1 + n:]], axis=1)


__all__ = ["PromptGeneration", "PromptLearner", "VPTextTransformer", "splice_context"]
