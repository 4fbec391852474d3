"""Fault injection: signals, kills, damaged checkpoints, a full disk.

What vidjax promises (README, "Faults"): a kill loses at most the
steps since the last checkpoint and the rerun ends bit-identical to an uninterrupted run;
SIGTERM and SIGINT stop at the next step boundary with a checkpoint of that step; a step
that cannot be read is reported in one line and resume falls back to the newest intact
one; a failed save leaves the earlier steps intact and names the path.
"""

import errno
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from conftest import ROOT, shared_run, subprocess_env
from test_train_loop import _SMALL_LR, _assert_trees_equal, _smoke
from vidjax.checkpoint import load_variables
from vidjax.train import checkpoint as ckpt_lib
from vidjax.train import preemption, trainer, writers

_REFERENCE = dict(total_steps=4, log_every_steps=1, checkpoint_every_steps=2,
                  eval_every_steps=2, best_metric="eval/top1", **_SMALL_LR)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 4-step smoke run: checkpoints 2 and 4, evals at 2 and 4, best kept."""
  config = _smoke(**_REFERENCE)
  workdir, results = shared_run(tmp_path_factory, "faults_reference",
                                lambda d: trainer.run(config, d))
  return config, workdir, results


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A workdir with checkpoints 2 and 4 of a small state and a grain data position."""
  import grain
  workdir = str(tmp_path_factory.mktemp("saved"))
  rng = np.random.default_rng(0)
  data = iter(grain.MapDataset.range(100).to_iter_dataset())
  checkpointer = ckpt_lib.Checkpointer(workdir)
  for step in (2, 4):
    next(data)
    state = {"params": {"w": rng.normal(size=(256, 256)).astype(np.float32),
                        "b": rng.normal(size=(256,)).astype(np.float32)},
             "batch_stats": {"mean": rng.normal(size=(64,)).astype(np.float32)}}
    checkpointer.save(step, state, data_iter=data, force=True)
  checkpointer.close()
  return workdir


def _restore_latest(workdir):
  """(step, state, data position) of the newest intact step of `workdir`."""
  import grain
  data = iter(grain.MapDataset.range(100).to_iter_dataset())
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    step, state = checkpointer.restore_latest(
        _abstract_state(f"{workdir}/checkpoints/2"), data_iter=data)
  finally:
    checkpointer.close()
  return step, state, next(data)


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _records(workdir):
  return writers.read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def _assert_no_repeated_entries(workdir):
  seen = set()
  for r in _records(workdir):
    for k in r:
      if k != "step":
        assert (r["step"], k) not in seen, f"step {r['step']} has {k} twice"
        seen.add((r["step"], k))


def _curve(workdir, key="train/loss"):
  return {r["step"]: r[key] for r in _records(workdir) if key in r}


def _copy(workdir, tmp_path):
  target = str(tmp_path / "work")
  shutil.copytree(workdir, target)
  return target


def _data_files(step_dir):
  """The array data files of a step, largest first."""
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
  return sorted(files, key=os.path.getsize, reverse=True)


def _abstract_state(step_dir):
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  meta = ocp.StandardCheckpointHandler().metadata(epath.Path(step_dir) / "state")
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)


def _warnings(caplog, text):
  return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ---------------------------------------------------------------------------- signals
