"""Stopping a run cleanly on SIGTERM or SIGINT (a preemption notice, Ctrl-C).

The signal handlers only record the signal; the train loop asks `StopSignals.should_stop`
at every step boundary, saves a checkpoint there, and exits (see
`checkpoint.TrainingStopped`). On several processes every process must stop at the same
step, since each writes its shards of one checkpoint:

* With JAX's preemption service (started by `jax.distributed.initialize` unless
  `jax_enable_preemption_service` is off), JAX catches SIGTERM itself and its
  coordination service also receives the Cloud TPU maintenance notices. The loop calls
  `multihost_utils.reached_preemption_sync_point(step)` at every step, as the service
  requires; it turns True on every process at the same step (the largest step any
  process had reached, plus one). SIGINT is passed on to it as a SIGTERM.
* Without it, the processes' flags are all-gathered at the steps where the host waits for
  the devices anyway (log, eval and save steps): no extra synchronisation, and the stop
  comes at most `log_every_steps` later.

Grain's worker processes (`data.num_workers`) must not see the signals: Ctrl-C reaches the
whole process group, and a worker killed mid-batch prints a traceback and leaks its
shared memory. `shield_workers` starts them with both signals ignored; the loop closes
them itself when it stops.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _preemption_service_running() -> bool:
  try:
    from jax._src import distributed  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  state = distributed.global_state
  return (getattr(state, "client", None) is not None
          and getattr(state, "preemption_sync_manager", None) is not None)


class StopSignals:
  """Context manager: while it is active, SIGTERM and SIGINT ask the loop to stop.

  Outside the main thread (where Python cannot install handlers) it does nothing.
  """

  def __init__(self):
    self.signum: Optional[int] = None
    self.saving = False
    self._previous: dict[int, Any] = {}
    self._multi = jax.process_count() > 1
    self._jax_sync = self._multi and _preemption_service_running()

  @property
  def source(self) -> str:
    """How the stop was asked for, for the user's line."""
    if self.signum is not None:
      return signal.Signals(self.signum).name
    return "a preemption notice (SIGTERM on one of the processes)"

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is not threading.main_thread():
      return self
    for sig in SIGNALS:
      if sig == signal.SIGTERM and self._jax_sync:
        continue  # JAX's own handler tells the other processes
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.signum is None:
      self.signum = signum
      logging.warning("%s received: stopping after the current step, then saving a "
                      "checkpoint.", name)
      if self._jax_sync and signum != signal.SIGTERM:
        signal.raise_signal(signal.SIGTERM)  # to JAX's handler, which tells the others
    else:
      # The save is atomic (orbax renames a complete directory), so even a kill -9 now
      # leaves every checkpoint readable; another signal only repeats the request.
      logging.warning("%s received again: %s; kill -9 stops at once, losing only the steps "
                      "since the last checkpoint.", name,
                      "saving the checkpoint" if self.saving else "stopping at the next step")

  def should_stop(self, step: int, host_waits: bool) -> bool:
    """Whether to stop after `step`; the same answer on every process.

    Args:
      step: the step just run.
      host_waits: whether the host waits for the devices at this step anyway (log, eval
        or save); the all-gather fallback only runs there.
    """
    if not self._multi:
      return self.signum is not None
    # pylint: disable-next=import-outside-toplevel
    from jax.experimental import multihost_utils
    if self._jax_sync:
      return multihost_utils.reached_preemption_sync_point(step)
    if not host_waits:
      return False
    flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
    asked = int(np.max(flags))
    if asked and self.signum is None:
      self.signum = asked
    return bool(asked)


def shield_workers(start: Callable[[], Any], num_workers: int, timeout_s: float = 120.0) -> Any:
  """Runs `start()`, which starts `num_workers` worker processes, so that they ignore
  SIGTERM and SIGINT; returns its result.

  An ignored signal stays ignored in a spawned process, and Python then installs no
  KeyboardInterrupt handler there. The parent ignores the signals only until the new
  processes exist (milliseconds: `start` runs in a thread while this one watches), and
  its own handlers are back while the workers import and read.
  """
  if num_workers <= 0 or threading.current_thread() is not threading.main_thread():
    return start()
  before = set(multiprocessing.active_children())
  result: dict[str, Any] = {}

  def target():
    try:
      result["value"] = start()
    except BaseException as e:  # pylint: disable=broad-except
      result["error"] = e

  previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
  thread = threading.Thread(target=target, name="vidjax-start-workers", daemon=True)
  try:
    thread.start()
    deadline = time.monotonic() + timeout_s
    while thread.is_alive() and time.monotonic() < deadline:
      if len(set(multiprocessing.active_children()) - before) >= num_workers:
        break
      time.sleep(0.005)
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  while thread.is_alive():
    thread.join(0.1)  # short waits: the main thread runs the signal handlers meanwhile
  if "error" in result:
    raise result["error"]
  return result.get("value")
