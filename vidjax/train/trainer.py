"""The training and evaluation loop, readable top to bottom.

`run(config, workdir)` checks the config; builds the mesh, the model and the optimiser;
creates the train state already sharded on the mesh by `config.partition_rules`, then
resumes the workdir's latest checkpoint (state and data position) when there is one, or
starts from `config.init_from`; trains with periodic logging, evaluation and checkpoints;
and evaluates at the end. `evaluate_only` evaluates a checkpoint.

SIGTERM and SIGINT stop the loop at the next step boundary: it saves that step (with the
data position) and raises `checkpoint.TrainingStopped`, which ends `vidjax.main` with
status 143 (SIGTERM) or 130 (SIGINT) after one line naming the step (preemption.py).

What is not the loop lives in its module: resume checks and init_from in checkpoint.py,
frozen parameters in optim.py, BatchNorm groups and auxiliary losses in steps.py.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
import tempfile
import time
from typing import Any, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import parameter_overview

from vidjax import models
from vidjax.data import pipeline, prepare, resolve
from vidjax.train import checkpoint as ckpt_lib
from vidjax.train import metrics as metrics_lib
from vidjax.train import eval_outputs, mix, optim, preemption, sharding, steps, xla_options

# Raised by the loop and by checkpoint.py's resume checks; main reports it without a traceback.
TrainingError = ckpt_lib.TrainingError


# ---------------------------------------------------------------------------- config checks
def resolve_data(config: ml_collections.ConfigDict, workdir: Optional[str]) -> None:
  """Resolves `config.data` (lists, class folders, class count; vidjax/data/resolve.py)
  and checks both splits' files, before anything slow; logs what the run reads."""
  lists_dir = (os.path.join(workdir, "data") if workdir
               else tempfile.mkdtemp(prefix="vidjax_lists_"))
  description = resolve.resolve(config, lists_dir)
  if description:
    logging.info("Data: %s.", description)


def _check_num_classes(config: ml_collections.ConfigDict) -> None:
  expected = pipeline.num_classes(config.data)
  if config.model.num_classes != expected:
    raise ValueError(f"config.model.num_classes={config.model.num_classes} but data set "
                     f"{config.data.name!r} has {expected} classes.")


def _check_eval_batch(config: ml_collections.ConfigDict, mesh: Any) -> None:
  """Refuses an eval batch that splits over the devices neither by clip nor by frame."""
  frames = pipeline.splittable_frames(config.data)
  sharding.check_batch_divides(config.eval.batch_size, mesh, num_frames=frames,
                               field="config.eval.batch_size")
  if sharding.splits_frames(config.eval.batch_size, frames, mesh):
    logging.info("config.eval.batch_size=%d is not a multiple of the %d devices: each "
                 "clip's %d frames are split over them.", config.eval.batch_size,
                 sharding.num_batch_shards(mesh), config.data.num_frames)


def _check_best_metric(name: str) -> None:
  known = sorted({f"eval/{k}" for k in metrics_lib.EvalMetrics.__annotations__}
                 | {"eval/skipped_files"})
  if name not in known:
    raise ValueError(f"config.best_metric={name!r} is not an eval metric; expected one of "
                     f"{', '.join(known)}.")


def _warn_past_schedule(config: ml_collections.ConfigDict, total_steps: int,
                        steps_per_epoch: int) -> None:
  """total_steps past optim.epochs trains on at the schedule's final learning rate."""
  end = int(round(config.optim.epochs * steps_per_epoch))
  if total_steps > end:
    logging.warning(
        "config.total_steps=%d runs past the schedule, which ends at step %d "
        "(optim.epochs=%g x %d steps): the learning rate stays at its final value from "
        "there (0 for a cosine to optim.min_lr=0). Raise optim.epochs to stretch it.",
        total_steps, end, config.optim.epochs, steps_per_epoch)