@pytest.mark.slow
def test_sigterm_stops_at_the_step_boundary_and_resumes_exactly(reference, tmp_path,
                                                                  monkeypatch, caplog):
  """SIGTERM during step 3 (not a save step): the loop saves step 3 and stops with exit
  status 143; a SIGINT during that save changes nothing; the rerun ends as the
  uninterrupted run, with one metrics entry per step."""
  config, ref_dir, ref_results = reference
  workdir = str(tmp_path)
  make_train_fn, save = trainer.make_train_fn, ckpt_lib.Checkpointer.save

  def signalled(*args, **kwargs):
    train_fn = make_train_fn(*args, **kwargs)

    def step_fn(state, batch, rng):
      out = train_fn(state, batch, rng)
      if int(out[0].step) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      return out

    return step_fn

  def save_signalled(self, step, *args, **kwargs):
    if step == 3:
      os.kill(os.getpid(), signal.SIGINT)  # a second signal while the stop saves
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(trainer, "make_train_fn", signalled)
  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_signalled)
  handlers = {s: signal.getsignal(s) for s in preemption.SIGNALS}
  with pytest.raises(ckpt_lib.TrainingStopped) as stopped:
    trainer.run(config, workdir)
  assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.step == 3
  assert str(stopped.value) == (f"stopped by SIGTERM at step 3: saved checkpoint 3 in "
                                f"{workdir}/checkpoints; run the same command to resume.")
  assert _warnings(caplog, "SIGINT received again: saving the checkpoint")
  assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == handlers
  assert _steps(workdir) == [2, 3] and max(_curve(workdir)) == 3

  monkeypatch.undo()
  assert trainer.run(config, workdir) == ref_results
  _assert_trees_equal(load_variables(ref_dir), load_variables(workdir))
  assert _curve(workdir) == _curve(ref_dir)
  _assert_no_repeated_entries(workdir)


# ---------------------------------------------------------------------------- damage
@pytest.mark.parametrize("damage", ["truncated", "emptied", "file removed", "item removed"])
def test_damaged_step_is_named_in_one_line_and_skipped(saved, tmp_path, caplog, damage):
  workdir = _copy(saved, tmp_path)
  step_dir = os.path.join(workdir, "checkpoints", "4")
  victim = _data_files(step_dir)[0]
  expected = {"truncated": f"{victim} is truncated (100 bytes)",
              "emptied": f"{os.path.relpath(victim, step_dir)} is empty",
              "file removed": "/checkpoints/4/state/ is missing or damaged",
              "item removed": "data/ is missing"}[damage]
  if damage == "truncated":
    os.truncate(victim, 100)
  elif damage == "emptied":
    open(victim, "w").close()
  elif damage == "file removed":
    os.remove(victim)
  else:
    shutil.rmtree(os.path.join(step_dir, "data"))
  files = sorted(os.path.relpath(f, step_dir) for f in glob.glob(f"{step_dir}/**", recursive=True))

  step, state, next_example = _restore_latest(workdir)
  assert step == 2 and next_example == 1  # step 2's state and data position
  lines = _warnings(caplog, "checkpoint step 4")
  assert len(lines) == 1 and "\n" not in lines[0], lines
  assert lines[0].startswith(f"checkpoint step 4 in {workdir}/checkpoints cannot be read: ")
  assert expected in lines[0] and lines[0].endswith("and resumed from step 2."), lines[0]
  moved = os.path.join(workdir, "damaged_checkpoints", "4")
  assert f"moved it to {moved}" in lines[0]
  assert sorted(os.path.relpath(f, moved)
                for f in glob.glob(f"{moved}/**", recursive=True)) == files  # nothing deleted
  _assert_trees_equal(state, load_variables(f"{saved}/checkpoints/2"))
  assert _steps(workdir) == [2]  # step 4 can be saved again


@pytest.mark.slow
def test_resume_after_a_damaged_step_is_exact(reference, tmp_path, caplog):
  """The newest step lost its data position: the run resumes from step 2, redoes steps 3
  and 4 and ends as the uninterrupted run; metrics.jsonl keeps one entry per step, and
  the best checkpoint (not beaten by the same evaluations) stays."""
  config, ref_dir, ref_results = reference
  workdir = _copy(ref_dir, tmp_path)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4", "data"))
  best_before = ckpt_lib.read_best(f"{workdir}/best")
  assert trainer.run(config, workdir) == ref_results
  assert _warnings(caplog, "checkpoint step 4 in")[0].startswith(
      f"checkpoint step 4 in {workdir}/checkpoints cannot be read: data/ is missing;")
  _assert_trees_equal(load_variables(ref_dir), load_variables(workdir))
  assert _curve(workdir) == _curve(ref_dir)
  assert _curve(workdir, "eval/top1") == _curve(ref_dir, "eval/top1")
  _assert_no_repeated_entries(workdir)
  assert ckpt_lib.read_best(f"{workdir}/best") == best_before


