"""Sharded training: data parallel, FSDP and per-device BatchNorm on 8 simulated CPU
devices against 1 device; checkpoints across device counts; partition rules."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config, subprocess_env
from vidjax.train import sharding

# As in test_train_loop: a small lr keeps the from-scratch smoke model's rounding
# differences (order of the cross-device sums) far below 1e-5 over three steps.
SMALL_LR = {"optim.lr": 3e-4}
NO_DROPOUT = {"model.head.dropout_rate": 0.0}
NUM_STEPS = 3


def smoke_config(**overrides):
  return load_config("tsn_r50", "smoke", **{**SMALL_LR, **overrides})


def fixed_batches(config, num_steps=NUM_STEPS):
  """`num_steps` global batches of the smoke data, the same in every process."""
  from vidjax.data import pipeline
  it = pipeline.train_iterator(config.data, config.batch_size, seed=config.seed)
  if jax.process_count() > 1:
    raise RuntimeError("fixed_batches reads the whole batch: call it with one process.")
  return [next(it) for _ in range(num_steps)]


def model_and_tx(config):
  """The config's model and optimiser (frozen parameters included): (model, tx, schedule)."""
  from vidjax import models
  from vidjax.train import optim
  model = models.build_model(config.model)
  shape = (1, config.data.num_frames, config.data.image_size, config.data.image_size, 3)
  params = jax.eval_shape(lambda r: model.init(r, np.zeros(shape, np.uint8)),
                          jax.random.key(0))["params"]
  tx, schedule = optim.build_optimizer(config.optim, params, steps_per_epoch=4,
                                       frozen=models.frozen_param_mask(config.model, params))
  return model, tx, schedule


def run_steps(config, mesh, batches, process_rows=None):
  """Trains on `batches` with the trainer's state creation and jitted step.

  Args:
    process_rows: (start, stop) rows of each global batch this process feeds (several
      processes); None: all rows.
  Returns:
    (losses, final state).
  """
  from vidjax.train import trainer
  model, tx, schedule = model_and_tx(config)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  state, shardings = trainer.create_train_state(config, model, tx, mesh, init_rng)
  train_fn = trainer.make_train_fn(config, model, tx, schedule, mesh, shardings)
  losses = []
  for batch in batches:
    if process_rows is not None:
      batch = {k: v[process_rows[0]:process_rows[1]] for k, v in batch.items()}
    state, metrics, finite = train_fn(state, sharding.global_batch(batch, mesh), dropout_rng)
    assert bool(finite)
    losses.append(float(metrics.loss.compute()))
  return losses, state


def abstract_state(config, mesh):
  """The train state's shapes, dtypes and shardings on `mesh`: a restore target that
  costs no init compile."""
  from vidjax.train import trainer
  model, tx, _ = model_and_tx(config)
  shapes = jax.eval_shape(lambda r: trainer.create_train_state(config, model, tx, mesh, r)[0],
                          jax.random.key(config.seed))
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
                      trainer.state_shardings(config, shapes, mesh))


