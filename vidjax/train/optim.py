"""Optax optimisers from the `config.optim` sub-config, matching PyTorch SGD recipes.

The recipes we reproduce (TSM, TCPNet, MMAction2) train with `torch.optim.SGD` over
parameter groups, clip with `torch.nn.utils.clip_grad_norm_`, and step a MultiStepLR or
cosine scheduler. `build_optimizer` gives the same parameters as that PyTorch loop, step
for step (tests/test_optim.py checks it against torch).

Config fields (`optim.*`); a field left out takes the default shown (`default_config()`),
a field not listed here is an error:

  name = "sgd"              "sgd": momentum SGD as torch.optim.SGD (dampening 0);
                            "adamw": torch.optim.AdamW.
  lr = 0.01                 base learning rate: the peak after warm-up, before lr_mult.
  momentum = 0.9            sgd only; 0 gives plain SGD.
  nesterov = False          sgd only; Nesterov momentum as torch (needs momentum > 0).
  weight_decay = 1e-4       sgd: L2 term wd * param added to the clipped gradient, as
                            torch.optim.SGD does (coupled); adamw: decoupled decay,
                            param *= 1 - lr * wd, as torch.optim.AdamW.
  betas = (0.9, 0.999)      adamw only: Adam's (beta1, beta2).
  eps = 1e-8                adamw only: added to sqrt(v_hat), as torch.
  epochs = 50.0             training length in epochs (the end of the cosine).
  schedule = "step"         "step" | "cosine" | "constant".
  lr_steps = (20, 40)       step schedule: epochs at which lr *= lr_decay.
  lr_decay = 0.1            step schedule: the factor applied at each of lr_steps.
  warmup_epochs = 0.0       linear warm-up length in epochs (may be fractional).
  warmup_start_factor = 0.0 warm-up starts at warmup_start_factor * lr.
  min_lr = 0.0              cosine schedule: the base lr reached at `epochs` and kept
                            after. Like every lr here it is scaled by lr_mult, so the
                            groups keep their ratios (TSM); torch's CosineAnnealingLR
                            eta_min is instead absolute in every group, which differs
                            for lr_mult != 1 when min_lr > 0.
  clip_grad_norm = 0.0      0: no clipping; else clip the raw gradients by their global
                            L2 norm as torch.nn.utils.clip_grad_norm_ (coefficient
                            max_norm / (norm + 1e-6), capped at 1), before weight decay.
  param_groups = ()         tuple of dicts {"regex": str, "lr_mult": 1.0,
                            "decay_mult": 1.0, "name": optional str}. A parameter joins
                            the first group whose regex is found (re.search) in its
                            '/'-joined path, e.g. "backbone/layer1_0/conv1/kernel",
                            "head/fc/bias"; anchor with ^ and $ for exact matches.
                            Its lr is schedule * lr_mult and its weight decay
                            weight_decay * decay_mult. Unmatched parameters are in the
                            "default" group (lr_mult 1, decay_mult 1). A group that
                            claims no parameter is an error: it is almost always a typo.
  no_decay = ("bias", "scale")  regexes searched in the path; a match gets no weight
                            decay whatever its group says (TSM's partial no-bias-decay,
                            BatchNorm/LayerNorm scale and bias). Set () to decay every
                            parameter, as plain torch SGD(weight_decay=...) does.

Schedule (counts optimiser steps, `steps_per_epoch` converts epochs; epoch values are
rounded to whole steps):

* The step schedule is by-epoch, like MMAction2's MultiStepLR and TSM's
  adjust_learning_rate: lr drops exactly at step lr_steps[i] * steps_per_epoch.
* Warm-up and cosine are by-iteration (MMAction2's convert_to_iter_based): warm-up
  multiplies lr by warmup_start_factor + (1 - warmup_start_factor) * step / warmup_steps;
  the cosine runs from lr at the end of warm-up to min_lr at `epochs` (torch
  CosineAnnealingLR with T_max = total - warmup steps, eta_min = min_lr), then stays.
* With the step and constant schedules the warm-up factor multiplies the schedule (torch
  schedulers chained on one optimiser); with the cosine they are sequential
  (SequentialLR).

The step with optax count t (0 for the first update) uses lr = schedule(t), as torch's
first optimizer.step() uses the scheduler's initial lr.

Use:

  tx, schedule = build_optimizer(config.optim, params, steps_per_epoch,
                                 frozen=models.frozen_param_mask(config.model, params))
  logging.info("%s", param_group_table(params, config.optim))  # A multi-line table.
  updates, opt_state = tx.update(grads, opt_state, params)  # params: weight decay.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
DEFAULT_GROUP = "default"
NO_DECAY_SUFFIX = "/no_decay"
PARAM_GROUP_KEYS = ("regex", "lr_mult", "decay_mult", "name")

# torch.nn.utils.clip_grad_norm_ divides by (total_norm + 1e-6); kept for exact parity.
_TORCH_CLIP_EPS = 1e-6

_DEFAULTS = dict(
    name="sgd",
    lr=0.01,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-4,
    betas=(0.9, 0.999),
    eps=1e-8,
    epochs=50.0,  # A float, so that a ConfigDict override may be fractional.
    schedule="step",
    lr_steps=(20, 40),
    lr_decay=0.1,
    warmup_epochs=0.0,
    warmup_start_factor=0.0,
    min_lr=0.0,
    clip_grad_norm=0.0,
    param_groups=(),
    no_decay=("bias", "scale"),
)


def default_config() -> ml_collections.ConfigDict:
  """Returns an `optim` sub-config with every field at its default."""
  return ml_collections.ConfigDict(dict(_DEFAULTS))


@dataclasses.dataclass(frozen=True)
class _Group:
  name: str
  pattern: Optional[re.Pattern]  # None for the default group.
  lr_mult: float
  decay_mult: float


@dataclasses.dataclass(frozen=True)
class _Settings:
  """The validated config; everything below reads this, never the raw config."""
  name: str
  lr: float
  momentum: float
  nesterov: bool
  weight_decay: float
  betas: tuple[float, float]
  eps: float
  epochs: float
  schedule: str
  lr_steps: tuple[float, ...]
  lr_decay: float
  warmup_epochs: float
  warmup_start_factor: float
  min_lr: float
  clip_grad_norm: float
  groups: tuple[_Group, ...]  # The configured groups, then the default group.
  no_decay: tuple[re.Pattern, ...]


def _as_dict(config: Any, what: str) -> dict:
  if hasattr(config, "to_dict"):  # ConfigDict and FrozenConfigDict.
    return dict(config.to_dict())
  if isinstance(config, Mapping):
    return dict(config)
  raise ValueError(
      f"{what} must be a ConfigDict or a mapping, got {type(config).__name__}.")


def _number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
            low_open: bool = False) -> float:
  """Checks that `value` (the field `name`) is a number in [low, high] or (low, high]."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"{name} must be a number, got {value!r}.")
  value = float(value)
  too_low = value <= low if low_open else value < low
  if too_low or value > high or math.isnan(value):
    bound = "(" if low_open else "["
    raise ValueError(f"{name} = {value} is outside {bound}{low}, {high}].")
  return value