def _describe_model(config: ml_collections.ConfigDict) -> str:
  """`recognizer2d (backbone resnet-50, head tsn, shift)`: the parts a config names."""
  m = config.model
  parts = []
  if m.get("backbone"):   # CLIP-family models have towers, not a backbone and head
    parts.append(f"backbone {m.backbone.name}" + (f"-{m.backbone.depth}" if "depth" in m.backbone
                                                   else ""))
  if m.get("neck") and m.neck.get("name"):
    parts.append(f"neck {m.neck.name}")
  if m.get("head"):
    parts.append(f"head {m.head.name}")
  parts += [k for k in ("shift", "non_local", "ecal") if k in m and m[k].get("enabled")]
  return f"{m.name} ({', '.join(parts)})"


# ---------------------------------------------------------------------------- mesh and model
def _clip_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """One clip of the data: [1, T, S, S, 3] frames, or audio features [1, T, F]."""
  return (1,) + pipeline.example_shape(config.data)


def _abstract_variables(config: ml_collections.ConfigDict, model: Any, rng: jax.Array) -> dict:
  """The model's params and batch_stats as shapes (nothing is computed)."""
  variables = jax.eval_shape(
      lambda r: model.init(r, jnp.zeros(_clip_shape(config), jnp.uint8), train=False), rng)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def _setup(config: ml_collections.ConfigDict):
  mesh = sharding.make_mesh(config.mesh)
  model = models.build_model(config.model)
  # The state arrives in its own shardings; the batch is split over the batch axes.
  eval_fn = jax.jit(functools.partial(steps.eval_step, model=model, fusion=config.eval.fusion),
                    out_shardings=sharding.replicated(mesh),
                    compiler_options=xla_options.compiler_options(
                        config.eval.get("xla_options")))
  return mesh, model, eval_fn


# ---------------------------------------------------------------------------- state
def state_shardings(config: ml_collections.ConfigDict, state: Any, mesh: Any) -> Any:
  """NamedShardings of every leaf of `state` (arrays or shapes) by the config's rules."""
  return sharding.tree_shardings(state, mesh, sharding.rules_from_config(config),
                                 config.get("fsdp_min_size", 2 ** 14))


# The init program runs once, and LLVM's top optimisation level only lengthens its compile:
# level 1 gives the same bits (tests/test_xla_options.py checks it); level 0 would not.
_INIT_XLA_OPTIONS = {"cpu": {"xla_backend_optimization_level": 1}}


def create_train_state(config: ml_collections.ConfigDict, model: Any, tx: Any, mesh: Any,
                       rng: jax.Array) -> tuple[steps.TrainState, Any]:
  """The initial state, created directly in its sharding on the mesh (no device ever
  holds a full copy of an FSDP-sharded tensor); returns it and its shardings."""

  def init(rng):
    variables = model.init({"params": rng, "dropout": rng},
                           jnp.zeros(_clip_shape(config), jnp.uint8), train=False)
    params = variables["params"]
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                            batch_stats=variables.get("batch_stats", {}),
                            opt_state=tx.init(params))

  shardings = state_shardings(config, jax.eval_shape(init, rng), mesh)
  # Traced (jax.eval_shape(create_train_state, ...)), the init joins the outer program,
  # and only a top-level jit takes compiler options.
  traced = isinstance(rng, jax.core.Tracer)
  create = jax.jit(init, out_shardings=shardings, compiler_options=None if traced else
                   xla_options.compiler_options(_INIT_XLA_OPTIONS))
  return create(rng), shardings


def _to_dict(state: steps.TrainState) -> dict:
  return flax.serialization.to_state_dict(state)


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


# ---------------------------------------------------------------------------- steps
def make_train_fn(config: ml_collections.ConfigDict, model: Any, tx: Any, schedule: Any,
                  mesh: Any, shardings: Any) -> Any:
  """The jitted train step: state in its shardings (donated), batch split over devices."""
  repl, data_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(
      functools.partial(steps.train_step, model=model, tx=tx, schedule=schedule,
                        label_smoothing=config.label_smoothing,
                        grad_accum_steps=config.get("grad_accum_steps", 1),
                        bn_groups=steps.bn_groups(config, mesh),
                        batch_shards=sharding.num_batch_shards(mesh),
                        mix=mix.from_config(config.data, config.model.num_classes)),
      in_shardings=(shardings, data_sharding, repl), out_shardings=(shardings, repl, repl),
      donate_argnums=(0,), compiler_options=xla_options.compiler_options(config.get("xla_options")))


