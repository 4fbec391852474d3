"""clu metrics for training and evaluation, and multi-view score fusion.

Every metric is a (sum, count) pair with a per-example mask, so padded examples of a
partial last eval batch count as nothing and the result is exact (Scenic's habit).
"""

# No `from __future__ import annotations`: clu builds Collections from real annotations.
from typing import Any

import flax
import jax
import jax.numpy as jnp
from clu import metrics as clu_metrics

FUSIONS = ("mean_softmax", "mean_logits", "max_softmax")


def fuse_views(logits: jax.Array, method: str) -> jax.Array:
  """Fuses per-view predictions into one score per clip.

  Args:
    logits: [B, V, K] logits of V views of each clip.
    method: "mean_softmax" (MMAction2 `average_clips='prob'`), "mean_logits"
      (`'score'`) or "max_softmax" (TCPNet's 30-view protocol).

  Returns:
    [B, K] scores; argmax and top-k of these rank the classes.
  """
  if method == "mean_logits":
    return logits.mean(axis=1)
  if method == "mean_softmax":
    return jax.nn.softmax(logits, axis=-1).mean(axis=1)
  if method == "max_softmax":
    return jax.nn.softmax(logits, axis=-1).max(axis=1)
  raise ValueError(f"eval.fusion={method!r} is not known; expected one of {FUSIONS}.")


def _topk_correct(scores: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """[B] float 1.0 where the label is among the k highest scores.

  Ties rank the lower class index first (as argmax does), and a non-finite label score is
  never correct, so a diverged model cannot score 100% on constant or NaN outputs.
  """
  k = min(k, scores.shape[-1])
  label_score = jnp.take_along_axis(scores, labels[:, None], axis=-1)
  classes = jnp.arange(scores.shape[-1])[None, :]
  ahead = (scores > label_score) | ((scores == label_score) & (classes < labels[:, None]))
  rank = ahead.sum(axis=-1)
  return ((rank < k) & jnp.isfinite(label_score[:, 0])).astype(jnp.float32)


def _top_k_accuracy(k: int) -> type:
  """A clu Average of "label among the k highest `scores` [B, K]" against `labels` [B]."""

  @flax.struct.dataclass
  class TopK(clu_metrics.Average):

    @classmethod
    def from_model_output(cls, *, scores: jax.Array, labels: jax.Array,
                          mask: jax.Array | None = None, **_) -> "TopK":
      metric = clu_metrics.Average.from_model_output(
          _topk_correct(scores, labels, k), mask=mask)
      return cls(**vars(metric))

  TopK.__name__ = TopK.__qualname__ = f"Top{k}"
  return TopK


Top1 = _top_k_accuracy(1)
Top5 = _top_k_accuracy(5)


@flax.struct.dataclass
class MeanClassAccuracy(clu_metrics.Metric):
  """Mean over classes of per-class top-1 accuracy; classes never seen are left out."""

  correct: jax.Array  # [K]
  count: jax.Array  # [K]

  @classmethod
  def from_model_output(cls, *, scores: jax.Array, labels: jax.Array,
                        mask: jax.Array | None = None, **_) -> "MeanClassAccuracy":
    num_classes = scores.shape[-1]
    weight = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * weight[:, None]
    hit = _topk_correct(scores, labels, 1)
    return cls(correct=(one_hot * hit[:, None]).sum(0), count=one_hot.sum(0))

  def merge(self, other: "MeanClassAccuracy") -> "MeanClassAccuracy":
    return type(self)(correct=self.correct + other.correct, count=self.count + other.count)

  def compute(self) -> jax.Array:
    seen = self.count > 0
    per_class = jnp.where(seen, self.correct / jnp.maximum(self.count, 1), 0.0)
    return per_class.sum() / jnp.maximum(seen.sum(), 1)


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: clu_metrics.Average.from_output("loss")
  top1: Top1
  grad_norm: clu_metrics.Average.from_output("grad_norm")
  learning_rate: clu_metrics.LastValue.from_output("learning_rate")


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: clu_metrics.Average.from_output("loss")
  top1: Top1
  top5: Top5
  mean_class_accuracy: MeanClassAccuracy


def to_floats(computed: dict[str, Any], prefix: str) -> dict[str, float]:
  """`Collection.compute()` output as plain floats with a `prefix/` (for writers)."""
  return {f"{prefix}/{k}": float(v) for k, v in computed.items()}