def _regex(pattern: Any, where: str) -> re.Pattern:
  if not isinstance(pattern, str):
    raise ValueError(f"{where} must be a regex string, got {pattern!r}.")
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ValueError(f"{where} = {pattern!r} is not a valid regex: {e}.") from e


def _parse_groups(raw: Any) -> tuple[_Group, ...]:
  if isinstance(raw, (str, Mapping)) or not isinstance(raw, Sequence):
    raise ValueError("optim.param_groups must be a tuple of dicts with keys "
                     f"{PARAM_GROUP_KEYS}, got {raw!r}.")
  groups = []
  for i, group in enumerate(raw):
    group = _as_dict(group, f"optim.param_groups[{i}]")
    unknown = sorted(set(group) - set(PARAM_GROUP_KEYS))
    if unknown:
      raise ValueError(f"optim.param_groups[{i}] has unknown key(s) {unknown}; accepted "
                       f"keys: {PARAM_GROUP_KEYS}.")
    if "regex" not in group:
      raise ValueError(f"optim.param_groups[{i}] needs a 'regex' key.")
    where = f"optim.param_groups[{i}]"
    pattern = _regex(group["regex"], f"{where}.regex")
    mults = {k: _number(group.get(k, 1.0), f"{where}.{k}")
             for k in ("lr_mult", "decay_mult")}
    name = group.get("name", pattern.pattern)
    if not isinstance(name, str) or not name or name == DEFAULT_GROUP:
      raise ValueError(f"{where}.name must be a non-empty string other than "
                       f"{DEFAULT_GROUP!r}, got {name!r}.")
    if name in (g.name for g in groups):
      raise ValueError(f"{where}.name {name!r} is used by an earlier group; give each "
                       "group its own name.")
    groups.append(_Group(name, pattern, mults["lr_mult"], mults["decay_mult"]))
  groups.append(_Group(DEFAULT_GROUP, None, 1.0, 1.0))
  return tuple(groups)


