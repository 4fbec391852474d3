"""Pure train and eval steps; the trainer jits them with shardings and donation."""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vidjax.train import metrics as metrics_lib


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data iterator position."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self) -> dict:
    variables = {"params": self.params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """[B] per-example softmax cross-entropy of logits [B, K] and int labels [B]."""
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               model: nn.Module, tx: optax.GradientTransformation,
               schedule: Callable[[jax.Array], jax.Array],
               label_smoothing: float = 0.0
               ) -> tuple[TrainState, metrics_lib.TrainMetrics, jax.Array]:
  """One optimiser step on a global batch.

  Args:
    batch: "clip" [B, T, H, W, 3] uint8, "label" [B] int32.
    rng: base key; dropout uses fold_in(rng, step) so a resumed run draws the same masks.

  Returns:
    The new state, the step's metrics, and a bool scalar: loss, gradients and new
    parameters are all finite (the trainer stops before saving a state that is not).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    variables = {"params": params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    logits, updates = model.apply(variables, batch["clip"], train=True,
                                  mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
    return loss, (logits, updates.get("batch_stats", state.batch_stats))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(params))
  step_metrics = metrics_lib.TrainMetrics.single_from_model_output(
      loss=loss, scores=logits, labels=batch["label"], grad_norm=grad_norm,
      learning_rate=schedule(state.step))
  return new_state, step_metrics, finite


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
              fusion: str = "mean_softmax") -> metrics_lib.EvalMetrics:
  """Metrics of one eval batch; padded rows (mask 0) count as nothing.

  Args:
    batch: "clip" [B, T, H, W, 3] or multi-view [B, V, T, H, W, 3]; "label" [B];
      "mask" [B] (1 for real examples).
  """
  clips = batch["clip"]
  views = 1
  if clips.ndim == 6:
    views = clips.shape[1]
    clips = clips.reshape((-1,) + clips.shape[2:])
  logits = model.apply(state.variables(), clips, train=False)
  logits = logits.reshape((-1, views, logits.shape[-1])).astype(jnp.float32)
  scores = metrics_lib.fuse_views(logits, fusion) if views > 1 else logits[:, 0]
  # The loss is that of the view-averaged logits, comparable across view counts.
  loss = cross_entropy(logits.mean(axis=1), batch["label"])
  return metrics_lib.EvalMetrics.single_from_model_output(
      loss=loss, scores=scores, labels=batch["label"], mask=batch["mask"])