@jax.jit
def _first_nonfinite(first: jax.Array, finite: jax.Array, step: int) -> jax.Array:
  """The first step whose loss, gradients or parameters were not finite; 0: none yet."""
  return jnp.where((first == 0) & ~finite, step, first)


def evaluate(config: ml_collections.ConfigDict, state: steps.TrainState, eval_fn: Any,
             mesh: Any, workdir: Optional[str] = None, *,
             tag: Optional[str] = None) -> dict[str, float]:
  """One pass over the eval split; exact over padded batches.

  Process 0 also writes the per-video scores, the per-class table and the confusion
  matrix (eval_outputs.py) as `{tag}_*` files in `config.eval.output_dir` or
  `workdir/eval`; `tag` defaults to `step_{state.step}`.
  """
  totals, outputs = None, []
  batches = pipeline.eval_iterator(config.data, config.eval.batch_size,
                                   num_views=config.eval.num_views)
  # Clips the devices do not divide (e.g. one clip on a CPU split into per-core devices):
  # the devices share each clip's frames instead.
  by_frame = sharding.splits_frames(config.eval.batch_size,
                                    pipeline.splittable_frames(config.data), mesh)
  for batch in batches:
    m, out = eval_fn(state, sharding.global_batch(batch, mesh, by_frame))
    totals = m if totals is None else totals.merge(m)
    outputs.append(out)   # replicated: every process holds the whole batch's rows
  if totals is None:
    raise TrainingError(f"The eval split of data set {config.data.name!r} is empty.")
  results = {f"eval/{k}": float(v) for k, v in totals.compute().items()}
  results["eval/skipped_files"] = float(batches.skipped_files)   # unreadable (masked out)
  directory = eval_outputs.output_dir(config, workdir)
  if directory is None:
    logging.info("No per-video scores written: give --workdir or "
                 "--config.eval.output_dir=DIR.")
  elif jax.process_index() == 0:
    eval_outputs.write_all(directory, tag or f"step_{int(state.step)}",
                           jax.device_get(outputs), batches.files(), batches.class_names(),
                           fusion=config.eval.fusion, num_views=config.eval.num_views)
  return results


