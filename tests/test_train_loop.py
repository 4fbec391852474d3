"""The loop: exact resume, 1 vs 4 devices, eval-only, init_from, and the error cases;
frozen parameters and auxiliary losses in the step."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config, shared_run, subprocess_env
from vidjax.checkpoint import load_variables
from vidjax.train import checkpoint as ckpt_lib
from vidjax.train import trainer, writers


# The smoke model (ResNet-18 on 2 frames of 32x32, from scratch) is so ill-conditioned at
# the smoke lr that float32 rounding differences (1e-7 after step 1, from the order of the
# cross-device gradient sum) grow ~100x per step. A small lr keeps three steps comparable
# at 1e-5 while the update still changes the losses by far more than that (lr 1e-3 gave
# a 4-device third loss 2.1e-5 away after YNNPACK took the elementwise ops and max pooling
# got PyTorch's gradient; 3e-4 is test_sharding's value).
_SMALL_LR = {"optim.lr": 3e-4}


def _smoke(**overrides):
  return load_config("tsn_r50", "smoke", **overrides)


def _assert_trees_equal(a, b):
  flat_a, tree_a = jax.tree.flatten(a)
  flat_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """An uninterrupted 6-step smoke run, logging every step."""
  config = _smoke(total_steps=6, log_every_steps=1, checkpoint_every_steps=3, **_SMALL_LR)
  workdir, results = shared_run(tmp_path_factory, "train_loop_full_run",
                                lambda d: trainer.run(config, d))
  return config, workdir, results


@pytest.mark.slow
def test_resume_after_stop_is_exact(full_run, tmp_path):
  config, full_dir, full_results = full_run
  workdir = str(tmp_path)
  stopped = trainer.run(_smoke(total_steps=4, log_every_steps=1, checkpoint_every_steps=3,
                               **_SMALL_LR), workdir)
  assert stopped  # evaluated at its own end
  # Steps 4 was saved at the stop; the rerun resumes there, with the data position.
  resumed = trainer.run(config, workdir)
  _assert_trees_equal(load_variables(full_dir), load_variables(workdir))
  assert resumed == full_results
  losses_full = [r["train/loss"] for r in writers.read_jsonl(f"{full_dir}/metrics.jsonl")
                 if "train/loss" in r]
  losses_resumed = [r["train/loss"] for r in writers.read_jsonl(f"{workdir}/metrics.jsonl")
                    if "train/loss" in r]
  assert losses_full == losses_resumed and len(losses_full) == 6


@pytest.mark.slow
def test_eval_only_reproduces_final_eval(full_run):
  config, workdir, results = full_run
  assert trainer.evaluate_only(config, workdir) == pytest.approx(results, abs=1e-6)
  # Multi-view evaluation with max-of-softmax fusion runs on the same checkpoint.
  multi = trainer.evaluate_only(_smoke(**{"eval.num_views": 3, "eval.fusion": "max_softmax"}),
                                workdir)
  assert 0.0 <= multi["eval/top1"] <= 1.0 and multi["eval/loss"] > 0


@pytest.mark.slow
def test_init_from_drops_classifier_of_other_class_count(full_run, tmp_path):
  _, workdir, _ = full_run
  source = load_variables(workdir)
  config = _smoke(total_steps=1, init_from=workdir, **{"model.num_classes": 5})
  with pytest.raises(ValueError, match="num_classes=5.*6 classes"):
    trainer.run(config, str(tmp_path / "a"))  # the data set has 6 classes: refused
  config = _smoke(total_steps=1, init_from=workdir, **{"model.backbone.depth": 34})
  with pytest.raises(trainer.TrainingError, match="does not fit the model"):
    trainer.run(config, str(tmp_path / "b"))
  # Same classes: every variable is taken, so step 0 eval equals the source's.
  params, stats = ckpt_lib.merge_init_from(source["params"], source["batch_stats"], source,
                                           r"(^|/)fc/", "x")
  _assert_trees_equal(params, source["params"])
  # Another class count: the classifier keeps its initialisation, the rest is taken.
  other = jax.tree_util.tree_map_with_path(
      lambda p, x: np.zeros((x.shape[0], 3) if x.ndim == 2 else (3,), x.dtype)
      if "fc" in jax.tree_util.keystr(p) else x, source["params"])
  merged, _ = ckpt_lib.merge_init_from(other, source["batch_stats"], source, r"fc", "x")
  _assert_trees_equal(merged["head"], other["head"])  # kept its own initialisation
  _assert_trees_equal(merged["backbone"], source["params"]["backbone"])  # taken


@pytest.mark.slow
def test_four_devices_give_the_losses_of_one(full_run, tmp_path):
  """`vidjax.main --config.cpu_devices=4`: the CPU backend as 4 devices, the batch split
  over them, trains like the 1-device run."""
  config, full_dir, _ = full_run
  proc = _main("--config", "configs/tsn_r50.py:smoke", "--workdir", str(tmp_path),
               "--config.cpu_devices=4", "--config.total_steps=3",
               "--config.log_every_steps=1", "--config.checkpoint_every_steps=3",
               f"--config.optim.lr={_SMALL_LR['optim.lr']}", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "on 4 cpu device(s)" in proc.stderr
  one = [r["train/loss"] for r in writers.read_jsonl(f"{full_dir}/metrics.jsonl")
         if "train/loss" in r]
  four = [r["train/loss"] for r in writers.read_jsonl(f"{tmp_path}/metrics.jsonl")
          if "train/loss" in r]
  assert len(one) == 6 and len(four) == 3
  np.testing.assert_allclose(four, one[:3], atol=1e-5, rtol=0)
  assert np.ptp(one[:3]) > 1e-3  # the steps did change the loss
  # The 4-device checkpoint restores onto this 1-device process.
  restored = load_variables(str(tmp_path))
  assert jax.tree.structure(restored) == jax.tree.structure(load_variables(full_dir))


@pytest.mark.slow
def test_eval_batch_the_devices_do_not_divide_splits_frames(full_run):
  """`--mode eval` with 3 clips per batch on 2 CPU devices (the 20 eval clips padded to
  21): the devices share each clip's 2 frames, and the metrics are those of the
  1-device, 8-clip evaluation."""
  _, full_dir, results = full_run
  proc = _main("--mode", "eval", "--config", "configs/tsn_r50.py:smoke",
               "--checkpoint", full_dir, "--config.cpu_devices=2",
               "--config.eval.batch_size=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "each clip's 2 frames are split over them" in proc.stderr
  final = proc.stdout.split("final: ")[1].strip()
  split = {k: float(v) for k, v in (item.split("=") for item in final.split(", "))}
  assert split.keys() == results.keys()
  for k, v in results.items():  # printed to 4 decimals
    assert abs(split[k] - v) <= 6e-5, (k, split[k], v)


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_keeps_last_checkpoint(tmp_path):
  # Warm-up from lr 0: step 1 is harmless and saved, later steps blow up.
  config = _smoke(total_steps=6, checkpoint_every_steps=1,
                  **{"optim.lr": 1e30, "optim.clip_grad_norm": 0.0,
                     "optim.warmup_epochs": 1.0})
  with pytest.raises(trainer.TrainingError, match=r"Non-finite loss .* at step (\d+)") as e:
    trainer.run(config, str(tmp_path))
  step = int(e.value.args[0].split("at step ")[1].split(":")[0])
  steps_saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert steps_saved and max(steps_saved) == step - 1
  variables = load_variables(str(tmp_path))  # the last good checkpoint reads back, finite
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(variables))


@pytest.mark.slow
def test_non_finite_state_between_checks_is_found_before_the_next_save(tmp_path, monkeypatch):
  """The host reads the finiteness flag only at log, eval and save steps: a state gone
  non-finite at step 3 (none of them) is found at step 4, before step 4 is saved."""
  make_train_fn = trainer.make_train_fn

  def poisoned(*args, **kwargs):
    train_fn = make_train_fn(*args, **kwargs)

    def step_fn(state, batch, rng):
      state, m, finite = train_fn(state, batch, rng)
      if int(state.step) == 3:
        state = state.replace(params=jax.tree.map(lambda p: p * np.nan, state.params))
        finite = finite & False
      return state, m, finite

    return step_fn

  monkeypatch.setattr(trainer, "make_train_fn", poisoned)
  config = _smoke(total_steps=6, log_every_steps=4, checkpoint_every_steps=2, **_SMALL_LR)
  with pytest.raises(trainer.TrainingError,
                     match=r"Non-finite loss .* at step 3: found at step 4, .*"
                           r"checkpoint \(step 2\)"):
    trainer.run(config, str(tmp_path))
  assert [d for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()] == ["2"]


def test_step_0_logs_parameters_and_flops(full_run):
  _, workdir, _ = full_run
  first = next(r for r in writers.read_jsonl(f"{workdir}/metrics.jsonl") if "num_params" in r)
  assert first["step"] == 0 and first["num_params"] > 1e7  # ResNet-18
  # The eval forward of ResNet-18 on 2 frames of 32x32: 2 x 0.07 GFLOPs.
  assert 1e8 < first["flops_per_clip"] < 2e8


@pytest.mark.slow
def test_refuses_workdir_of_another_config(full_run, tmp_path):
  _, workdir, _ = full_run
  config = _smoke(total_steps=7, **{"model.backbone.depth": 34, "batch_size": 4})
  with pytest.raises(trainer.TrainingError,
                     match=r"batch_size: workdir has 8, config has 4\n"
                           r"  model\.backbone\.depth: workdir has 18"):
    trainer.run(config, workdir)
  # A run that failed before its first checkpoint does not block its workdir.
  with pytest.raises(ValueError, match="num_classes"):
    trainer.run(_smoke(**{"model.num_classes": 5}), str(tmp_path))
  assert trainer.run(_smoke(total_steps=1, checkpoint_every_steps=1), str(tmp_path))


def test_resume_ignores_speed_only_fields(tmp_path):
  """Reader speed settings and remat may change on resume; what the data are may not."""
  ckpt_lib.check_workdir_config(_smoke(), str(tmp_path), has_checkpoint=False)
  faster = _smoke(**{"data.decode_threads": 4, "data.seek": False,
                     "data.jpeg_backend": "pil", "data.num_workers": 3,
                     "model.backbone.remat": True})
  ckpt_lib.check_workdir_config(faster, str(tmp_path), has_checkpoint=True)
  with pytest.raises(trainer.TrainingError, match=r"data\.num_frames: workdir has 2"):
    ckpt_lib.check_workdir_config(_smoke(**{"data.num_frames": 4}), str(tmp_path),
                                  has_checkpoint=True)


def _main(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "vidjax.main", *args], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_main_missing_data_says_where_and_how(tmp_path):
  proc = _main("--config", "configs/tsn_r50.py", "--workdir", str(tmp_path),
               f"--config.data.train_list={tmp_path}/k400_train.txt")
  assert proc.returncode == 2
  assert f"{tmp_path}/k400_train.txt" in proc.stderr
  assert "configs/tsn_r50.py:demo" in proc.stderr and "build_file_list" in proc.stderr


def test_main_unknown_config_field_is_named(tmp_path):
  proc = _main("--config", "configs/tsn_r50.py:smoke", "--workdir", str(tmp_path),
               "--config.optim.lrr=0.1")
  assert proc.returncode == 2
  assert "unknown config field config.optim.lrr" in proc.stderr
  assert "config.optim has the fields: betas, clip_grad_norm, epochs, eps, lr," in proc.stderr
  # The registry's line for an unknown part (main prints it as is; a bad variant:
  # tests/test_cli_errors.py).
  from vidjax import models  # pylint: disable=import-outside-toplevel
  config = load_config("tsn_r50", "smoke", **{"model.name": "tsm_typo"})
  with pytest.raises(ValueError, match="model.name='tsm_typo'; known recognizers: clip, "
                                       "recognizer2d"):
    models.build_model(config.model)


@pytest.mark.slow
def test_frozen_parameters_get_no_update_not_even_weight_decay():
  config = _smoke(**{"model.backbone.frozen_stages": 1, "model.backbone.partial_bn": True,
                     "optim.weight_decay": 0.1})
  from vidjax import models
  from vidjax.train import optim
  model = models.build_model(config.model)
  shapes = jax.eval_shape(lambda r: model.init(r, np.zeros((1, 2, 32, 32, 3), np.uint8)),
                          jax.random.key(0))["params"]
  params = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes)
  grads = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), shapes)
  tx, _ = optim.build_optimizer(config.optim, params, steps_per_epoch=4,
                                frozen=models.frozen_param_mask(config.model, params))
  updates, _ = tx.update(grads, tx.init(params), params)
  flat = {jax.tree_util.keystr(k): np.abs(np.asarray(v)).max()
          for k, v in jax.tree_util.tree_leaves_with_path(updates)}
  stem_and_layer1 = [k for k in flat if k.startswith(
      ("['backbone']['conv1']", "['backbone']['bn1']", "['backbone']['layer1_"))]
  partial_bn = [k for k in flat if k.startswith("['backbone']['layer3_0']['bn")]
  assert len(stem_and_layer1) == 3 + 2 * 6 and len(partial_bn) == 4  # ResNet-18
  assert all(flat[k] == 0 for k in stem_and_layer1 + partial_bn)
  assert flat["['backbone']['layer2_0']['conv1']['kernel']"] > 0
  assert flat["['head']['fc']['kernel']"] > 0


def test_sown_aux_loss_joins_the_loss_and_its_gradients():
  """A model's `self.sow("losses", ...)` values add to the train step's loss, with BN
  groups and gradient accumulation too; a model that sows nothing trains on the
  cross-entropy alone."""
  import functools

  import flax.linen as nn
  import jax.numpy as jnp
  import optax

  from vidjax.train import steps

  class Tiny(nn.Module):
    sow_aux: bool = True

    @nn.compact
    def __call__(self, clips, train=False):
      kernel = self.param("kernel", nn.initializers.normal(1.0), (3, 3))
      if self.sow_aux:
        self.sow("losses", "kernel_l2", 0.1 * jnp.sum(kernel ** 2))
      return clips.astype(jnp.float32).mean(axis=(1, 2, 3)) / 255 @ kernel

  rng = np.random.default_rng(0)
  batch = {"clip": rng.integers(0, 256, (4, 2, 8, 8, 3), dtype=np.uint8),
           "label": np.array([0, 1, 2, 0], np.int32)}
  params = Tiny().init(jax.random.key(0), batch["clip"])["params"]
  tx = optax.sgd(1.0)

  def train_step(model, **kwargs):
    state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                             opt_state=tx.init(params))
    new, m, _ = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, schedule=optax.constant_schedule(1.0),
        **kwargs))(state, batch, jax.random.key(1))
    return float(m.loss.compute()), new.params["kernel"]

  def cross_entropy(p):
    logits = Tiny(sow_aux=False).apply({"params": p}, batch["clip"])
    return steps.cross_entropy(logits, batch["label"]).mean()

  def total(p):
    return cross_entropy(p) + 0.1 * jnp.sum(p["kernel"] ** 2)

  for kwargs in ({}, {"bn_groups": 2}, {"grad_accum_steps": 2}):
    loss, kernel = train_step(Tiny(), **kwargs)
    assert loss == pytest.approx(float(total(params)), rel=1e-6), kwargs
    np.testing.assert_allclose(kernel, params["kernel"] - jax.grad(total)(params)["kernel"],
                               rtol=1e-5, atol=1e-7, err_msg=str(kwargs))
  loss, kernel = train_step(Tiny(sow_aux=False))
  assert loss == pytest.approx(float(cross_entropy(params)), rel=1e-6)
  np.testing.assert_allclose(
      kernel, params["kernel"] - jax.grad(cross_entropy)(params)["kernel"], rtol=1e-5, atol=1e-7)


def test_sown_aux_logits_join_the_loss_with_the_targets():
  """An auxiliary classifier sown in "aux_logits" ({"logits", "weight"}, TPN's aux head)
  adds weight x its cross-entropy with the batch's labels (label smoothing as the main
  loss) to the train step's loss and gradients, with BN groups and gradient
  accumulation too."""
  import functools

  import flax.linen as nn
  import jax.numpy as jnp
  import optax

  from vidjax.train import steps

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, clips, train=False):
      kernel = self.param("kernel", nn.initializers.normal(1.0), (3, 3))
      aux_kernel = self.param("aux_kernel", nn.initializers.normal(1.0), (3, 3))
      x = clips.astype(jnp.float32).mean(axis=(1, 2, 3)) / 255
      if train:
        self.sow("aux_logits", "aux", {"logits": x @ aux_kernel, "weight": jnp.float32(0.3)})
      return x @ kernel

  rng = np.random.default_rng(1)
  batch = {"clip": rng.integers(0, 256, (4, 2, 8, 8, 3), dtype=np.uint8),
           "label": np.array([0, 1, 2, 0], np.int32)}
  params = Tiny().init(jax.random.key(0), batch["clip"])["params"]
  tx = optax.sgd(1.0)

  def total(p, smoothing):
    x = batch["clip"].astype(np.float32).mean(axis=(1, 2, 3)) / 255
    return (steps.cross_entropy(x @ p["kernel"], batch["label"], smoothing).mean()
            + 0.3 * steps.cross_entropy(x @ p["aux_kernel"], batch["label"], smoothing).mean())

  for kwargs in ({}, {"bn_groups": 2}, {"grad_accum_steps": 2}, {"label_smoothing": 0.1}):
    state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                             opt_state=tx.init(params))
    new, m, _ = jax.jit(functools.partial(
        steps.train_step, model=Tiny(), tx=tx, schedule=optax.constant_schedule(1.0),
        **kwargs))(state, batch, jax.random.key(1))
    smoothing = kwargs.get("label_smoothing", 0.0)
    assert float(m.loss.compute()) == pytest.approx(float(total(params, smoothing)),
                                                    rel=1e-6), kwargs
    grads = jax.grad(total)(params, smoothing)
    for name in ("kernel", "aux_kernel"):
      np.testing.assert_allclose(new.params[name], params[name] - grads[name], rtol=1e-5,
                                 atol=1e-7, err_msg=f"{name} {kwargs}")