def _parse(optim_config: Any) -> _Settings:
  """Validates `optim_config`; every error names the field and what it accepts."""
  fields = _as_dict(optim_config, "optim_config")
  unknown = sorted(set(fields) - set(_DEFAULTS))
  if unknown:
    hint = (" (pass config.optim, not the whole config)"
            if "optim" in fields else "")
    raise ValueError(f"Unknown optim field(s) {unknown}{hint}; accepted fields: "
                     f"{sorted(_DEFAULTS)}.")
  fields = {**_DEFAULTS, **fields}

  for key, accepted in (("name", OPTIMIZERS), ("schedule", SCHEDULES)):
    if fields[key] not in accepted:
      raise ValueError(f"optim.{key} = {fields[key]!r} is not supported; accepted "
                       f"values: {accepted}.")
  if not isinstance(fields["nesterov"], bool):
    raise ValueError(f"optim.nesterov must be True or False, got {fields['nesterov']!r}.")

  momentum = _number(fields["momentum"], "optim.momentum", high=1.0)
  if fields["nesterov"] and momentum == 0.0:
    # torch.optim.SGD refuses this too: Nesterov without momentum is plain SGD.
    raise ValueError("optim.nesterov = True needs optim.momentum > 0.")

  betas = fields["betas"]
  if (isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2 or
      not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
    raise ValueError(f"optim.betas must be two numbers in [0, 1), got {betas!r}.")

  lr_steps = fields["lr_steps"]
  if isinstance(lr_steps, (int, float)) and not isinstance(lr_steps, bool):
    lr_steps = (lr_steps,)
  if (isinstance(lr_steps, str) or not isinstance(lr_steps, Sequence) or
      not all(isinstance(s, (int, float)) and s >= 0 for s in lr_steps) or
      list(lr_steps) != sorted(lr_steps)):
    raise ValueError("optim.lr_steps must be ascending non-negative epoch numbers, got "
                     f"{lr_steps!r}.")

  no_decay = fields["no_decay"]
  if isinstance(no_decay, str):
    no_decay = (no_decay,)
  if not isinstance(no_decay, Sequence):
    raise ValueError(f"optim.no_decay must be a tuple of regexes, got {no_decay!r}.")

  settings = _Settings(
      name=fields["name"],
      lr=_number(fields["lr"], "optim.lr"),
      momentum=momentum,
      nesterov=fields["nesterov"],
      weight_decay=_number(fields["weight_decay"], "optim.weight_decay"),
      betas=(float(betas[0]), float(betas[1])),
      eps=_number(fields["eps"], "optim.eps", low_open=True),
      epochs=_number(fields["epochs"], "optim.epochs", low_open=True),
      schedule=fields["schedule"],
      lr_steps=tuple(float(s) for s in lr_steps),
      lr_decay=_number(fields["lr_decay"], "optim.lr_decay", low_open=True),
      warmup_epochs=_number(fields["warmup_epochs"], "optim.warmup_epochs"),
      warmup_start_factor=_number(
          fields["warmup_start_factor"], "optim.warmup_start_factor", high=1.0),
      min_lr=_number(fields["min_lr"], "optim.min_lr"),
      clip_grad_norm=_number(fields["clip_grad_norm"], "optim.clip_grad_norm"),
      groups=_parse_groups(fields["param_groups"]),
      no_decay=tuple(_regex(p, f"optim.no_decay[{i}]") for i, p in enumerate(no_decay)),
  )
  if settings.schedule == "cosine":
    if settings.warmup_epochs >= settings.epochs:
      raise ValueError(f"optim.warmup_epochs = {settings.warmup_epochs} leaves no "
                       f"cosine: it must be below optim.epochs = {settings.epochs}.")
    if settings.min_lr > settings.lr:
      raise ValueError(f"optim.min_lr = {settings.min_lr} is above optim.lr = "
                       f"{settings.lr}.")
  return settings


def _check_steps_per_epoch(steps_per_epoch: Any) -> int:
  if (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or
      steps_per_epoch < 1):
    raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}.")
  return steps_per_epoch


