"""Pure train and eval steps; the trainer jits them with shardings and donation.

A head or neck may add auxiliary losses to training, in two collections:
  "losses": `self.sow("losses", name, scalar)`, a loss that needs no labels; the train
    step adds every value sown there to the cross-entropy.
  "aux_logits": `self.sow("aux_logits", name, {"logits": [B, K], "weight": scalar})`, an
    auxiliary classifier (TPN's aux head); the train step adds weight x its
    cross-entropy against the batch's targets (labels, or Mixup/CutMix's soft targets,
    with the same label smoothing as the main loss).
The eval loss stays the cross-entropy.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vidjax.train import metrics as metrics_lib
from vidjax.train import sharding


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


# Tag of the Mixup/CutMix rng stream, independent of the dropout masks.
_MIX_KEY = 0x6D6978


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """[B] per-example softmax cross-entropy of logits [B, K] and int labels [B] (or soft
  targets [B, K], e.g. from Mixup/CutMix)."""
  num_classes = logits.shape[-1]
  targets = labels.astype(jnp.float32) if labels.ndim == 2 else jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def bn_groups(config: ml_collections.ConfigDict, mesh: Any) -> int:
  """BatchNorm groups per (micro)batch for `config.bn_group_size` (see config_defaults):
  `train_step`'s `bn_groups`."""
  k = config.get("grad_accum_steps", 1)
  n = sharding.num_batch_shards(mesh)
  if k < 1 or config.batch_size % (k * n):
    raise ValueError(f"batch size {config.batch_size} must be divisible by grad_accum_steps "
                     f"({k}) x the {n} devices the batch is split over.")
  micro = config.batch_size // k
  size = config.get("bn_group_size", 0)
  if size == 0:
    return 1
  if size == -1:
    return n
  if size < -1 or micro % size:
    raise ValueError(f"config.bn_group_size={size} must be 0, -1 or divide the "
                     f"(micro)batch of {micro} clips.")
  return micro // size


def _sown_loss(losses: Any) -> Optional[jax.Array]:
  """The sum of the values sown in the "losses" collection; None when none were."""
  leaves = jax.tree.leaves(losses)
  return sum(jnp.sum(x, dtype=jnp.float32) for x in leaves) if leaves else None


def _aux_classifier_loss(sown: Any, targets: jax.Array,
                         label_smoothing: float) -> Optional[jax.Array]:
  """Sum of weight x mean cross-entropy of every auxiliary classifier sown in
  "aux_logits" against `targets` ([B] labels or [B, K] soft targets); None when none."""
  entries = jax.tree.leaves(sown, is_leaf=lambda x: isinstance(x, dict) and "logits" in x)
  if not entries:
    return None
  return sum(jnp.asarray(e["weight"], jnp.float32)
             * cross_entropy(e["logits"], targets, label_smoothing).mean() for e in entries)