# ---------------------------------------------------------------------------- train
def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from `workdir` if it has a checkpoint); returns the final eval."""
  # Imported here: clu's metric writers import TensorFlow, which the state and step
  # builders above (scripts/benchmark.py, accelerator images without TF) do not need.
  from clu import periodic_actions  # pylint: disable=import-outside-toplevel
  from vidjax.train import writers  # pylint: disable=import-outside-toplevel
  workdir = os.path.abspath(os.path.expanduser(workdir))
  resolve_data(config, workdir)
  _check_num_classes(config)
  mesh, model, eval_fn = _setup(config)
  sharding.check_batch_divides(config.batch_size, mesh, field="config.batch_size")
  _check_eval_batch(config, mesh)

  steps_per_epoch = pipeline.steps_per_epoch(config.data, config.batch_size)
  total_steps = config.total_steps if config.total_steps > 0 else int(
      round(config.optim.epochs * steps_per_epoch))
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)

  # Parameter shapes first, for the optimiser's parameter groups and frozen parameters.
  abstract_variables = _abstract_variables(config, model, init_rng)
  abstract_params = abstract_variables["params"]
  tx, schedule = optim.build_optimizer(
      config.optim, abstract_params, steps_per_epoch,
      frozen=models.frozen_param_mask(config.model, abstract_params))

  # The state: initialised, then resumed or taken from init_from.
  state, shardings = create_train_state(config, model, tx, mesh, init_rng)
  checkpointer = ckpt_lib.Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
  ckpt_lib.check_workdir_config(config, workdir,
                                has_checkpoint=checkpointer.latest_step() is not None)
  best = None
  if config.get("best_metric"):
    _check_best_metric(config.best_metric)
    best = ckpt_lib.BestCheckpoint(workdir, config.best_metric,
                                   config.get("best_metric_mode", "auto"))
  train_iter = pipeline.train_iterator(config.data, config.batch_size, seed=config.seed)
  # The newest step that reads back; damaged newer ones are reported and set aside.
  latest, restored = checkpointer.restore_latest(_abstract(_to_dict(state)),
                                                 data_iter=train_iter)
  if latest is not None:
    state = flax.serialization.from_state_dict(state, restored)
    logging.info("Resumed from %s at step %d.", checkpointer.directory, latest)
  elif config.init_from:
    loaded = ckpt_lib.load_variables(config.init_from)
    params, batch_stats = ckpt_lib.merge_init_from(state.params, state.batch_stats, loaded,
                                                   config.init_from_drop, config.init_from)
    params = sharding.put(params, shardings.params)
    state = state.replace(
        params=params, batch_stats=sharding.put(batch_stats, shardings.batch_stats),
        opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(params))
    logging.info("Initialised from %s.", config.init_from)

  start = int(state.step)
  writer = writers.create_writer(workdir, resume_step=start)
  if start == 0:
    num_params = parameter_overview.count_parameters(state.params)
    flops = xla_options.flops_per_clip(model, abstract_variables, _clip_shape(config))
    # The tables go to files; the console gets one line.
    if jax.process_index() == 0:
      # Statistics need every shard on this host: only single-process runs write them.
      prepare.write_atomic(os.path.join(workdir, "parameters.txt"), parameter_overview.
                  get_parameter_overview(state.params, include_stats=jax.process_count() == 1)
                  + "\n\nParameter groups:\n" + optim.param_group_table(state.params,
                                                                         config.optim) + "\n")
    logging.info("Model: %s, %.2fM parameters, %s (tables: %s).", _describe_model(config),
                 num_params / 1e6, "no FLOP count (XLA has no cost analysis here)"
                 if flops is None else f"{flops / 1e9:.3f} GFLOPs per clip",
                 os.path.join(workdir, "parameters.txt"))
    writer.files.write_scalars(0, {"num_params": num_params, "steps_per_epoch": steps_per_epoch}
                         | ({} if flops is None else {"flops_per_clip": flops}))
  writer.files.write_hparams({k: v for k, v in ckpt_lib.flat_config(config).items()
                        if isinstance(v, (int, float, str, bool))})
  _warn_past_schedule(config, total_steps, steps_per_epoch)

  train_fn = make_train_fn(config, model, tx, schedule, mesh, shardings)
  progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer.files,
                                             every_steps=config.log_every_steps,
                                             every_secs=None)
  logging.info("Training for %d steps (%d per epoch) from step %d, global batch %d on "
               "mesh %s (%d processes). Sharded state leaves:\n%s", total_steps,
               steps_per_epoch, start, config.batch_size, dict(mesh.shape),
               jax.process_count(), sharding.describe(shardings, state))

  def run_eval(step: int) -> dict[str, float]:
    # Eval workers are started shielded from the signals, as the train workers are.
    results = preemption.shield_workers(
        lambda: evaluate(config, state, eval_fn, mesh, workdir), config.data.num_workers)
    writer.write_scalars(step, results)
    if best is not None:
      best.update(step, results, {"params": state.params, "batch_stats": state.batch_stats})
    return results

  train_metrics = None
  # The first non-finite step stays on the device, so the host never waits on a step just
  # to check it; it is read where the host waits anyway (log, eval) and before every save.
  first_nonfinite = np.zeros((), np.int32)
  eval_results: dict[str, float] = {}
  t0 = time.time()
  stop = preemption.StopSignals()
  batch = None
  try:
    with stop:
      for step in range(start + 1, total_steps + 1):
        if step == start + 1:  # the first batch starts the data workers
          batch = preemption.shield_workers(lambda: next(train_iter), config.data.num_workers)
        else:
          batch = next(train_iter)
        state, m, finite = train_fn(state, sharding.global_batch(batch, mesh), dropout_rng)
        train_metrics = m if train_metrics is None else train_metrics.merge(m)
        log_now = step % config.log_every_steps == 0 or step == total_steps
        eval_now = (config.eval_every_steps > 0 and step % config.eval_every_steps == 0
                    and step != total_steps)
        save_now = step % config.checkpoint_every_steps == 0 or step == total_steps
        # Asked at every step boundary; a stop saves this step and skips its eval (a
        # preemption leaves seconds, and the eval can run after the resume).
        stop_now = step < total_steps and stop.should_stop(step, log_now or eval_now or save_now)
        log_now, eval_now, save_now = log_now or stop_now, eval_now and not stop_now, \
            save_now or stop_now
        if config.check_finite:
          first_nonfinite = _first_nonfinite(first_nonfinite, finite, step)
          if (log_now or eval_now or save_now) and int(first_nonfinite):
            checkpointer.wait()
            raise TrainingError(
                f"Non-finite loss (or gradients/parameters) at step {int(first_nonfinite)}: "
                f"found at step {step}, training stopped before saving it. The last good "
                f"checkpoint (step {checkpointer.latest_step()}) in {checkpointer.directory} "
                "is intact; lower optim.lr or set optim.clip_grad_norm.")
        progress(step)
        if log_now:
          writer.write_scalars(step, {f"train/{k}": float(v)
                                      for k, v in train_metrics.compute().items()}
                               | {"train/skipped_files": train_iter.skipped_files})
          train_metrics = None
        if eval_now:
          eval_results = run_eval(step)
        if save_now:
          stop.saving = stop_now
          checkpointer.save(step, _to_dict(state), data_iter=train_iter, force=True)
        if stop_now:
          checkpointer.wait()
          message = (f"stopped by {stop.source} at step {step}: saved checkpoint {step} in "
                     f"{checkpointer.directory}; run the same command to resume.")
          logging.warning("%s", message)
          if jax.process_index() == 0:
            print(message, file=sys.stderr, flush=True)
          raise ckpt_lib.TrainingStopped(message, stop.signum or signal.SIGTERM, step,
                                         checkpointer.directory)

      # The final eval.
      if start < total_steps or not eval_results:
        eval_results = run_eval(total_steps)
      checkpointer.wait()
  finally:
    # The workers stop here, and the batches they left in shared memory are freed while
    # the interpreter still runs (an exception's traceback would keep this frame's
    # references to them until exit, where the resource tracker reports them leaked).
    train_iter.close()
    train_iter = batch = None
    if config.data.num_workers:
      gc.collect()
    checkpointer.close()
    writer.close()
  logging.info("Done in %.1f s: %s", time.time() - t0,
               ", ".join(f"{k}={v:.4f}" for k, v in sorted(eval_results.items())))
  return eval_results


def evaluate_only(config: ml_collections.ConfigDict, workdir: str,
                  checkpoint: Optional[str] = None) -> dict[str, float]:
  """Evaluates the latest checkpoint of `workdir`, or `checkpoint` / `config.init_from`."""
  if config.data.get("sources"):   # the training sources: evaluation reads eval_list only
    config.data.sources = ()
  resolve_data(config, workdir and os.path.abspath(os.path.expanduser(workdir)))
  _check_num_classes(config)
  mesh, model, eval_fn = _setup(config)
  _check_eval_batch(config, mesh)
  source = checkpoint or (workdir if workdir and os.path.isdir(
      os.path.join(workdir, "checkpoints")) else config.init_from)
  if not source:
    raise ckpt_lib.CheckpointError(
        f"--mode eval: no checkpoint in workdir {workdir!r} and config.init_from is empty.")
  variables = ckpt_lib.load_variables(source)
  template = _abstract_variables(config, model, jax.random.key(0))
  params, batch_stats = ckpt_lib.merge_init_from(template["params"], template["batch_stats"],
                                                 variables, r"$^", source)
  host_state = steps.TrainState(step=np.zeros((), np.int32), params=params,
                                batch_stats=batch_stats, opt_state=())
  state = sharding.put(host_state, state_shardings(config, host_state, mesh))
  results = evaluate(config, state, eval_fn, mesh, workdir,
                     tag=eval_outputs.checkpoint_tag(source, config.eval.num_views))
  logging.info("Evaluated %s: %s", source,
               ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))
  return results