def _to_steps(epochs: float, steps_per_epoch: int) -> int:
  return int(round(epochs * steps_per_epoch))


def _schedule(s: _Settings, steps_per_epoch: int) -> optax.Schedule:
  warmup_steps = _to_steps(s.warmup_epochs, steps_per_epoch)
  total_steps = _to_steps(s.epochs, steps_per_epoch)
  boundaries = tuple(_to_steps(e, steps_per_epoch) for e in s.lr_steps)

  def warmup_factor(count):
    if warmup_steps == 0:
      return 1.0
    frac = jnp.minimum(count, warmup_steps) / warmup_steps
    return s.warmup_start_factor + (1.0 - s.warmup_start_factor) * frac

  def schedule(count):
    # The optax count is int32, and int32 / int is float32 even under jax_enable_x64:
    # take the float dtype first so that float64 runs get float64 learning rates.
    count = jnp.asarray(count).astype(jnp.result_type(float))
    if s.schedule == "cosine":
      cosine_steps = max(total_steps - warmup_steps, 1)
      t = jnp.clip(count - warmup_steps, 0, cosine_steps) / cosine_steps
      cosine = s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
      lr = jnp.where(count < warmup_steps, s.lr * warmup_factor(count), cosine)
    else:
      lr = s.lr * warmup_factor(count)
      if s.schedule == "step" and boundaries:
        drops = sum((count >= b).astype(jnp.int32) for b in boundaries)
        lr = lr * jnp.asarray(s.lr_decay) ** drops
    return jnp.asarray(lr, dtype=jnp.result_type(float))

  return schedule


def build_schedule(optim_config: Any, steps_per_epoch: int) -> optax.Schedule:
  """Returns the base learning rate (lr_mult 1) as a function of the optimiser step."""
  return _schedule(_parse(optim_config), _check_steps_per_epoch(steps_per_epoch))


def _path_str(path: Sequence[Any]) -> str:
  return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def _rule(s: _Settings, path: str) -> tuple[_Group, bool]:
  """The group a parameter path falls in, and whether no_decay exempts it."""
  group = next(g for g in s.groups if g.pattern is None or g.pattern.search(path))
  return group, any(p.search(path) for p in s.no_decay)


def _label(group: _Group, exempt: bool) -> str:
  return group.name + (NO_DECAY_SUFFIX if exempt else "")


def param_labels(params: Any, optim_config: Any) -> Any:
  """Returns a pytree like `params` of group labels, e.g. "head" or "default/no_decay".

  The label is the group's name (its regex when the group has no name, "default" when
  no group matched), with "/no_decay" appended when a `no_decay` regex matched.
  """
  s = _parse(optim_config)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: _label(*_rule(s, _path_str(path))), params)


def param_group_summary(params: Any, optim_config: Any) -> list[dict]:
  """One row per non-empty label: group, lr_mult, weight_decay, tensors, params.

  `weight_decay` is the effective value (weight_decay * decay_mult, 0 under no_decay).
  Rows follow the order of `optim.param_groups`, then the default group.
  """
  s = _parse(optim_config)
  rows: dict[str, dict] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    group, exempt = _rule(s, _path_str(path))
    label = _label(group, exempt)
    if label not in rows:
      wd = 0.0 if exempt else s.weight_decay * group.decay_mult
      rows[label] = dict(group=label, lr_mult=group.lr_mult, weight_decay=wd, tensors=0,
                         params=0, _order=(s.groups.index(group), exempt))
    rows[label]["tensors"] += 1
    rows[label]["params"] += math.prod(getattr(leaf, "shape", ()))
  ordered = sorted(rows.values(), key=lambda r: r["_order"])
  return [{k: v for k, v in r.items() if k != "_order"} for r in ordered]