def test_no_intact_step_is_one_line_and_nothing_is_deleted(saved, tmp_path):
  workdir = _copy(saved, tmp_path)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  open(_data_files(f"{ckpt_dir}/4")[0], "w").close()
  os.truncate(_data_files(f"{ckpt_dir}/2")[0], 10)
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    _restore_latest(workdir)
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"No intact checkpoint in {ckpt_dir}: ")
  assert "is empty (step 4)" in message and "is truncated (10 bytes) (step 2)" in message
  assert message.endswith("Nothing was deleted; start fresh with a new --workdir "
                          f"(or move {ckpt_dir} away).")
  assert _steps(workdir) == [2, 4] and not os.path.exists(f"{workdir}/damaged_checkpoints")
  # Evaluation and init_from read the newest step, and say what is wrong with it.
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    load_variables(workdir)
  assert str(e.value).startswith(f"checkpoint step 4 in {ckpt_dir} cannot be read: ")
  assert "is empty" in str(e.value) and "\n" not in str(e.value)


def test_healthy_checkpoints_load_without_warnings(saved, caplog):
  """The step-level _CHECKPOINT_METADATA sits beside the items, not in them: reading an
  item by itself must not look for it there (orbax warned on every evaluation)."""
  variables = load_variables(saved)
  assert variables["params"]["w"].shape == (256, 256)
  assert not [r for r in caplog.records if r.levelno >= 30], caplog.text


# ---------------------------------------------------------------------------- saving
def _failing_writes(monkeypatch, fragment, error):
  """Makes orbax's and grain's small-file writes under paths containing `fragment` fail."""
  cls = type(epath.Path("/"))
  write_text = cls.write_text

  def failing(self, *args, **kwargs):
    if fragment in os.fspath(self):
      raise OSError(error, os.strerror(error), os.fspath(self))
    return write_text(self, *args, **kwargs)

  monkeypatch.setattr(cls, "write_text", failing)


@pytest.mark.slow
def test_disk_full_during_a_save_keeps_the_previous_step(reference, tmp_path, monkeypatch):
  _, ref_dir, _ = reference
  workdir = str(tmp_path)
  config = _smoke(**(_REFERENCE | dict(total_steps=2, checkpoint_every_steps=1,
                                       eval_every_steps=-1, best_metric="")))
  _failing_writes(monkeypatch, "/checkpoints/2.", errno.ENOSPC)
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    trainer.run(config, workdir)
  message = str(e.value)
  assert message.startswith(f"Could not save checkpoint step 2 in {workdir}/checkpoints: "
                            f"No space left on device: {workdir}/checkpoints/2.")
  assert "the previous checkpoint (step 1) is intact" in message and "\n" not in message
  assert _steps(workdir) == [1]
  monkeypatch.undo()
  trainer.run(config, workdir)  # resumes from step 1
  _assert_trees_equal(load_variables(f"{ref_dir}/checkpoints/2"), load_variables(workdir))


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES], ids=["disk full", "unwritable"])
def test_failed_save_names_the_path_and_keeps_the_previous_step(saved, tmp_path, monkeypatch,
                                                                error):
  """A full disk or a directory that cannot be written, simulated in orbax's and grain's
  writes of step 6; the run's own test (slow) resumes after it."""
  import grain
  workdir = _copy(saved, tmp_path)
  checkpointer = ckpt_lib.Checkpointer(workdir)
  _failing_writes(monkeypatch, "/checkpoints/6.", error)
  data = iter(grain.MapDataset.range(100).to_iter_dataset())
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    checkpointer.save(6, {"x": np.arange(3.0)}, data_iter=data, force=True)
  checkpointer.close()
  message = str(e.value)
  assert message.startswith(f"Could not save checkpoint step 6 in {workdir}/checkpoints: "
                            f"{os.strerror(error)}: {workdir}/checkpoints/6."), message
  assert "the previous checkpoint (step 4) is intact" in message and "\n" not in message
  monkeypatch.undo()
  step, _, _ = _restore_latest(workdir)
  assert step == 4 and _steps(workdir) == [2, 4]


