"""Eval metrics are exact over padded batches; view fusion matches its definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidjax.train import metrics


def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_fuse_views_matches_definitions():
  logits = np.random.default_rng(0).normal(size=(3, 4, 7)).astype(np.float32)
  np.testing.assert_allclose(metrics.fuse_views(logits, "mean_logits"), logits.mean(1), rtol=1e-6)
  np.testing.assert_allclose(metrics.fuse_views(logits, "mean_softmax"),
                             _np_softmax(logits).mean(1), rtol=1e-5)
  np.testing.assert_allclose(metrics.fuse_views(logits, "max_softmax"),
                             _np_softmax(logits).max(1), rtol=1e-5)
  with pytest.raises(ValueError, match="eval.fusion='vote'.*mean_softmax"):
    metrics.fuse_views(logits, "vote")


def _numpy_reference(scores, labels):
  order = np.argsort(-scores, axis=1)
  top1 = (order[:, 0] == labels).mean()
  top5 = np.mean([labels[i] in order[i, :5] for i in range(len(labels))])
  per_class = [(order[labels == c, 0] == c).mean() for c in np.unique(labels)]
  return top1, top5, np.mean(per_class)


def test_padded_batches_are_exact():
  rng = np.random.default_rng(1)
  n, k, batch = 23, 9, 8
  scores = rng.normal(size=(n, k)).astype(np.float32)
  labels = rng.integers(0, k - 2, size=n).astype(np.int32)  # two classes never occur
  losses = rng.uniform(size=n).astype(np.float32)
  total = None
  padded = -(-n // batch) * batch
  for start in range(0, padded, batch):
    idx = np.arange(start, start + batch)
    mask = idx < n
    idx = np.where(mask, idx, 0)  # padding repeats example 0, which must not count
    m = metrics.EvalMetrics.single_from_model_output(
        loss=jnp.asarray(losses[idx]), scores=jnp.asarray(scores[idx]),
        labels=jnp.asarray(labels[idx]), mask=jnp.asarray(mask))
    total = m if total is None else total.merge(m)
  result = total.compute()
  top1, top5, mca = _numpy_reference(scores, labels)
  assert float(result["top1"]) == pytest.approx(top1, abs=1e-6)
  assert float(result["top5"]) == pytest.approx(top5, abs=1e-6)
  assert float(result["mean_class_accuracy"]) == pytest.approx(mca, abs=1e-6)
  assert float(result["loss"]) == pytest.approx(losses.mean(), rel=1e-6)


def test_topk_with_fewer_classes_than_k():
  scores = jnp.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
  labels = jnp.array([2, 1], jnp.int32)
  m = metrics.Top5.from_model_output(scores=scores, labels=labels)
  assert float(m.compute()) == 1.0
  m = metrics.Top1.from_model_output(scores=scores, labels=labels)
  assert float(m.compute()) == 0.0


def test_metrics_jit_and_merge_like_eager():
  rng = np.random.default_rng(2)
  scores = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 5, 6), jnp.int32)
  mask = jnp.asarray([1, 1, 1, 1, 0, 0], bool)
  f = jax.jit(lambda s, l, m: metrics.EvalMetrics.single_from_model_output(
      loss=jnp.zeros(6), scores=s, labels=l, mask=m))
  jitted = f(scores, labels, mask).compute()
  eager = metrics.EvalMetrics.single_from_model_output(
      loss=jnp.zeros(4), scores=scores[:4], labels=labels[:4]).compute()
  for key in ("top1", "top5", "mean_class_accuracy"):
    assert float(jitted[key]) == pytest.approx(float(eager[key]))


def test_ties_and_nan_are_not_free_accuracy():
  labels = jnp.array([0, 3, 5], jnp.int32)
  constant = jnp.zeros((3, 6))
  nan = jnp.full((3, 6), jnp.nan)
  for scores in (constant, nan):
    m = metrics.EvalMetrics.single_from_model_output(loss=jnp.zeros(3), scores=scores,
                                                     labels=labels).compute()
    # Constant scores: argmax picks class 0, so only the first example is right.
    expected = 1 / 3 if scores is constant else 0.0
    assert float(m["top1"]) == pytest.approx(expected)
  m = metrics.Top5.from_model_output(scores=nan, labels=labels)
  assert float(m.compute()) == 0.0
  m = metrics.Top5.from_model_output(scores=constant, labels=labels)
  assert float(m.compute()) == pytest.approx(2 / 3)  # classes 0..4 rank first on a tie