def _split_micro(x: jax.Array, num_micro: int, batch_shards: int) -> jax.Array:
  """[B, ...] -> [k, B / k, ...]; microbatch i holds the i-th chunk of every device's rows,
  so each microbatch stays spread over all devices (no resharding between them)."""
  n, k = batch_shards, num_micro
  x = x.reshape((n, k, x.shape[0] // (n * k)) + x.shape[1:])
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape((k, n * x.shape[2]) + x.shape[3:])


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               model: nn.Module, tx: optax.GradientTransformation,
               schedule: Callable[[jax.Array], jax.Array],
               label_smoothing: float = 0.0, grad_accum_steps: int = 1,
               bn_groups: int = 1, batch_shards: int = 1, mix: Optional[Callable] = None
               ) -> tuple[TrainState, metrics_lib.TrainMetrics, jax.Array]:
  """One optimiser step on a global batch.

  Args:
    batch: "clip" [B, T, H, W, 3] uint8, "label" [B] int32.
    rng: base key; dropout uses fold_in(rng, step) so a resumed run draws the same masks.
    grad_accum_steps: k > 1 splits the batch into k microbatches of B / k clips whose
      gradients are averaged (a sequential loop: activation memory of B / k clips).
      BatchNorm then normalises over each microbatch and updates its running statistics
      once per microbatch, as PyTorch does when it accumulates gradients.
    bn_groups: G > 1 computes BatchNorm statistics separately over G contiguous groups
      of each (micro)batch, as PyTorch DistributedDataParallel without SyncBatchNorm does
      over its per-GPU batches: the model runs on each group (vmapped, so each group
      stays on its devices under GSPMD), and the running statistics follow the first
      group, as DDP's rank 0 buffers (broadcast to every rank at each forward) do.
      1: statistics over the whole (micro)batch, on any number of devices.
    batch_shards: how many devices the batch is split over (for the microbatch split).
    mix: `mix(rng, clips, labels) -> (clips, soft targets)` (vidjax/train/mix.py:
      Mixup/CutMix) or None; the loss uses the targets, the accuracy metrics the labels.

  Returns:
    The new state, the step's metrics (the loss is the cross-entropy plus the sown
    auxiliary losses), and a bool scalar: loss, gradients and new parameters are all
    finite (the trainer stops before saving a state that is not).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def forward(params, batch_stats, clips, targets, key):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats

    def apply(c, t, k):
      logits, updates = model.apply(variables, c, train=True,
                                    mutable=["batch_stats", "losses", "aux_logits"],
                                    rngs={"dropout": k})
      aux = [a for a in (_sown_loss(updates.get("losses")),
                         _aux_classifier_loss(updates.get("aux_logits"), t, label_smoothing))
             if a is not None]
      return logits, updates.get("batch_stats", batch_stats), sum(aux) if aux else None

    if bn_groups == 1:
      return apply(clips, targets, key)

    def group(x):
      return x.reshape((bn_groups, x.shape[0] // bn_groups) + x.shape[1:])

    logits, stats, aux = jax.vmap(apply)(group(clips), group(targets),
                                         jax.random.split(key, bn_groups))
    stats = jax.tree.map(lambda s: s[0], stats) if batch_stats else batch_stats
    # Each group's aux loss is over its clips, as the cross-entropy's mean is over all.
    aux = None if aux is None else aux.mean()
    return logits.reshape((-1,) + logits.shape[2:]), stats, aux

  def loss_fn(params, batch_stats, clips, labels, key):
    logits, new_stats, aux = forward(params, batch_stats, clips, labels, key)
    loss = cross_entropy(logits, labels, label_smoothing).mean()
    if aux is not None:  # a model that sows nothing keeps the program of the loss alone
      loss = loss + aux
    return loss, (logits, new_stats)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  labels = batch["label"]
  clips, targets = batch["clip"], labels
  if mix is not None:
    clips, targets = mix(jax.random.fold_in(jax.random.fold_in(rng, _MIX_KEY), state.step),
                         clips, labels)
  if grad_accum_steps == 1:
    (loss, (logits, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, clips, targets, dropout_rng)
  else:
    k = grad_accum_steps
    clips = _split_micro(clips, k, batch_shards)
    micro_labels = _split_micro(targets, k, batch_shards)

    def body(carry, xs):
      grad_sum, stats, loss_sum = carry
      c, l, i = xs
      (loss, (logits, stats)), g = grad_fn(state.params, stats, c, l,
                                           jax.random.fold_in(dropout_rng, i))
      return (jax.tree.map(jnp.add, grad_sum, g), stats, loss_sum + loss), logits

    init = (jax.tree.map(jnp.zeros_like, state.params), state.batch_stats,
            jnp.zeros((), jnp.float32))
    (grads, batch_stats, loss), logits = jax.lax.scan(
        body, init, (clips, micro_labels, jnp.arange(k)))
    grads = jax.tree.map(lambda g: g / k, grads)
    loss = loss / k
    logits = logits.reshape((-1,) + logits.shape[2:])
    labels = _split_micro(labels, k, batch_shards).reshape(-1)  # the order of `logits`

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(params))
  step_metrics = metrics_lib.TrainMetrics.single_from_model_output(
      loss=loss, scores=logits, labels=labels, grad_norm=grad_norm,
      learning_rate=schedule(state.step))
  return new_state, step_metrics, finite


# Ranks of multi-view eval batches: clips [B, V, T, H, W, 3], audio features [B, V, T, F]
# (one view: ranks 5 and 3).
_MULTI_VIEW_NDIM = (6, 4)


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
              fusion: str = "mean_softmax"
              ) -> tuple[metrics_lib.EvalMetrics, dict[str, jax.Array]]:
  """Metrics and per-clip outputs of one eval batch; padded rows (mask 0) count as nothing.

  Args:
    batch: "clip" [B, T, H, W, 3] or multi-view [B, V, T, H, W, 3] (audio features:
      [B, T, F] or [B, V, T, F]); "label" [B];
      "mask" [B] (1 for real examples); optional "index" [B] (the clip's position in the
      eval split, -1 for padding), passed through to the outputs.

  Returns:
    The batch's metrics, and {"scores" [B, K] (`fusion` over the views, also for one
    view, so a scores file means the same whatever the view count), "label", "mask",
    "index"} for eval_outputs.py's per-video scores file.
  """
  clips = batch["clip"]
  views = 1
  if clips.ndim in _MULTI_VIEW_NDIM:
    views = clips.shape[1]
    clips = clips.reshape((-1,) + clips.shape[2:])
  logits = model.apply(state.variables(), clips, train=False)
  logits = logits.reshape((-1, views, logits.shape[-1])).astype(jnp.float32)
  scores = metrics_lib.fuse_views(logits, fusion) if views > 1 else logits[:, 0]
  # The loss is that of the view-averaged logits, comparable across view counts.
  loss = cross_entropy(logits.mean(axis=1), batch["label"])
  metrics = metrics_lib.EvalMetrics.single_from_model_output(
      loss=loss, scores=scores, labels=batch["label"], mask=batch["mask"])
  outputs = {"scores": metrics_lib.fuse_views(logits, fusion) if views == 1 else scores,
             "label": batch["label"], "mask": batch["mask"]}
  if "index" in batch:
    outputs["index"] = batch["index"]
  return metrics, outputs