def test_unwritable_workdir_is_named(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=rf"Cannot create the checkpoint directory {tmp_path}/file/checkpoints"):
    ckpt_lib.Checkpointer(str(tmp_path / "file"))


# ---------------------------------------------------------------------------- signals, unit
def test_stop_signals_record_the_first_signal_and_restore_the_handlers(caplog):
  handlers = {s: signal.getsignal(s) for s in preemption.SIGNALS}
  with preemption.StopSignals() as stop:
    assert not stop.should_stop(1, host_waits=True)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.should_stop(2, host_waits=False) and stop.source == "SIGTERM"
    os.kill(os.getpid(), signal.SIGINT)  # repeats the request; no KeyboardInterrupt
    assert stop.signum == signal.SIGTERM
  assert _warnings(caplog, "SIGTERM received: stopping after the current step")
  assert _warnings(caplog, "SIGINT received again")
  assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == handlers


def test_shielded_worker_processes_ignore_sigint_and_sigterm():
  """A process started under `shield_workers` ignores both signals from birth (its
  SigIgn mask); the parent has its handlers back as soon as the process exists."""
  import multiprocessing
  ctx = multiprocessing.get_context("spawn")
  with preemption.StopSignals() as stop:
    ours = signal.getsignal(signal.SIGTERM)

    def start():
      p = ctx.Process(target=time.sleep, args=(30,), daemon=True)
      p.start()
      return p

    worker = preemption.shield_workers(start, num_workers=1)
    assert signal.getsignal(signal.SIGTERM) == ours == signal.getsignal(signal.SIGINT)
    try:
      with open(f"/proc/{worker.pid}/status") as f:
        ignored = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
      assert ignored & (1 << (signal.SIGINT - 1)) and ignored & (1 << (signal.SIGTERM - 1))
      os.kill(worker.pid, signal.SIGINT)
      os.kill(worker.pid, signal.SIGTERM)
      worker.join(0.5)
      assert worker.is_alive()
    finally:
      worker.kill()
      worker.join()
    assert stop.signum is None


# ---------------------------------------------------------------------------- best, metrics
@pytest.mark.slow
def test_best_checkpoint_holds_the_best_evaluation(reference):
  _, ref_dir, _ = reference
  evals = _curve(ref_dir, "eval/top1")
  assert sorted(evals) == [2, 4]
  best = ckpt_lib.read_best(f"{ref_dir}/best")
  first_best = min(s for s, v in evals.items() if v == max(evals.values()))
  assert best == {"step": first_best, "metric": "eval/top1", "mode": "max",
                  "value": pytest.approx(evals[first_best])}
  assert set(os.listdir(f"{ref_dir}/best")) == {"best.json", str(first_best)}
  _assert_trees_equal(load_variables(f"{ref_dir}/best"),
                      load_variables(f"{ref_dir}/checkpoints/{first_best}"))


def test_best_metric_is_checked_and_its_direction_inferred(tmp_path):
  with pytest.raises(ValueError, match=r"config.best_metric='eval/accuracy' is not an eval "
                                       r"metric; expected one of eval/loss, "):
    trainer._check_best_metric("eval/accuracy")
  assert ckpt_lib.best_mode("eval/loss", "auto") == "min"
  assert ckpt_lib.best_mode("eval/top1", "auto") == "max"
  best = ckpt_lib.BestCheckpoint(str(tmp_path), "eval/loss")
  variables = {"params": {"w": np.ones(2, np.float32)}}
  assert best.update(2, {"eval/loss": 1.0}, variables)
  assert not best.update(4, {"eval/loss": 1.5}, variables)
  assert best.update(6, {"eval/loss": 0.5}, {"params": {"w": np.zeros(2, np.float32)}})
  assert ckpt_lib.read_best(str(tmp_path / "best"))["step"] == 6
  assert set(os.listdir(tmp_path / "best")) == {"6", "best.json"}
  np.testing.assert_array_equal(load_variables(str(tmp_path / "best"))["params"]["w"], [0, 0])
  # A resumed run only replaces it with a better value.
  assert not ckpt_lib.BestCheckpoint(str(tmp_path), "eval/loss").is_better(0.7)


