"""vidjax.train.optim against torch.optim: same parameters after the same steps."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from vidjax.train import optim

torch = pytest.importorskip("torch")

STEPS = 5
STEPS_PER_EPOCH = 2
LR = 0.1
WD = 0.05

# Flax-style paths of a tiny model, and the torch parameter each one is (kernels are
# torch weights transposed). "norm/scale" is a BatchNorm weight: no_decay by default.
SHAPES = {
    "backbone/fc/kernel": (4, 3),
    "backbone/fc/bias": (3,),
    "backbone/norm/scale": (3,),
    "backbone/norm/bias": (3,),
    "head/fc/kernel": (3, 2),
    "head/fc/bias": (2,),
}


class _TorchNet(torch.nn.Module):

  def __init__(self):
    super().__init__()
    self.backbone_fc = torch.nn.Linear(4, 3)
    self.backbone_norm = torch.nn.BatchNorm1d(3)
    self.head_fc = torch.nn.Linear(3, 2)

  def by_path(self) -> dict:
    return {
        "backbone/fc/kernel": self.backbone_fc.weight,
        "backbone/fc/bias": self.backbone_fc.bias,
        "backbone/norm/scale": self.backbone_norm.weight,
        "backbone/norm/bias": self.backbone_norm.bias,
        "head/fc/kernel": self.head_fc.weight,
        "head/fc/bias": self.head_fc.bias,
    }


def _to_torch(path: str, x: np.ndarray) -> np.ndarray:
  return x.T if path.endswith("kernel") else x


def _nest(flat: dict) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _flatten(tree: dict) -> dict:
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _data(dtype) -> tuple[dict, list[dict]]:
  rng = np.random.default_rng(0)
  params = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
  # Per-step scales so that some steps clip (norm > 2) and some do not.
  scales = (1.0, 0.1, 2.0, 0.05, 1.0)
  grads = [{k: (c * rng.normal(size=s)).astype(dtype) for k, s in SHAPES.items()}
           for c in scales]
  return params, grads


def _tsm_groups(net: _TorchNet, lr: float, wd: float) -> list[dict]:
  """TSM-style groups: no decay on biases and BN, head at 5x lr and 2x decay."""
  p = net.by_path()
  return [
      dict(params=[p["backbone/fc/kernel"]], lr=lr, weight_decay=wd),
      dict(params=[p["backbone/fc/bias"], p["backbone/norm/scale"],
                   p["backbone/norm/bias"]], lr=lr, weight_decay=0.0),
      dict(params=[p["head/fc/kernel"]], lr=5 * lr, weight_decay=2 * wd),
      dict(params=[p["head/fc/bias"]], lr=5 * lr, weight_decay=0.0),
  ]


def _plain_groups(net: _TorchNet, lr: float, wd: float) -> list[dict]:
  return [dict(params=list(net.by_path().values()), lr=lr, weight_decay=wd)]


TSM_CONFIG = dict(
    param_groups=(
        {"regex": "^head/", "lr_mult": 5.0, "decay_mult": 2.0, "name": "head"},),
    no_decay=("bias", "scale"))
PLAIN_CONFIG = dict(param_groups=(), no_decay=())


@dataclasses.dataclass
class Case:
  name: str
  config: dict
  groups: Callable
  # (optimizer, config) -> (schedulers stepped every iteration, every epoch).
  schedulers: Callable
  torch_opt: str = "sgd"


def _step_sched(opt, cfg):
  del cfg
  return [], [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 2], gamma=0.1)]


def _warmup_step_sched(opt, cfg):
  del cfg
  warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2)
  return [warmup], [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)]


def _cosine_sched(opt, cfg):
  eta_min = cfg.get("min_lr", 0.0)
  return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5, eta_min=eta_min)], []


def _warmup_cosine_sched(opt, cfg):
  del cfg
  warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2)
  cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
  sequential = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[2])
  return [sequential], []


def _no_sched(opt, cfg):
  del opt, cfg
  return [], []


CASES = [
    Case("tsm_step_clip", dict(TSM_CONFIG, schedule="step", epochs=3.0, lr_steps=(1, 2),
                               clip_grad_norm=2.0), _tsm_groups, _step_sched),
    Case("plain_step_nesterov", dict(PLAIN_CONFIG, schedule="step", epochs=3.0,
                                     lr_steps=(1, 2), nesterov=True),
         _plain_groups, _step_sched),
    Case("tsm_warmup_step", dict(TSM_CONFIG, schedule="step", epochs=3.0, lr_steps=(2,),
                                 warmup_epochs=1.0, warmup_start_factor=0.1,
                                 clip_grad_norm=2.0), _tsm_groups, _warmup_step_sched),
    # min_lr > 0 only with a single group: torch's eta_min is absolute in every group,
    # ours scales with lr_mult (see the optim docstring).
    Case("plain_cosine_min_lr", dict(PLAIN_CONFIG, schedule="cosine", epochs=2.5,
                                     min_lr=1e-2), _plain_groups, _cosine_sched),
    Case("tsm_cosine", dict(TSM_CONFIG, schedule="cosine", epochs=2.5),
         _tsm_groups, _cosine_sched),
    Case("tsm_warmup_cosine_clip", dict(TSM_CONFIG, schedule="cosine", epochs=3.0,
                                        warmup_epochs=1.0, warmup_start_factor=0.1,
                                        clip_grad_norm=2.0),
         _tsm_groups, _warmup_cosine_sched),
    Case("plain_constant_no_momentum", dict(PLAIN_CONFIG, schedule="constant",
                                            momentum=0.0), _plain_groups, _no_sched),
    Case("adamw_tsm_cosine_clip", dict(TSM_CONFIG, name="adamw", schedule="cosine",
                                       epochs=2.5, betas=(0.9, 0.98), clip_grad_norm=2.0),
         _tsm_groups, _cosine_sched, torch_opt="adamw"),
]


def _config(**fields) -> ml_collections.ConfigDict:
  config = optim.default_config()
  config.update(dict(lr=LR, weight_decay=WD))
  config.update(fields)
  return config


def _run_torch(case: Case, params: dict, grads: list[dict], dtype) -> tuple[dict, list]:
  net = _TorchNet().to(getattr(torch, np.dtype(dtype).name))
  by_path = net.by_path()
  with torch.no_grad():
    for path, value in params.items():
      by_path[path].copy_(torch.from_numpy(_to_torch(path, value).copy()))
  groups = case.groups(net, LR, WD)
  cfg = case.config
  if case.torch_opt == "sgd":
    opt = torch.optim.SGD(groups, lr=LR, momentum=cfg.get("momentum", 0.9),
                          nesterov=cfg.get("nesterov", False))
  else:
    opt = torch.optim.AdamW(groups, lr=LR, betas=cfg["betas"], eps=1e-8)
  per_iter, per_epoch = case.schedulers(opt, cfg)
  lrs = []
  for t, step_grads in enumerate(grads):
    for path, g in step_grads.items():
      by_path[path].grad = torch.from_numpy(_to_torch(path, g).copy())
    if cfg.get("clip_grad_norm", 0.0) > 0:
      torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip_grad_norm"])
    lrs.append([g["lr"] for g in opt.param_groups])
    opt.step()
    for s in per_iter:
      s.step()
    if (t + 1) % STEPS_PER_EPOCH == 0:
      for s in per_epoch:
        s.step()
  result = {path: _to_torch(path, p.detach().numpy()) for path, p in by_path.items()}
  return result, lrs


def _run_ours(case: Case, params: dict, grads: list[dict]) -> tuple[dict, list]:
  config = _config(**case.config)
  tree = jax.tree.map(jnp.asarray, _nest(params))
  tx, schedule = optim.build_optimizer(config, tree, STEPS_PER_EPOCH)
  state = tx.init(tree)
  update = jax.jit(tx.update)
  lrs = []
  for t, step_grads in enumerate(grads):
    lrs.append(float(schedule(t)))
    updates, state = update(jax.tree.map(jnp.asarray, _nest(step_grads)), state, tree)
    tree = optax.apply_updates(tree, updates)
  return _flatten(tree), lrs


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_torch_float64(case):
  params, grads = _data(np.float64)
  expected, torch_lrs = _run_torch(case, params, grads, np.float64)
  with jax.enable_x64(True):
    got, lrs = _run_ours(case, params, grads)
  # The first torch group has lr_mult 1 in every case: it is the base schedule.
  np.testing.assert_allclose(lrs, [g[0] for g in torch_lrs], rtol=1e-12, atol=0)
  for path in SHAPES:
    assert got[path].dtype == np.float64
    np.testing.assert_allclose(got[path], expected[path], rtol=0, atol=1e-10,
                               err_msg=path)
    # The parameters must have moved, or the comparison says nothing.
    assert np.abs(got[path] - params[path]).max() > 1e-3, path


def test_matches_torch_float32():
  case = CASES[0]
  params, grads = _data(np.float32)
  expected, _ = _run_torch(case, params, grads, np.float32)
  got, _ = _run_ours(case, params, grads)
  for path in SHAPES:
    assert got[path].dtype == np.float32
    np.testing.assert_allclose(got[path], expected[path], rtol=0, atol=1e-6,
                               err_msg=path)


def test_weight_decay_uses_raw_param_and_clips_before_decay():
  # One parameter, zero gradient: clipping must not touch the decay term (torch clips
  # .grad, then SGD adds wd * p), so the step is exactly -lr * wd * p.
  config = _config(param_groups=(), no_decay=(), clip_grad_norm=1e-3, schedule="constant")
  params = {"w": jnp.full((3,), 10.0)}
  tx, _ = optim.build_optimizer(config, params, 1)
  updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -LR * WD * 10.0, rtol=1e-6)


def test_keeps_bfloat16():
  params = {"head": {"fc": {"kernel": jnp.ones((2, 2), jnp.bfloat16)}}}
  tx, _ = optim.build_optimizer(_config(clip_grad_norm=1.0), params, 10)
  updates, _ = tx.update(params, tx.init(params), params)
  assert updates["head"]["fc"]["kernel"].dtype == jnp.bfloat16


def test_step_schedule_boundaries():
  schedule = optim.build_schedule(_config(lr=0.1, epochs=50, lr_steps=(20, 40)), 10)
  values = {t: float(schedule(t)) for t in (0, 199, 200, 399, 400, 10**6)}
  np.testing.assert_allclose(
      list(values.values()), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_warmup_boundaries():
  config = _config(lr=0.1, warmup_epochs=1.5, warmup_start_factor=0.1, lr_steps=(3,),
                   epochs=4)
  schedule = optim.build_schedule(config, 10)  # 15 warm-up steps.
  np.testing.assert_allclose(
      [float(schedule(t)) for t in (0, 5, 15, 29, 30)],
      [0.01, 0.01 + 0.09 / 3, 0.1, 0.1, 0.01], rtol=1e-6)
  constant = optim.build_schedule(_config(lr=0.1, schedule="constant", warmup_epochs=1),
                                  4)
  np.testing.assert_allclose([float(constant(t)) for t in (0, 2, 4, 1000)],
                             [0.0, 0.05, 0.1, 0.1], rtol=1e-6)


def test_cosine_boundaries():
  config = _config(lr=0.1, schedule="cosine", epochs=10, warmup_epochs=2, min_lr=1e-3,
                   warmup_start_factor=0.0)
  schedule = optim.build_schedule(config, 10)  # 20 warm-up steps, cosine over 80.
  np.testing.assert_allclose(
      [float(schedule(t)) for t in (0, 10, 20, 60, 100, 150)],
      [0.0, 0.05, 0.1, (0.1 + 1e-3) / 2, 1e-3, 1e-3], rtol=1e-6)
  assert float(schedule(99)) > 1e-3


def test_schedule_is_jittable():
  schedule = optim.build_schedule(_config(schedule="cosine", warmup_epochs=1), 10)
  assert math.isclose(float(jax.jit(schedule)(jnp.int32(10))), LR, rel_tol=1e-6)


PARAMS = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), _nest(SHAPES),
                      is_leaf=lambda x: isinstance(x, tuple))


def test_param_labels_and_table():
  config = _config(**TSM_CONFIG)
  labels = optim.param_labels(PARAMS, config)
  assert labels == {
      "backbone": {"fc": {"kernel": "default", "bias": "default/no_decay"},
                   "norm": {"scale": "default/no_decay", "bias": "default/no_decay"}},
      "head": {"fc": {"kernel": "head", "bias": "head/no_decay"}},
  }
  rows = optim.param_group_summary(PARAMS, config)
  assert [(r["group"], r["lr_mult"], r["weight_decay"], r["tensors"], r["params"])
          for r in rows] == [
              ("head", 5.0, 2 * WD, 1, 6), ("head/no_decay", 5.0, 0.0, 1, 2),
              ("default", 1.0, WD, 1, 12), ("default/no_decay", 1.0, 0.0, 3, 9)]
  table = optim.param_group_table(PARAMS, config)
  assert table.splitlines()[0].split() == [
      "group", "lr_mult", "weight_decay", "#tensors", "#params"]
  assert len(table.splitlines()) == 2 + len(rows)
  # An unnamed group is labelled by its regex.
  labels = optim.param_labels(PARAMS, _config(param_groups=({"regex": "kernel$"},),
                                              no_decay=()))
  assert labels["head"]["fc"] == {"kernel": "kernel$", "bias": "default"}


def test_first_matching_group_wins():
  config = _config(no_decay=(), param_groups=(
      {"regex": "head/fc/bias", "lr_mult": 10.0, "name": "head_bias"},
      {"regex": "^head/", "lr_mult": 5.0, "name": "head"}))
  labels = optim.param_labels(PARAMS, config)
  assert labels["head"]["fc"] == {"kernel": "head", "bias": "head_bias"}


def test_default_config_has_every_field():
  assert set(optim.default_config()) == {
      "name", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps", "epochs",
      "schedule", "lr_steps", "lr_decay", "warmup_epochs", "warmup_start_factor",
      "min_lr", "clip_grad_norm", "param_groups", "no_decay"}
  # A plain dict with a subset of the fields works too: the rest take the defaults.
  tx, schedule = optim.build_optimizer({"lr": 0.5}, PARAMS, 3)
  assert math.isclose(float(schedule(0)), 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("fields, message", [
    (dict(name="lamb"), r"optim.name = 'lamb'.*accepted values: \('sgd', 'adamw'\)"),
    (dict(schedule="poly"),
     r"optim.schedule = 'poly'.*accepted values: \('step', 'cosine', 'constant'\)"),
    (dict(learning_rate=0.1), r"Unknown optim field\(s\) \['learning_rate'\].*accepted"),
    (dict(optim={}), r"pass config.optim"),
    (dict(param_groups=({"regex": "head", "lr_multiplier": 2.0},)),
     r"param_groups\[0\] has unknown key\(s\) \['lr_multiplier'\]"),
    (dict(param_groups=({"lr_mult": 2.0},)), r"param_groups\[0\] needs a 'regex'"),
    (dict(param_groups=({"regex": "head["},)), r"param_groups\[0\].regex.*not a valid"),
    (dict(param_groups=({"regex": "head", "lr_mult": -1.0},)),
     r"param_groups\[0\].lr_mult = -1.0 is outside"),
    (dict(param_groups=({"regex": "^nothing/"},)), r"param_groups\[0\].*matches no"),
    (dict(param_groups=({"regex": "head"}, {"regex": "head/fc"})),
     r"param_groups\[1\].*matches no"),
    (dict(no_decay=("bias(",)), r"no_decay\[0\].*not a valid regex"),
    (dict(nesterov=True, momentum=0.0), r"nesterov = True needs optim.momentum > 0"),
    (dict(lr_steps=(40, 20)), r"lr_steps must be ascending"),
    (dict(lr=-0.1), r"optim.lr = -0.1 is outside"),
    (dict(epochs=0), r"optim.epochs = 0.0 is outside"),
    (dict(schedule="cosine", warmup_epochs=50.0),
     r"warmup_epochs = 50.0 leaves no cosine"),
    (dict(betas=(0.9,)), r"optim.betas must be two numbers"),
    (dict(nesterov="yes"), r"optim.nesterov must be True or False"),
])
def test_errors(fields, message):
  config = {**_config().to_dict(), **fields}
  with pytest.raises(ValueError, match=message):
    optim.build_optimizer(config, PARAMS, 10)


def test_bad_steps_per_epoch():
  with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
    optim.build_schedule(_config(), 0)