def param_group_table(params: Any, optim_config: Any) -> str:
  """`param_group_summary` as a fixed-width text table for the training log."""
  header = ("group", "lr_mult", "weight_decay", "#tensors", "#params")
  rows = [(r["group"], f"{r['lr_mult']:g}", f"{r['weight_decay']:g}", str(r["tensors"]),
           f"{r['params']:,}") for r in param_group_summary(params, optim_config)]
  widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
  line = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths)))
  return "\n".join([line(header), line(tuple("-" * w for w in widths))] +
                   [line(r) for r in rows])


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
  """torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (||g||_2 + 1e-6)).

  optax.clip_by_global_norm differs slightly (no epsilon, and no rescaling at all below
  the threshold); this keeps parity with the PyTorch recipes.
  """

  def update_fn(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates)
    coef = jnp.minimum(max_norm / (norm + _TORCH_CLIP_EPS), 1.0)
    return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def _add_group_weight_decay(s: _Settings) -> optax.GradientTransformation:
  """updates += wd * params, wd per leaf from its group and no_decay."""

  def decay(path, g, p):
    group, exempt = _rule(s, _path_str(path))
    wd = 0.0 if exempt else s.weight_decay * group.decay_mult
    return g if wd == 0.0 else g + jnp.asarray(wd, g.dtype) * p

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("weight decay needs params: call tx.update(grads, state, params).")
    return jax.tree_util.tree_map_with_path(decay, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


class ScaleByGroupScheduleState(NamedTuple):
  """The number of updates applied so far (the schedule's step)."""
  count: jax.Array


def _scale_by_group_schedule(s: _Settings,
                             schedule: optax.Schedule) -> optax.GradientTransformation:
  """updates *= -schedule(count) * lr_mult: torch's p -= group_lr_t * update."""

  def init_fn(params):
    del params
    return ScaleByGroupScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    lr = schedule(state.count)

    def scale(path, g):
      step = -lr * _rule(s, _path_str(path))[0].lr_mult
      return g * step.astype(g.dtype)

    updates = jax.tree_util.tree_map_with_path(scale, updates)
    return updates, ScaleByGroupScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def build_optimizer(optim_config: Any, params: Any, steps_per_epoch: int,
                    frozen: Any = None) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (tx, schedule): the optax optimiser and its base learning-rate schedule.

  Args:
    optim_config: the `config.optim` sub-config (fields in the module docstring).
    params: the parameter pytree (arrays or jax.ShapeDtypeStruct); used to check that
      every param group matches some parameter. Group rules are applied by path inside
      `tx`, so `tx` works on any pytree with the same paths.
    steps_per_epoch: optimiser steps per epoch, to convert epochs into steps.
    frozen: None, or a pytree of bools like `params` (`vidjax.models.frozen_param_mask`):
      True leaves (frozen stages, partial BN) get no update at all, weight decay
      included, as upstream leaves them out of the optimiser.

  `tx.update(grads, state, params)` needs params (weight decay). The schedule gives the
  base lr (lr_mult 1) at an optimiser step, for logging.
  """
  s = _parse(optim_config)
  schedule = _schedule(s, _check_steps_per_epoch(steps_per_epoch))

  paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  claimed = {_rule(s, path)[0].name for path in paths}
  for i, group in enumerate(s.groups[:-1]):
    if group.name not in claimed:
      raise ValueError(
          f"optim.param_groups[{i}] (regex {group.pattern.pattern!r}) matches no "
          "parameter (or only ones an earlier group claims). Parameter paths look like "
          f"{paths[:3]}.")

  # Clipping sees the raw gradients, as clip_grad_norm_ runs before optimizer.step().
  parts = [clip_by_global_norm_torch(s.clip_grad_norm)] if s.clip_grad_norm > 0 else []
  if s.name == "sgd":
    # torch.optim.SGD: d = g + wd * p; buf = momentum * buf + d (buf = d at the first
    # step, which a zero-initialised trace reproduces); p -= lr_t * buf (or
    # d + momentum * buf with nesterov). The lr multiplies the whole buffer at update
    # time, so a time-varying lr is a scale after the trace.
    parts.append(_add_group_weight_decay(s))
    if s.momentum > 0:
      parts.append(optax.trace(decay=s.momentum, nesterov=s.nesterov))
  else:
    # torch.optim.AdamW: p *= 1 - lr_t * wd, then p -= lr_t * m_hat / (sqrt(v_hat) + eps);
    # both use the pre-step p, so the decay joins the Adam direction before the lr.
    parts.append(optax.scale_by_adam(b1=s.betas[0], b2=s.betas[1], eps=s.eps))
    parts.append(_add_group_weight_decay(s))
  parts.append(_scale_by_group_schedule(s, schedule))
  tx = optax.chain(*parts)
  if frozen is not None and any(jax.tree.leaves(frozen)):
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               jax.tree.map(lambda f: "frozen" if f else "train", frozen))
  return tx, schedule
