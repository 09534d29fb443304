"""jaxgan.preemption: one process stops on its own signal at once; several agree on the stop step.

The multi-process cases run tests/preemption_worker.py twice (a two-process
job that only votes, no model: quick to start). The full training case (two
`jaxgan train` processes, SIGTERM to one, bit-exact resume) is in
tests/test_multiprocess.py.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import pytest

from jaxgan import parallel, preemption

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("preemption_worker.py")


def test_one_process_stops_at_the_boundary_after_its_signal():
  if threading.current_thread() is not threading.main_thread():
    pytest.skip("signal handlers are installed from the main thread only")
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopSignal() as stop:
    agreement = preemption.StopAgreement(stop, parallel.make_mesh())
    assert agreement.poll(1) is None
    os.kill(os.getpid(), signal.SIGTERM)   # handled: sets the flag
    deadline = time.time() + 10
    while stop.requested is None and time.time() < deadline:
      time.sleep(0.01)
    assert agreement.poll(2) == "SIGTERM"   # no lag, no collective with one process
  assert signal.getsignal(signal.SIGTERM) == before   # restored on exit


class _Job:
  """Two worker processes of one job, their output lines collected as they come."""

  def __init__(self, tmp_path: Path):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    self.go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
      env.pop(key, None)
    self.procs = [subprocess.Popen([sys.executable, str(WORKER), str(port), str(i), str(self.go)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    self.lines: list[list[str]] = [[], []]
    self._readers = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(2)]
    for t in self._readers:
      t.start()

  def _read(self, i: int) -> None:
    for line in self.procs[i].stdout:
      self.lines[i].append(line)

  def wait_for(self, i: int, text: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not any(line.startswith(text) for line in self.lines[i]):
      assert time.time() < deadline and self.procs[i].poll() is None, \
          f"process {i} never printed {text!r}:\n{''.join(self.lines[i])[-3000:]}"
      time.sleep(0.02)

  def finish(self, timeout: float = 60) -> list[tuple[int, str]]:
    """Both exit 0 in time (else killed, failure); each one's ``(stop boundary, reason)``."""
    try:
      for p in self.procs:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      pass
    finally:
      for p in self.procs:
        if p.poll() is None:
          p.kill()
          p.wait()
      for t in self._readers:
        t.join(timeout=10)
    logs = "\n".join(f"--- process {i}:\n{''.join(self.lines[i])[-3000:]}" for i in range(2))
    assert [p.returncode for p in self.procs] == [0, 0], logs
    stops = []
    for i in range(2):
      found = [m for m in (re.match(r"stop (\d+) (.*)", line) for line in self.lines[i]) if m]
      assert len(found) == 1, logs
      stops.append((int(found[0].group(1)), found[0].group(2)))
    return stops


def test_a_signal_to_process_0_in_the_loop_stops_both_at_one_boundary(tmp_path):
  job = _Job(tmp_path)
  job.go.touch()
  job.wait_for(0, "boundary 3")
  job.procs[0].send_signal(signal.SIGINT)
  stops = job.finish()
  assert stops[0] == stops[1], stops
  assert stops[0][0] > 3 and stops[0][1] == "SIGINT on process 0"


def test_sigterm_before_the_loop_reaches_all_through_jax_preemption_notice(tmp_path):
  job = _Job(tmp_path)
  for i in range(2):
    job.wait_for(i, "ready")   # jax.distributed is up: JAX's preemption service holds SIGTERM
  job.procs[1].send_signal(signal.SIGTERM)
  time.sleep(0.5)
  job.go.touch()
  stops = job.finish()
  assert stops[0] == stops[1], stops
  assert "JAX preemption notice" in stops[0][1] and "on process" not in stops[0][1], stops
  assert jax.process_count() == 1   # this test process never joined the job