def test_metrics_jsonl_drops_steps_the_resumed_run_redoes(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  writer = writers.JsonlWriter(path)
  for step in range(5):
    writer.write_scalars(step, {"train/loss": float(step)})
  writer.write_scalars(4, {"eval/top1": 0.5})
  writer.close()
  with open(path, "a") as f:
    f.write('{"step": 5, "train/lo')  # a line cut short by a kill
  writer = writers.JsonlWriter(path, resume_step=2)
  assert [r["step"] for r in writers.read_jsonl(path)] == [0, 1, 2]
  writer.write_scalars(2, {"eval/top1": 0.25, "train/loss": 7.0})  # rewritten for step 2
  writer.write_scalars(3, {"train/loss": 3.0})
  writer.close()
  assert writers.read_jsonl(path) == [
      {"step": 0, "train/loss": 0.0}, {"step": 1, "train/loss": 1.0},
      {"step": 2, "eval/top1": 0.25, "train/loss": 7.0}, {"step": 3, "train/loss": 3.0}]


# ---------------------------------------------------------------------------- processes
def _launch(workdir, *extra, **popen):
  args = ["--config", "configs/tsn_r50.py:smoke", "--workdir", str(workdir),
          *(f"--config.{k}={v}" for k, v in _REFERENCE.items()), *extra]
  return subprocess.Popen([sys.executable, "-m", "vidjax.main", *args], cwd=ROOT,
                          env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **popen)


def _wait_for_step(proc, workdir, step, timeout=600):
  """Waits until metrics.jsonl records `step` (log_every_steps=1)."""
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path):
      with open(path) as f:
        steps = [json.loads(l)["step"] for l in f if l.endswith("\n")]
      if steps and max(steps) >= step:
        return max(steps)
    time.sleep(0.02)
  raise AssertionError(f"step {step} never came: {proc.poll()} {proc.stderr.read()[-3000:]}")


def _stop_line(err, name):
  """The step of the one 'stopped by NAME at step N: ...' line of `err`."""
  lines = [l for l in err.splitlines() if l.startswith(f"stopped by {name} at step ")]
  assert len(lines) == 1, err[-3000:]
  return int(lines[0].split("at step ")[1].split(":")[0]), lines[0]


@pytest.mark.slow
def test_sigterm_then_kill_9_then_resume_is_bit_identical(tmp_path):
  """`vidjax.main` runs in one workdir (6 steps, checkpoints every 2), stopped two ways in
  turn, each rerun resuming where the last left off:

  - `kill -TERM` at step 1: exit status 143 and one line naming the step it saved (the
    step after the signal);
  - SIGKILL at one of the next two steps: the steps since the last checkpoint are lost
    and redone.

  The last rerun ends with the parameters and losses of an uninterrupted in-process run,
  and metrics.jsonl has one entry per step and name."""
  total = 6
  reference_dir = str(tmp_path / "reference")
  trainer.run(_smoke(**(_REFERENCE | dict(total_steps=total))), reference_dir)
  workdir = str(tmp_path / "stopped")
  steps = f"--config.total_steps={total}"

  proc = _launch(workdir, steps)
  seen = _wait_for_step(proc, workdir, 1)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 143, err[-3000:]
  stopped_at, line = _stop_line(err, "SIGTERM")
  assert seen <= stopped_at <= 3, err[-3000:]
  assert line == (f"stopped by SIGTERM at step {stopped_at}: saved checkpoint {stopped_at} in "
                  f"{workdir}/checkpoints; run the same command to resume.")
  assert stopped_at in _steps(workdir) and max(_curve(workdir)) == stopped_at
  assert "Traceback" not in err

  proc = _launch(workdir, steps)
  killed_at = _wait_for_step(proc, workdir, random.Random(0).randint(stopped_at + 1,
                                                                     stopped_at + 2))
  proc.kill()
  _, err = proc.communicate()
  assert f"Resumed from {workdir}/checkpoints at step {stopped_at}." in err
  assert killed_at < total, f"killed too late: {killed_at}"

  proc = _launch(workdir, steps)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  _assert_trees_equal(load_variables(reference_dir), load_variables(workdir))
  assert _curve(workdir) == _curve(reference_dir)
  _assert_no_repeated_entries(workdir)