def flat_params(state):
  """{path: host array} of params and batch_stats (fully addressable states only)."""
  tree = {"params": state.params, "batch_stats": state.batch_stats}
  return {sharding.path_name(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def assert_close(a, b, atol=1e-5, rtol=1e-5):
  """Every leaf of `a` within atol + rtol * |b| of `b`'s: float32 rounding of the sums
  that the device layouts reorder grows with the value (BatchNorm's running variances)."""
  assert sorted(a) == sorted(b)
  worst = max(float((np.abs(a[k] - b[k]) - rtol * np.abs(b[k])).max()) for k in a)
  assert worst <= atol, worst


# ------------------------------------------------------------------ in-process (1 device)
def test_partition_rules_place_leaves():
  mesh = sharding.make_mesh((("data", 1), ("fsdp", 1), ("model", 1)))
  rules = ((r"batch_stats/", "replicate"), (r"head/fc/kernel$", (None, "model")),
           (r".*", "fsdp"))
  assert sharding.leaf_spec("params/head/fc/kernel", (512, 6), mesh, rules) == \
      jax.sharding.PartitionSpec(None, "model")
  # A mesh-less FSDP rule is a no-op; unknown axes, indivisible sizes and bad specs name
  # the tensor.
  assert sharding.leaf_spec("params/a/kernel", (3, 3, 64, 64), mesh, rules) == \
      jax.sharding.PartitionSpec()
  with pytest.raises(ValueError, match="params/x.*names axis 'tensor'"):
    sharding.leaf_spec("params/x", (4, 4), mesh, ((r"x", (None, "tensor")),))
  with pytest.raises(ValueError, match="spec must be 'replicate', 'fsdp'"):
    sharding.leaf_spec("params/x", (4, 4), mesh, ((r"x", "shard"),))
  with pytest.raises(ValueError, match="axes must be distinct names"):
    sharding.make_mesh((("data", -1), ("pipeline", 1)))
  with pytest.raises(ValueError, match="needs 3 devices"):
    sharding.make_mesh((("data", 3),))


def test_inference_batches_split_by_clip_else_by_frame(monkeypatch):
  """A batch the devices do not divide is split by frame when its frames divide (one
  process), and refused otherwise, naming the field and the frames."""
  mesh = jax.sharding.AbstractMesh((2, 2), ("data", "fsdp"))  # 4 batch shards
  assert not sharding.splits_frames(8, 2, mesh)  # clips divide
  assert sharding.splits_frames(1, 8, mesh) and sharding.splits_frames(2, 4, mesh)
  assert not sharding.splits_frames(1, 2, mesh) and not sharding.splits_frames(1, 0, mesh)
  # T is split, in both clip layouts; by clip, B is.
  both = ("data", "fsdp")
  assert tuple(sharding.clip_sharding(mesh, 5, True).spec) == (None, both, None, None, None)
  assert tuple(sharding.clip_sharding(mesh, 6, True).spec) == (None, None, both, None, None,
                                                               None)
  assert tuple(sharding.clip_sharding(mesh, 5).spec) == (both,)
  sharding.check_batch_divides(1, mesh, num_frames=8)
  with pytest.raises(ValueError, match=r"config.eval.batch_size=1 must be a multiple of the "
                                       r"4 devices .*, or \(on one process\) its clips' 2 "
                                       r"frames a multiple of the 4 devices"):
    sharding.check_batch_divides(1, mesh, num_frames=2, field="config.eval.batch_size")
  with pytest.raises(ValueError, match=r"^batch size=1 must be a multiple of the 4 devices of "
                                       r"the data x fsdp mesh axes and of the 1 processes\.$"):
    sharding.check_batch_divides(1, mesh)  # training: clips only
  # Several processes feed rows of clips, never frames.
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert not sharding.splits_frames(1, 8, mesh)
  with pytest.raises(ValueError, match="of the 2 processes"):
    sharding.check_batch_divides(1, mesh, num_frames=8)


def test_cpu_devices_minus_one_means_one_per_core(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.config, "update", lambda name, value: calls.append((name, value)))
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
  assert sharding.set_cpu_devices(-1) == 3 and calls == [("jax_num_cpu_devices", 3)]
  assert sharding.set_cpu_devices(0) == 0 and len(calls) == 1  # JAX's default kept
  with pytest.raises(ValueError, match=r"config.cpu_devices must be -1 \(one per core\)"):
    sharding.set_cpu_devices(-2)


@pytest.mark.slow
def test_grouped_batchnorm_normalises_each_group_on_its_own():
  """The grouped forward of the train step (bn_group_size=N) equals separate forwards of
  the groups: what DDP computes on each GPU."""
  from vidjax import models
  config = smoke_config(**{"model.head.dropout_rate": 0.0})
  clips = fixed_batches(config, 1)[0]["clip"]
  model = models.build_model(config.model)
  variables = model.init(jax.random.key(0), clips[:1])
  apply = jax.jit(lambda c: model.apply(variables, c, train=True, mutable=["batch_stats"])[0])
  separate = np.concatenate([apply(clips[i:i + 4]) for i in (0, 4)])
  grouped = jax.jit(jax.vmap(apply))(clips.reshape((2, 4) + clips.shape[1:]))
  np.testing.assert_allclose(np.asarray(grouped).reshape(8, -1), separate, atol=1e-5)
  assert np.abs(np.asarray(apply(clips)) - separate).max() > 1e-3  # global stats differ


# ------------------------------------------------------------------ 8 simulated devices
_EIGHT = r"""
import sys, json
sys.path.insert(0, "tests")
import jax, numpy as np
assert jax.device_count() == 8, jax.devices()
jax.config.update("jax_default_matmul_precision", "highest")
from test_sharding import *
from vidjax.train import sharding, trainer, checkpoint as ckpt_lib
import flax

out = {}
base = smoke_config()
batches = fixed_batches(base)
devices = jax.devices()
one = sharding.make_mesh(base.mesh, devices[:1])
cases = {
    "one": (base, one),
    "fsdp": (smoke_config(mesh=(("data", 2), ("fsdp", -1)), fsdp_min_size=1024),
             sharding.make_mesh((("data", 2), ("fsdp", -1)))),
    # Per-device statistics over 4 clips (a 1-clip group has 2 values per channel at
    # layer4, whose variance is rounding noise amplified by 1/sqrt(eps)).
    "one_ddp_bn": (smoke_config(bn_group_size=4, **NO_DROPOUT), one),
    "data2_ddp_bn": (smoke_config(bn_group_size=-1, **NO_DROPOUT),
                     sharding.make_mesh(base.mesh, devices[:2])),
    # 2 microbatches of 4 clips: the gradients of BN groups of 4 clips. At LLVM level 1:
    # the suite's level 0 (conftest.py) runs the microbatch loop far slower.
    "one_accum2": (smoke_config(grad_accum_steps=2, **NO_DROPOUT, **{
        "xla_options.cpu.xla_backend_optimization_level": 1}), one),
}
states = {}
for name, (config, mesh) in cases.items():
  losses, state = run_steps(config, mesh, batches)
  states[name] = state
  out[name] = {"losses": losses, "sharded": sum(
      not a.is_fully_replicated for a in jax.tree.leaves(state.params))}
  np.savez(f"{sys.argv[1]}/{name}.npz", **flat_params(state))

# The checkpoint of the FSDP state (data 2 x fsdp 4) restores onto 1 device and onto fsdp 8.
state4 = states["fsdp"]
ckpt = ckpt_lib.Checkpointer(f"{sys.argv[1]}/work4")
ckpt.save(1, flax.serialization.to_state_dict(state4), force=True)
ckpt.wait()
for n in (1, 8):
  config_n = smoke_config(mesh=(("fsdp", -1),), fsdp_min_size=1024)
  mesh_n = sharding.make_mesh(config_n.mesh, devices[:n])
  template = abstract_state(config_n, mesh_n)
  restored = ckpt.restore(1, trainer._abstract(trainer._to_dict(template)))
  restored = flax.serialization.from_state_dict(template, restored)
  same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree.leaves(restored), jax.tree.leaves(state4)))
  on_mesh = {len(a.sharding.device_set) for a in jax.tree.leaves(restored.params)}
  out[f"restore{n}"] = {"same": same, "devices": sorted(on_mesh)}
json.dump(out, open(f"{sys.argv[1]}/out.json", "w"))
"""


@pytest.mark.slow
def test_eight_simulated_devices(tmp_path):
  """One subprocess with 8 simulated devices runs every case (its compiles are ~2 min, so
  the checks share one run rather than one per pytest-xdist worker):

  - FSDP (data 2 x fsdp 4) gives the losses and parameters of 1 device (data parallel
    alone: tests/test_train_loop.py's 4 devices);
  - per-device BatchNorm on 2 devices gives those of 1 device with BN groups;
  - gradient accumulation gives the gradients of BN groups;
  - the checkpoint of that FSDP state restores onto 1 device and onto fsdp over 8.
  """
  out = tmp_path
  # The suite's compile-speed flags (conftest.py) plus 8 devices; every case runs under
  # the same flags.
  env = subprocess_env(XLA_FLAGS=os.environ["XLA_FLAGS"] +
                       " --xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _EIGHT, str(out)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  import json
  with open(out / "out.json") as f:
    results = json.load(f)
  load = lambda case: dict(np.load(out / f"{case}.npz"))  # noqa: E731

  for case, reference in (("fsdp", "one"), ("data2_ddp_bn", "one_ddp_bn")):
    np.testing.assert_allclose(results[case]["losses"], results[reference]["losses"],
                               atol=1e-5, rtol=0, err_msg=case)
    assert np.ptp(results[reference]["losses"]) > 1e-3  # the steps changed the model
    assert_close(load(case), load(reference))
    if case == "fsdp":
      assert results[case]["sharded"] > 10  # most kernels are split over fsdp
    else:
      assert results[case]["sharded"] == 0, case

  np.testing.assert_allclose(results["one_accum2"]["losses"], results["one_ddp_bn"]["losses"],
                             atol=1e-5, rtol=0)
  accum, grouped = load("one_accum2"), load("one_ddp_bn")
  # Parameters agree; running statistics do not (per microbatch vs the first group's).
  assert_close({k: v for k, v in accum.items() if k.startswith("params/")},
               {k: v for k, v in grouped.items() if k.startswith("params/")})

  for n in (1, 8):
    r = results[f"restore{n}"]
    assert r["same"] and r["devices"] == [n], (n, r)


def test_bf16_compute_keeps_float32_parameters_and_remat_keeps_the_tree():
  """model.dtype=bfloat16 computes in bf16 while parameters, optimiser state and BN
  statistics stay float32; remat changes nothing in the state (traced, not run)."""
  from vidjax.train import trainer
  config = smoke_config(**{"model.backbone.remat": True, "model.dtype": "bfloat16"})
  mesh = sharding.make_mesh(config.mesh)
  model, tx, schedule = model_and_tx(config)
  clips = np.zeros((8, 2, 32, 32, 3), np.uint8)
  state = jax.eval_shape(lambda r: trainer.create_train_state(config, model, tx, mesh, r)[0],
                         jax.random.key(0))
  train_fn = trainer.make_train_fn(config, model, tx, schedule, mesh,
                                   trainer.state_shardings(config, state, mesh))
  batch = {"clip": clips, "label": np.zeros((8,), np.int32)}
  new_state, _, _ = jax.eval_shape(train_fn, state, batch, jax.random.key(1))
  assert {x.dtype for x in jax.tree.leaves(new_state.params)} == {np.dtype("float32")}
  assert {x.dtype for x in jax.tree.leaves(new_state.batch_stats)} == {np.dtype("float32")}
  hlo = train_fn.lower(state, batch, jax.random.key(1)).as_text()
  assert "bf16" in hlo  # convolutions and matmuls run in bfloat16
  assert "optimization_barrier" in hlo  # remat's recomputation boundary
