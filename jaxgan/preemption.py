"""Stopping a training run at a step boundary: the signal flag and the agreement between processes.

:class:`StopSignal` turns SIGTERM/SIGINT into a flag that the training loop
reads at each step boundary (a second SIGINT interrupts at once).

Start-up (:func:`install_early`, :func:`check_startup`): the ``jaxgan train``
program catches both signals from the first line of ``cli.main``; a signal
before the loop ends a one-process run at the end of the current start-up
phase (joining the job, calibration, restore, compilation) with exit status 0
and one line (:class:`StartupStop`), and otherwise hands its flag to the loop.

:class:`StopAgreement` makes every process of a multi-process job stop at the
same step when *any* of them got a signal: on a pod the signal reaches hosts at
different step boundaries, and a process that saves alone (Orbax waits for all)
while the others run the next step's collectives hangs the job. At every step
boundary each process contributes its flag to a tiny collective (an all-gather
of one int32 per device, the signal number or 0) over the training mesh. The
result of the vote taken at boundary ``s`` is read at boundary ``s + 1``, by
when it has long finished (the read does not wait for step ``s + 1``, which is
already dispatched, so the loop keeps one step in flight). Every process makes
the same calls in the same order, so all read the same votes at the same steps
and stop together, one step after the first signal. One process runs no
collective and stops at the boundary after its signal, exactly as before.

JAX's own preemption service (``multihost_utils.reached_preemption_sync_point``,
on by default with ``jax.distributed``) catches SIGTERM in C++ from
``jax.distributed.initialize`` on, until the loop's Python handler replaces it.
A SIGTERM in that window (start-up, restore, compilation) reaches only the
service, so :meth:`StopAgreement.poll` also asks it, with a count of this
loop's boundaries (equal on all processes, as the service requires): its own
protocol, through the coordination service, picks one boundary for all (the
first, for a notice that came before the loop). The vote covers SIGTERM and
SIGINT alike during the loop, on every backend (tested with gloo on CPU).
"""
from __future__ import annotations

import logging
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)


class StopSignal:
  """SIGTERM/SIGINT set a flag the loop checks at each step boundary; a second SIGINT interrupts at once.

  ``requested`` is the signal's name (``"SIGTERM"``) once one arrived, else None;
  ``signum`` its number (0 before). Handlers are installed only in the main thread.
  """

  def __init__(self, notice: str = "saving a checkpoint at the next step boundary") -> None:
    self.requested: str | None = None
    self.signum = 0
    self._previous: dict = {}
    self._notice = notice

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested, self.signum = name, int(signum)
    log.warning("%s received: %s (Ctrl-C again to abort)", name, self._notice)

  def __enter__(self) -> "StopSignal":
    early = _EARLY
    if early is not None and early is not self and early.requested and not self.requested:
      self.requested, self.signum = early.requested, early.signum   # a signal of the start-up: the loop takes over
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class StartupStop(Exception):
  """A SIGTERM/SIGINT arrived during start-up (before the training loop); the message says where.

  Nothing of the run is lost: no training step ran in this process, so the
  workdir holds what it held. ``jaxgan train`` reports it on one line and exits 0.
  """


_EARLY: StopSignal | None = None


def install_early() -> StopSignal:
  """Catch SIGTERM/SIGINT from now on (the ``jaxgan train`` program does this first) until :func:`release_early`.

  A signal sets a flag: :func:`check_startup` (called between the start-up
  phases) then ends a one-process run with :class:`StartupStop`, and the training
  loop's :class:`StopSignal` inherits the flag (several processes stop together,
  at the first step boundary, through :class:`StopAgreement`).
  """
  global _EARLY
  release_early()
  _EARLY = StopSignal(notice="stopping before training starts").__enter__()
  return _EARLY


def release_early() -> str | None:
  """Restore the handlers that :func:`install_early` replaced; returns the signal's name if one came."""
  global _EARLY
  early, _EARLY = _EARLY, None
  if early is None:
    return None
  early.__exit__(None, None, None)
  return early.requested


def check_startup(where: str) -> None:
  """Raise :class:`StartupStop` when a signal came during start-up (``where``: the phase just finished).

  Only in a one-process run: with several processes none may leave alone (the
  others would wait for it in a collective), so the training loop stops them all
  at its first step boundary instead.
  """
  early = _EARLY
  if early is None or not early.requested or jax.distributed.is_initialized():
    return
  raise StartupStop(f"stopped by {early.requested} during start-up ({where}), before any training step of this "
                    "run: nothing was lost; run the same command to resume")


class StopAgreement:
  """All processes decide together whether to stop; call :meth:`poll` once per step boundary on every process.

  ``mesh``: the training mesh (the vote runs on its devices, after the step
  dispatched before it). With one process ``poll`` returns the local request at
  once and runs nothing on the devices.
  """

  def __init__(self, stop: StopSignal, mesh: Mesh) -> None:
    self._stop = stop
    self._mesh = mesh
    self._multi = jax.process_count() > 1
    self._pending = None     # the device result of the previous boundary's vote
    self._boundaries = 0     # polls so far: the same count on every process
    self._service = self._multi   # JAX's preemption service: asked while it answers
    if self._multi:
      self._in = NamedSharding(mesh, P(mesh.axis_names))
      self._n_local = len(mesh.local_devices)
      self._gather = jax.jit(lambda flags: flags, out_shardings=NamedSharding(mesh, P()))
      self._inputs: dict[int, jax.Array] = {}

  def poll(self, step: int) -> str | None:
    """None to go on, else why every process stops after ``step`` (``"SIGTERM"``, ``"SIGTERM on process 1"``)."""
    if not self._multi:
      return self._stop.requested
    self._boundaries += 1
    notice = self._service_notice()
    vote = self._gather(self._flags(self._stop.signum))
    previous, self._pending = self._pending, vote
    flags = np.asarray(previous.addressable_data(0)) if previous is not None else np.zeros((1,), np.int32)
    if not (notice or flags.any()):
      return None
    return self._describe(flags, notice, step)

  def _flags(self, signum: int) -> jax.Array:
    """This process's flag on each of its devices, as the global [devices] array (kept: it rarely changes)."""
    if signum not in self._inputs:
      local = np.full((self._n_local,), signum, np.int32)
      self._inputs[signum] = jax.make_array_from_process_local_data(self._in, local)
    return self._inputs[signum]

  def _service_notice(self) -> bool:
    if not self._service:
      return False
    try:
      return bool(multihost_utils.reached_preemption_sync_point(self._boundaries))
    except RuntimeError:   # the service is off (jax_enable_preemption_service=False)
      self._service = False
      return False

  def _describe(self, flags: np.ndarray, notice: bool, step: int) -> str:
    by_process: dict[int, int] = {}
    for device, signum in zip(self._mesh.devices.flat, flags):
      if signum:
        by_process.setdefault(int(device.process_index), int(signum))
    parts = [f"{signal.Signals(s).name} on process {p}" for p, s in sorted(by_process.items())]
    if notice:
      parts.append("JAX preemption notice: SIGTERM before the training loop")
    reason = ", ".join(parts)
    log.warning("process %d of %d: stopping at step %d with all processes (%s)", jax.process_index(),
                jax.process_count(), step, reason)
    return reason