@pytest.mark.slow
def test_ctrl_c_with_data_workers_stops_cleanly(tmp_path):
  """SIGINT to the whole process group (as Ctrl-C in a terminal) with two grain worker
  processes: exit status 130, no traceback from the workers, no leaked shared memory, and
  the step it names is saved (resuming with workers: tests/test_data_pipeline.py)."""
  workdir = str(tmp_path)
  proc = _launch(workdir, "--config.total_steps=6", "--config.eval_every_steps=-1",
                 "--config.data.num_workers=2", start_new_session=True)
  _wait_for_step(proc, workdir, 2)
  os.killpg(proc.pid, signal.SIGINT)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 130, err[-3000:]
  step, _ = _stop_line(err, "SIGINT")
  for noise in ("Traceback", "KeyboardInterrupt", "leaked shared_memory", "resource_tracker"):
    assert noise not in err, err[-3000:]
  assert step in _steps(workdir)


@pytest.mark.slow
# The all-gather fallback (no preemption service) is the same run with
# JAX_ENABLE_PREEMPTION_SERVICE=false; it passed too, and is left out of the suite for time.
@pytest.mark.parametrize("service", ["jax preemption sync"])
def test_two_processes_stop_at_the_same_step(tmp_path, service):
  """Two processes joined by jax.distributed; Ctrl-C reaches only process 1. Both stop
  after the same step, each saving its part of one checkpoint, and both resume from it.
  With JAX's preemption service, process 0 learns of a preemption notice (exit 143);
  without it, the all-gathered flag carries the SIGINT itself (exit 130)."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  workdir = tmp_path / "work"
  jax_sync = service == "jax preemption sync"

  def launch(pid):
    return subprocess.Popen(
        [sys.executable, "-m", "vidjax.main", "--config", "configs/tsn_r50.py:smoke",
         "--workdir", str(workdir), "--config.total_steps=12", "--config.log_every_steps=1",
         "--config.checkpoint_every_steps=4", f"--config.optim.lr={_SMALL_LR['optim.lr']}",
         f"--config.distributed.coordinator_address=localhost:{port}",
         "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}"],
        cwd=ROOT, env=subprocess_env(JAX_PLATFORMS="cpu",
                                     JAX_ENABLE_PREEMPTION_SERVICE=str(jax_sync).lower()),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  procs = [launch(0), launch(1)]
  _wait_for_step(procs[0], str(workdir), 2)
  procs[1].send_signal(signal.SIGINT)
  errs = [p.communicate(timeout=600)[1] for p in procs]
  assert [p.returncode for p in procs] == [143 if jax_sync else 130, 130], [
      e[-2000:] for e in errs]
  stops = [[l for l in e.splitlines() if "stopped by" in l and "trainer.py" in l] for e in errs]
  steps = {int(s[0].split("at step ")[1].split(":")[0]) for s in stops}
  assert len(steps) == 1, stops
  step = steps.pop()
  assert 2 <= step < 12 and "stopped by SIGINT" in stops[1][0]
  assert sorted(os.listdir(workdir / "checkpoints" / str(step) / "data")) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]
  procs = [launch(0), launch(1)]
  errs = [p.communicate(timeout=600)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errs]
  assert f"at step {step}." in errs[0] and f"at step {step}." in errs[1]
  _assert_no_repeated_entries(str(workdir))
