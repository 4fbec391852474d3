"""CLIP's image and text encoders (OpenAI CLIP, reference/tcclip.md 2 and 3.3).

Names mirror OpenAI's state_dict with the `transformer.` level dropped
(`visual.transformer.resblocks.3.*` is `visual/resblocks_3/*`). Both towers build their
blocks through `Tower.make_block(index)`, so a subclass can replace blocks (TC-CLIP's TC
blocks) and keep the rest; the forward is cut into steps a subclass can reuse:

  VisionTransformer: embed (patches, class token, positions, ln_pre) -> resblocks ->
    head (ln_post of the class token, @ proj).
  TextTransformer: embed (token embedding + positions) -> run_blocks (causal) ->
    head (ln_final at the end token, @ text_projection).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models.clip.transformer import ResidualAttentionBlock, causal_mask, layer_norm
from vidjax.models.layers import Dtype


class Tower(nn.Module):
  """What both towers share: `layers` residual attention blocks of `width` channels and
  `heads` heads (named resblocks_{index}) and a projection to `output_dim`, the joint
  embedding width. The fields are keyword-only (defaults: CLIP's text tower); a tower
  lists its own fields first."""
  width: int = dataclasses.field(default=512, kw_only=True)
  layers: int = dataclasses.field(default=12, kw_only=True)
  heads: int = dataclasses.field(default=8, kw_only=True)
  output_dim: int = dataclasses.field(default=512, kw_only=True)
  dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)

  def make_block(self, index: int) -> nn.Module:
    """Block `index` of the tower (named resblocks_{index}); subclasses may override."""
    del index
    return ResidualAttentionBlock(self.width, self.heads, self.layers, dtype=self.dtype)


class VisionTransformer(Tower):
  """CLIP ViT: frames [N, H, W, 3] (normalised) -> embeddings [N, output_dim].

  Attributes:
    image_size: H = W the positional embedding is built for ((S / patch)^2 + 1 rows).
    patch_size: 16 for ViT-B/16.
    Tower's fields: ViT-B/16 is width 768, 12 layers, 12 heads (`proj` is [width,
      output_dim]).
  """
  image_size: int = 224
  patch_size: int = 16
  width: int = dataclasses.field(default=768, kw_only=True)
  heads: int = dataclasses.field(default=12, kw_only=True)

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size

  def setup(self):
    if self.image_size % self.patch_size:
      raise ValueError(f"CLIP ViT: image size {self.image_size} is not a multiple of the "
                       f"patch size {self.patch_size}")
    scale = self.width ** -0.5
    self.conv1 = nn.Conv(self.width, (self.patch_size,) * 2, strides=(self.patch_size,) * 2,
                         padding="VALID", use_bias=False, dtype=self.dtype)
    self.class_embedding = self.param("class_embedding", nn.initializers.normal(scale),
                                      (self.width,))
    self.positional_embedding = self.param(
        "positional_embedding", nn.initializers.normal(scale),
        (self.grid * self.grid + 1, self.width))
    self.ln_pre = layer_norm()
    self.resblocks = [self.make_block(i) for i in range(self.layers)]
    self.ln_post = layer_norm()
    self.proj = self.param("proj", nn.initializers.normal(scale),
                           (self.width, self.output_dim))

  def embed(self, frames: jax.Array) -> jax.Array:
    """frames [N, S, S, 3] -> tokens [N, 1 + (S/patch)^2, width]: the class token first,
    then the patches row by row, positions added, ln_pre applied."""
    n, h, w = frames.shape[:3]
    if (h, w) != (self.image_size, self.image_size):
      raise ValueError(f"CLIP ViT built for {self.image_size}x{self.image_size} frames "
                       f"(model.vision.image_size) got {h}x{w}")
    x = self.conv1(frames.astype(self.dtype))
    x = x.reshape(n, -1, self.width)
    cls = jnp.broadcast_to(self.class_embedding.astype(x.dtype), (n, 1, self.width))
    x = jnp.concatenate([cls, x], axis=1) + self.positional_embedding.astype(x.dtype)
    return self.ln_pre(x).astype(self.dtype)

  def head(self, tokens: jax.Array) -> jax.Array:
    """ln_post, then @ proj: [..., width] -> [..., output_dim] (any tokens: TC-CLIP
    projects its context tokens too)."""
    return self.ln_post(tokens).astype(self.dtype) @ self.proj.astype(self.dtype)

  def __call__(self, frames: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = self.embed(frames)
    for block in self.resblocks:
      x = block(x)
    return self.head(x[:, 0])


class TextTransformer(Tower):
  """CLIP's text tower: token ids [C, L] -> embeddings [C, output_dim].

  Attributes:
    vocab_size: 49408 (vidjax.text's BPE).
    max_length: rows of the positional embedding (77); prompts of L <= max_length use
      the first L rows.
    Tower's fields: CLIP's text tower is width 512, 12 layers, 8 heads
      (`text_projection` is [width, output_dim]).
  """
  vocab_size: int = 49408
  max_length: int = 77

  def setup(self):
    self.token_embedding = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                                    embedding_init=nn.initializers.normal(0.02))
    self.positional_embedding = self.param("positional_embedding",
                                           nn.initializers.normal(0.01),
                                           (self.max_length, self.width))
    self.resblocks = [self.make_block(i) for i in range(self.layers)]
    self.ln_final = layer_norm()
    self.text_projection = self.param("text_projection",
                                      nn.initializers.normal(self.width ** -0.5),
                                      (self.width, self.output_dim))

  def embed(self, tokens: jax.Array) -> jax.Array:
    """ids [C, L] -> token embeddings [C, L, width], positions not yet added."""
    if tokens.shape[-1] > self.max_length:
      raise ValueError(f"CLIP text: {tokens.shape[-1]} tokens per prompt, more than the "
                       f"{self.max_length} positions of the text tower")
    return self.token_embedding(tokens)

  def run_blocks(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """The blocks over x [C, L, width] with the causal mask [L, L]; a subclass may act
    between blocks (TC-CLIP's prompt generation before the last one)."""
    for block in self.resblocks:
      x = block(x, mask)
    return x

  def head(self, x: jax.Array, tokens: jax.Array) -> jax.Array:
    """ln_final, the hidden state at the end token (the argmax id), @ text_projection."""
    x = self.ln_final(x).astype(self.dtype)
    eot = jnp.argmax(tokens, axis=-1)
    x = jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]
    return x @ self.text_projection.astype(self.dtype)

  def encode_embeddings(self, x: jax.Array, tokens: jax.Array) -> jax.Array:
    """Prompt embeddings [C, L, width] (e.g. with learned context vectors spliced in) and
    their ids [C, L] (for the end-token position) -> [C, output_dim]."""
    length = x.shape[1]
    x = x + self.positional_embedding[:length].astype(x.dtype)
    x = self.run_blocks(x.astype(self.dtype), causal_mask(length))
    return self.head(x, tokens)

  def __call__(self, tokens: jax.Array, embeddings: Optional[jax.Array] = None) -> jax.Array:
    return self.encode_embeddings(self.embed(tokens) if embeddings is None else embeddings,
                                  tokens)
