"""TC-CLIP's image tower: temporal contextualization (reference/tcclip.md 2).

Every block of `TCVisionTransformer` is a `TCBlock`. The frames of one video form one
sequence [B, T*N, D] (frame-major, N = 1 + patches). Per block:

  1. attention per frame: a frame's N tokens are the queries; its keys and values are its
     own N tokens and the video's K context tokens of the previous block, with a learned
     per-head bias (`attn/local_global_bias_table` [H, 1, 2]: [.., 0] on the local keys,
     [.., 1] on the context keys). Block 0 has neither: plain per-frame CLIP attention.
     The incoming context tokens leave the residual stream here.
  2. seed tokens: per frame, the `int(P * seed_ratio)` patches that the class token attends
     to most (post-softmax, mean over heads), in descending order, taken from the residual
     stream after attention and before the MLP; frames concatenated [B, T*k, D].
  3. context tokens: ToMe bipartite soft matching (metric: the tokens themselves; even
     positions merge into odd ones, size-weighted means) in the steps of `merge_schedule`,
     down to K tokens.
  4. the MLP runs on the frames' tokens and the new context tokens.

Discrete choices: recording and forcing
---------------------------------------
The choices (seed indices, each merge step's order and destinations) are near-ties for
float rounding (reference/tcclip.md 2.6). Applied with `mutable=["intermediates"]`, each
block sows, under `intermediates/visual/resblocks_{i}`:

  seeds         ([B, T, k] int32,)         the seed patches (0-based among the P patches),
                                           in the order used
  seed_scores   ([B, T, P] float32,)       the scores they were chosen by
  merge_order   per step ([B, ta] int32)   the even ("A") tokens by descending best
                                           similarity; the first r merge, the rest stay
  merge_dest    per step ([B, ta] int32)   each A token's destination among the odd ("B")
                                           tokens
  merge_scores  per step ([B, ta, tb] f32) the cosine similarities they were chosen by

Forcing: pass that dict (`intermediates["visual"]`, or any dict holding at least
`seeds`, `merge_order` and `merge_dest` per block, e.g. `decisions_of(...)` of it) back as
`decisions=` to the model's `__call__` (or `TCVisionTransformer.encode_video`); the blocks
then use those choices instead of their own and sow them again, with their own scores
beside them:

    logits, state = module.apply(variables, clips, mutable=["intermediates"])
    choices = decisions_of(state["intermediates"]["visual"])
    logits, state = module.apply(variables, clips, decisions=choices,
                                 mutable=["intermediates"])
    decision_shortfalls(state["intermediates"]["visual"])   # {"resblocks_0": 0.0, ...}

`decision_shortfalls(intermediates)` measures, per block, how far below the model's own
best choice each used choice scores: 0 when the model would have chosen the same, small
when a forced choice is a near-tie.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidjax.models.clip.encoders import VisionTransformer
from vidjax.models.clip.transformer import Mlp, dot_product_attention, layer_norm
from vidjax.models.layers import Dtype

Decisions = Mapping[str, Any]


def merge_schedule(start: int, final: int, r: int) -> list[int]:
  """Tokens merged per step, `start` seeds down to `final` context tokens, at most `r`
  (and half the tokens) a step: upstream's `schedule_r_constant`. 928, 96, 100 ->
  [100] * 8 + [32]; fewer seeds than `final` -> [] (all seeds are context tokens)."""
  if final < 1 or r < 1:
    raise ValueError(f"TC-CLIP: context tokens ({final}) and merges per step ({r}) must be "
                     "positive")
  steps, count = [], start
  for _ in range(max(0, (start - final) // r)):
    step = min(r, count // 2)
    steps.append(step)
    count -= step
  while count > final:
    step = min(count - final, count // 2)
    steps.append(step)
    count -= step
  return steps


def seed_count(patches: int, seed_ratio: float) -> int:
  """Seeds per frame: int(P * ratio), 58 for 196 patches at 0.3."""
  return int(patches * seed_ratio)


def _gather(x: jax.Array, idx: jax.Array) -> jax.Array:
  """x [B, n, C], idx [B, m] -> [B, m, C]."""
  return jnp.take_along_axis(x, idx[..., None], axis=1)


def bipartite_merge(x: jax.Array, size: jax.Array, r: int,
                    forced: Optional[tuple[jax.Array, jax.Array]] = None
                    ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """One ToMe step (reference/tcclip.md 2.2 c): x [B, t, D], size [B, t, 1] (float32)
  -> x [B, t - r, D], size, and the step's choices and scores.

  The output is [unmerged A tokens in descending-similarity order] ++ [all B tokens]."""
  metric = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  scores = jnp.einsum("bid,bjd->bij", metric[:, ::2], metric[:, 1::2])
  if forced is None:
    dest = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    # A stable sort of the negated maxima: descending, ties in index order.
    order = jnp.argsort(-jnp.max(scores, axis=-1), axis=-1, stable=True).astype(jnp.int32)
  else:
    order, dest = (jnp.asarray(a, jnp.int32) for a in forced)
  src, unm = order[:, :r], order[:, r:]
  src_dest = jnp.take_along_axis(dest, src, axis=1)
  rows = jnp.arange(x.shape[0])[:, None]

  def merge(v):
    even, odd = v[:, ::2], v[:, 1::2]
    odd = odd.at[rows, src_dest].add(_gather(even, src))
    return jnp.concatenate([_gather(even, unm), odd], axis=1)

  weighted, size = merge(x * size), merge(size)
  return weighted / size, size, {"merge_order": order, "merge_dest": dest,
                                 "merge_scores": scores}


def _forced(forced: Decisions, name: str, step: int, block: int,
            shape: tuple[int, ...]) -> Any:
  """forced[name][step], checked to have `shape` (a replay of another clip or model size
  would otherwise fail deep inside a gather)."""
  try:
    value = forced[name][step]
  except (KeyError, IndexError, TypeError):
    raise ValueError(f"decisions for resblocks_{block}: no {name}[{step}]; expected what "
                     "the model sows in 'intermediates' (see vidjax/models/clip/tc_vision.py)"
                     ) from None
  if tuple(np.shape(value)) != shape:
    raise ValueError(f"decisions for resblocks_{block}: {name}[{step}] has shape "
                     f"{tuple(np.shape(value))}, expected {shape}")
  return value


class TCAttention(nn.Module):
  """Per-frame attention with the video's context tokens as extra keys and values.

  q/k/v/out projections are separate Linear layers (upstream cuts CLIP's packed in_proj).
  """
  width: int
  heads: int
  use_context: bool   # blocks 1..: context keys and the local-global bias table
  out_init_std: Optional[float] = None
  dtype: Dtype = jnp.float32

  def setup(self):
    std = self.width ** -0.5
    dense = lambda s: nn.Dense(self.width, dtype=self.dtype,  # noqa: E731
                               kernel_init=nn.initializers.normal(s))
    self.q_proj, self.k_proj, self.v_proj = dense(std), dense(std), dense(std)
    self.out_proj = dense(self.out_init_std or std)
    if self.use_context:
      self.local_global_bias_table = self.param(
          "local_global_bias_table", nn.initializers.truncated_normal(0.02),
          (self.heads, 1, 2))

  def __call__(self, h: jax.Array, context: Optional[jax.Array],
               num_frames: int) -> tuple[jax.Array, jax.Array]:
    """h [B, T*N, W] (normalised), context [B, K, W] (normalised) or None
    -> (out [B, T*N, W], post-softmax weights [B*T, H, N, N (+K)])."""
    b, tn, w = h.shape
    n = tn // num_frames
    split = lambda x: x.reshape(x.shape[:-1] + (self.heads, w // self.heads))  # noqa: E731
    frames = h.reshape(b * num_frames, n, w)
    q, k, v = split(self.q_proj(frames)), split(self.k_proj(frames)), split(self.v_proj(frames))
    bias = None
    if self.use_context:
      if context is None:
        raise ValueError("TC block after the first needs the previous block's context tokens")
      kc, vc = (jnp.repeat(split(p(context)), num_frames, axis=0)
                for p in (self.k_proj, self.v_proj))
      k, v = jnp.concatenate([k, kc], axis=1), jnp.concatenate([v, vc], axis=1)
      table = self.local_global_bias_table.astype(jnp.float32)   # [H, 1, 2]
      bias = jnp.concatenate([jnp.broadcast_to(table[:, :, :1], (self.heads, 1, n)),
                              jnp.broadcast_to(table[:, :, 1:], (self.heads, 1,
                                                                 context.shape[1]))], axis=-1)
    out, weights = dot_product_attention(q, k, v, bias)
    return self.out_proj(out.reshape(b, tn, w)), weights


class TCBlock(nn.Module):
  """One TC block: x [B, T*N, W], context [B, K, W] or None (block 0) -> the same with
  new context tokens (see the module docstring)."""
  width: int
  heads: int
  layers: int
  index: int
  seed_ratio: float = 0.3
  context_tokens: int = 96
  merge_r: int = 100
  dtype: Dtype = jnp.float32

  def setup(self):
    proj_std = self.width ** -0.5 * (2 * self.layers) ** -0.5
    self.ln_1 = layer_norm()
    self.attn = TCAttention(self.width, self.heads, use_context=self.index > 0,
                            out_init_std=proj_std, dtype=self.dtype)
    self.ln_2 = layer_norm()
    self.mlp = Mlp(self.width, dtype=self.dtype, proj_std=proj_std)

  def __call__(self, x: jax.Array, context: Optional[jax.Array], num_frames: int,
               forced: Optional[Decisions] = None) -> tuple[jax.Array, jax.Array]:
    b, tn, w = x.shape
    n = tn // num_frames
    patches = n - 1
    ln = lambda m, v: m(v).astype(x.dtype)  # noqa: E731  (LN in float32, as CLIP)
    attn_out, weights = self.attn(ln(self.ln_1, x),
                                  None if context is None else ln(self.ln_1, context),
                                  num_frames)
    x = x + attn_out

    # Seeds: the class token's attention to the patches, mean over heads.
    k = seed_count(patches, self.seed_ratio)
    scores = weights[:, :, 0, 1:n].mean(axis=1).reshape(b, num_frames, patches)
    if forced is None:
      seeds = jax.lax.top_k(scores, k)[1].astype(jnp.int32)
    else:
      seeds = jnp.asarray(_forced(forced, "seeds", 0, self.index, (b, num_frames, k)),
                          jnp.int32)
    self.sow("intermediates", "seeds", seeds)
    self.sow("intermediates", "seed_scores", scores)
    tokens = x.reshape(b, num_frames, n, w)[:, :, 1:]
    tokens = jnp.take_along_axis(tokens, seeds[..., None], axis=2)
    tokens = tokens.reshape(b, num_frames * k, w).astype(jnp.float32)

    size = jnp.ones(tokens.shape[:2] + (1,), jnp.float32)
    count = tokens.shape[1]
    for step, r in enumerate(merge_schedule(count, self.context_tokens, self.merge_r)):
      shape = (b, (count + 1) // 2)   # the even ("A") tokens of this step
      count -= r
      step_forced = None if forced is None else (
          _forced(forced, "merge_order", step, self.index, shape),
          _forced(forced, "merge_dest", step, self.index, shape))
      tokens, size, record = bipartite_merge(tokens, size, r, step_forced)
      for name, value in record.items():
        self.sow("intermediates", name, value)
    context = tokens.astype(x.dtype)

    both = jnp.concatenate([x, context], axis=1)
    both = both + self.mlp(ln(self.ln_2, both))
    return both[:, :tn], both[:, tn:]


class TCVisionTransformer(VisionTransformer):
  """CLIP ViT with TC blocks: clips [B, T, S, S, 3] (normalised) -> per-frame class
  embeddings [B, T, E] and the video's context tokens [B, K, E] (both after ln_post and
  proj). The context tokens number `context_tokens`, or T * seeds when that is fewer."""
  seed_ratio: float = 0.3
  context_tokens: int = 96
  merge_r: int = 100

  def make_block(self, index: int) -> nn.Module:
    return TCBlock(self.width, self.heads, self.layers, index, seed_ratio=self.seed_ratio,
                   context_tokens=self.context_tokens, merge_r=self.merge_r, dtype=self.dtype)

  def encode_video(self, frames: jax.Array, decisions: Optional[Decisions] = None
                   ) -> tuple[jax.Array, jax.Array]:
    b, t = frames.shape[:2]
    x = self.embed(frames.reshape((b * t,) + frames.shape[2:]))   # [B*T, N, W]
    n = x.shape[1]
    if seed_count(n - 1, self.seed_ratio) < 1:
      raise ValueError(f"TC-CLIP: {n - 1} patches per frame at model.tc.seed_ratio="
                       f"{self.seed_ratio} select no seed tokens")
    x = x.reshape(b, t * n, self.width)
    context = None
    for i, block in enumerate(self.resblocks):
      forced = None if decisions is None else decisions[f"resblocks_{i}"]
      x, context = block(x, context, t, forced)
    cls = x.reshape(b, t, n, self.width)[:, :, 0]
    return self.head(cls), self.head(context)

  def __call__(self, frames: jax.Array, train: bool = False) -> jax.Array:
    """frames [B, T, S, S, 3] -> per-frame embeddings [B, T, E]."""
    del train
    return self.encode_video(frames)[0]


# ------------------------------------------------------------------------ decision margins
def decisions_of(intermediates: Mapping[str, Any]) -> dict[str, dict[str, tuple]]:
  """The forceable part of a sown `intermediates["visual"]` dict (numpy)."""
  return {block: {name: tuple(np.asarray(a) for a in record[name])
                  for name in ("seeds", "merge_order", "merge_dest")}
          for block, record in intermediates.items() if block.startswith("resblocks_")}


def decision_shortfalls(intermediates: Mapping[str, Any]) -> dict[str, float]:
  """Per block of a sown `intermediates["visual"]` dict: the largest amount by which a
  used choice scores below the model's own best choice at that point (0: identical).

  Seeds: the used seeds' scores against the sorted top-k scores, rank by rank. Merges:
  each A token's destination against its best similarity, and the order's maxima against
  the sorted maxima, rank by rank."""
  out = {}
  for block, rec in intermediates.items():
    if not block.startswith("resblocks_"):
      continue
    scores = np.asarray(rec["seed_scores"][0], np.float64)
    seeds = np.asarray(rec["seeds"][0])
    used = np.take_along_axis(scores, seeds, axis=-1)
    best = -np.sort(-scores, axis=-1)[..., :seeds.shape[-1]]
    worst = float(np.max(best - used))
    for order, dest, sim in zip(rec.get("merge_order", ()), rec.get("merge_dest", ()),
                                rec.get("merge_scores", ())):
      sim = np.asarray(sim, np.float64)
      node_max = sim.max(axis=-1)
      chosen = np.take_along_axis(sim, np.asarray(dest)[..., None], axis=-1)[..., 0]
      worst = max(worst, float(np.max(node_max - chosen)))
      ordered = np.take_along_axis(node_max, np.asarray(order), axis=-1)
      worst = max(worst, float(np.max(np.abs(-np.sort(-node_max, axis=-1) - ordered))))
    out[block] = worst
  return out
